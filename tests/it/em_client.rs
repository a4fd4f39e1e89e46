//! The EM client against a real `em-sim` on loopback.

use std::sync::Arc;
use std::time::Duration;

use em_gateway::em::session::LogonBackoff;
use em_gateway::em::xml::{
    self, CloudGatewayEdit, CloudGatewayUids, CloudTenantUids, CreateCloudGatewayPoolSpec,
    CreateCloudGatewaySpec, Namespace, NetworkMode, TaskState,
};
use em_gateway::em::{EmClient, EmError, SessionRef, Submitted};
use em_gateway::sim::RunningSim;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

fn gateway_spec(host: &str) -> CreateCloudGatewaySpec {
    CreateCloudGatewaySpec {
        xmlns: Namespace,
        server_host_name: host.into(),
        description: Some(format!("gateway {host}")),
        external_ip: None,
        external_port: Some(6180),
        network_type: NetworkMode::Direct,
        internal_port: Some(6180),
        backup_server_uid: VBR01.into(),
    }
}

fn pool_spec(name: &str, gateways: Vec<String>) -> CreateCloudGatewayPoolSpec {
    CreateCloudGatewayPoolSpec {
        xmlns: Namespace,
        name: name.into(),
        description: None,
        cloud_gateways: CloudGatewayUids { uids: gateways },
        cloud_tenants: Some(CloudTenantUids {
            uids: vec![ACME.into()],
        }),
        backup_server_uid: VBR01.into(),
    }
}

/// Polls the task's own session until EM says `Finished`.
async fn finished(client: &EmClient, submitted: &Submitted) -> xml::Task {
    eventually("the EM task to finish", Duration::from_secs(5), || async {
        let tasks = client
            .tasks(&submitted.session)
            .await
            .expect("tasks readable");
        tasks
            .into_iter()
            .find(|t| t.task_id == submitted.task.task_id && t.state == TaskState::Finished)
    })
    .await
}

fn related_id(task: &xml::Task) -> Uuid {
    let link = task.links.find("Related", None).expect("a Related link");
    Uuid::parse_str(xml::id_of(&link.href)).expect("a guid in the Related link")
}

#[tokio::test]
async fn logs_on_once_per_session_and_off_again() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 3);
    client.warm_up().await.unwrap();
    assert_eq!(client.live_sessions().len(), 3);
    for _ in 0..10 {
        client.backup_servers().await.unwrap();
    }
    let state = sim_state(&sim).await;
    assert_eq!(state["counters"]["logons"], 3, "no logon per request");
    assert_eq!(state["sessions"], 3);
    client.log_off_all().await;
    assert_eq!(sim_state(&sim).await["sessions"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn creates_a_gateway_then_a_pool_from_it() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 2);

    let submitted = client
        .create_cloud_gateway(&gateway_spec("srv01.tech.local"))
        .await
        .unwrap();
    assert_eq!(submitted.task.state, TaskState::Running);
    assert_eq!(submitted.task.operation, "CreateCloudGateway");
    let task = finished(&client, &submitted).await;
    let result = task.result.as_ref().unwrap();
    assert!(result.success, "{result:?}");
    let gateway_id = related_id(&task);

    let gateway = client
        .cloud_gateway(gateway_id)
        .await
        .unwrap()
        .expect("the new gateway");
    assert_eq!(gateway.name, "srv01.tech.local");
    assert_eq!(gateway.network_mode, NetworkMode::Direct);
    assert_eq!(gateway.external_port, Some(6180));
    assert_eq!(gateway.enabled, Some(true));

    let pool = client
        .create_cloud_gateway_pool(&pool_spec("GatewayPool 1", vec![gateway.uid.clone()]))
        .await
        .unwrap();
    let task = finished(&client, &pool).await;
    assert!(task.result.as_ref().unwrap().success);
    let pool = client
        .cloud_gateway_pool(related_id(&task))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pool.name, "GatewayPool 1");
    assert_eq!(pool.cloud_gateways.uids, vec![gateway.uid.clone()]);
    assert_eq!(pool.cloud_tenants.uids, vec![ACME.to_string()]);

    // The gateway now links to its pool; the lists show both.
    let gateway = client.cloud_gateway(gateway_id).await.unwrap().unwrap();
    assert!(
        gateway
            .links
            .find("Related", Some("CloudGatewayPoolReference"))
            .is_some()
    );
    assert_eq!(client.cloud_gateways().await.unwrap().len(), 1);
    assert_eq!(client.cloud_gateway_pools().await.unwrap().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn edits_and_deletes_through_ems_entity_bodies() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let created = client
        .create_cloud_gateway(&gateway_spec("gw-edit.example"))
        .await
        .unwrap();
    let id = related_id(&finished(&client, &created).await);

    let edit = CloudGatewayEdit {
        xmlns: Namespace,
        enabled: Some(false),
        network_mode: NetworkMode::Nat,
        external_ip: Some("203.0.113.7".into()),
        external_port: Some(7180),
        internal_port: None,
        description: Some("maintenance".into()),
    };
    let edited = client.edit_cloud_gateway(id, &edit).await.unwrap();
    assert_eq!(edited.task.operation, "EditCloudGateway");
    assert!(finished(&client, &edited).await.result.unwrap().success);
    let gateway = client.cloud_gateway(id).await.unwrap().unwrap();
    assert_eq!(gateway.enabled, Some(false));
    assert_eq!(gateway.network_mode, NetworkMode::Nat);
    assert_eq!(gateway.external_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(gateway.external_port, Some(7180));
    assert_eq!(
        gateway.internal_port,
        Some(6180),
        "absent elements keep their value"
    );

    let deleted = client.delete_cloud_gateway(id).await.unwrap();
    assert!(finished(&client, &deleted).await.result.unwrap().success);
    assert_eq!(
        client.cloud_gateway(id).await.unwrap(),
        None,
        "404 becomes None"
    );

    let missing = client
        .delete_cloud_gateway(Uuid::new_v4())
        .await
        .unwrap_err();
    assert_eq!(missing.em_status(), Some(404), "{missing}");
    assert!(missing.is_not_found());
    sim.stop().await;
}

#[tokio::test]
async fn business_rule_failures_finish_the_task_with_ems_message() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 2);
    let first = client
        .create_cloud_gateway(&gateway_spec("dup.example"))
        .await
        .unwrap();
    let gateway_id = related_id(&finished(&client, &first).await);

    let again = client
        .create_cloud_gateway(&gateway_spec("dup.example"))
        .await
        .unwrap();
    let task = finished(&client, &again).await;
    let result = task.result.unwrap();
    assert!(!result.success);
    assert!(result.message.unwrap().contains("already a cloud gateway"));
    assert!(task.links.find("Related", None).is_none());

    let uid = format!("urn:veeam:CloudGateway:{gateway_id}");
    let p1 = client
        .create_cloud_gateway_pool(&pool_spec("P1", vec![uid.clone()]))
        .await
        .unwrap();
    assert!(finished(&client, &p1).await.result.unwrap().success);
    let p2 = client
        .create_cloud_gateway_pool(&pool_spec("P2", vec![uid.clone()]))
        .await
        .unwrap();
    let message = finished(&client, &p2)
        .await
        .result
        .unwrap()
        .message
        .unwrap();
    assert!(
        message.contains("already included in cloud gateway pool P1"),
        "{message}"
    );

    let unknown = format!("urn:veeam:CloudGateway:{}", Uuid::new_v4());
    let p3 = client
        .create_cloud_gateway_pool(&pool_spec("P3", vec![unknown]))
        .await
        .unwrap();
    let message = finished(&client, &p3)
        .await
        .result
        .unwrap()
        .message
        .unwrap();
    assert!(message.contains("was not found"), "{message}");

    // A pool member cannot be deleted.
    let del = client.delete_cloud_gateway(gateway_id).await.unwrap();
    assert!(!finished(&client, &del).await.result.unwrap().success);

    // Not a managed server of vbr02.
    let mut spec = gateway_spec("not-managed.example");
    spec.backup_server_uid = VBR02.into();
    let unmanaged = client.create_cloud_gateway(&spec).await.unwrap();
    let message = finished(&client, &unmanaged)
        .await
        .result
        .unwrap()
        .message
        .unwrap();
    assert!(
        message.contains("not added to the backup infrastructure"),
        "{message}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn refusals_carry_ems_status_and_message() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let mut nat = gateway_spec("nat.example");
    nat.network_type = NetworkMode::Nat;
    let err = client.create_cloud_gateway(&nat).await.unwrap_err();
    match err {
        EmError::Refused {
            status: 400,
            message,
        } => assert!(message.contains("ExternalIp"), "{message}"),
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    let mut unknown_server = gateway_spec("x.example");
    unknown_server.backup_server_uid = format!("urn:veeam:BackupServer:{}", Uuid::new_v4());
    let err = client
        .create_cloud_gateway(&unknown_server)
        .await
        .unwrap_err();
    assert_eq!(err.em_status(), Some(400), "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_logon_error() {
    let sim = spawn_sim(|_| {});
    let mut settings = settings(&sim, 1);
    settings.password = "wrong".to_string().into();
    let client = EmClient::new(settings).unwrap();
    let err = client.backup_servers().await.unwrap_err();
    match &err {
        EmError::LogonRefused {
            status: 401,
            message,
            retry_in,
        } => {
            assert!(
                message.contains("Invalid user name or password"),
                "{message}"
            );
            assert_eq!(*retry_in, Duration::from_secs(1), "the first wait");
        }
        other => panic!("expected LogonRefused, got {other:?}"),
    }
    assert!(
        !format!("{err} {err:?}").contains("wrong"),
        "the password never shows"
    );
    sim.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_replaced_transparently_and_its_tasks_are_lost() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let submitted = client
        .create_cloud_gateway(&gateway_spec("exp.example"))
        .await
        .unwrap();
    sim_control(&sim, Method::POST, "/_sim/sessions/expire", None).await;

    // Reads and writes go on through a new session, without the caller noticing.
    assert_eq!(client.backup_servers().await.unwrap().len(), 2);
    let after = client
        .create_cloud_gateway(&gateway_spec("exp2.example"))
        .await
        .unwrap();
    assert_ne!(after.session, submitted.session);
    assert_eq!(sim_state(&sim).await["counters"]["logons"], 2);

    // The old session's task can no longer be followed.
    assert_eq!(
        client.tasks(&submitted.session).await.unwrap_err(),
        EmError::SessionLost
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_session_lost_under_a_poll_is_reported_not_replaced() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let submitted = client
        .create_cloud_gateway(&gateway_spec("poll.example"))
        .await
        .unwrap();
    sim_control(&sim, Method::POST, "/_sim/restart", None).await;
    let err = client.tasks(&submitted.session).await.unwrap_err();
    assert_eq!(err, EmError::SessionLost);
    // The gateway was still created: EM finished the operation after its restart.
    eventually("the gateway to exist", Duration::from_secs(5), || async {
        let gateways = client.cloud_gateways().await.unwrap();
        gateways
            .iter()
            .any(|g| g.name == "poll.example")
            .then_some(())
    })
    .await;
    sim.stop().await;
}

#[tokio::test]
async fn idle_sessions_are_kept_alive() {
    let idle = Duration::from_millis(600);
    let sim = spawn_sim(|c| c.session_idle = idle);
    let mut settings = settings(&sim, 2);
    settings.keepalive_after = Duration::from_millis(150);
    let client = Arc::new(EmClient::new(settings).unwrap());
    client.warm_up().await.unwrap();
    let last_own_call = std::time::Instant::now();
    let before = client.live_sessions();
    let keeper = tokio::spawn(client.clone().keep_alive_loop());
    // No call of ours from here on: only the keep-alive loop can keep the sessions alive. Wait
    // until it has sent enough keep-alives to span three idle timeouts.
    let keepalives = |state: &serde_json::Value| -> u64 {
        state["counters"]["requests_by_route"]
            .as_object()
            .map(|routes| {
                routes
                    .iter()
                    .filter(|(route, _)| route.eq_ignore_ascii_case("GET /logonSessions/{id}"))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    eventually(
        "the keep-alive loop to span three idle timeouts",
        Duration::from_secs(10),
        || async {
            let sent = keepalives(&sim_state(&sim).await);
            (sent >= 2 * 4 && last_own_call.elapsed() > idle * 3).then_some(())
        },
    )
    .await;
    keeper.abort();
    for s in &before {
        client
            .tasks(s)
            .await
            .expect("the session outlived three idle timeouts");
    }
    assert_eq!(sim_state(&sim).await["counters"]["logons"], 2);
    sim.stop().await;
}

#[tokio::test]
async fn a_task_id_is_unknown_in_another_session() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 2);
    let submitted = client
        .create_cloud_gateway(&gateway_spec("scope.example"))
        .await
        .unwrap();
    let other = SessionRef {
        slot: 1 - submitted.session.slot,
        session_id: String::new(),
    };
    client.warm_up().await.unwrap();
    let other = client
        .live_sessions()
        .into_iter()
        .find(|s| s.slot == other.slot)
        .unwrap();
    let err = client
        .task(&other, &submitted.task.task_id)
        .await
        .unwrap_err();
    assert_eq!(err, EmError::TaskUnknown(submitted.task.task_id.clone()));
    client
        .task(&submitted.session, &submitted.task.task_id)
        .await
        .unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn concurrent_calls_share_the_pool() {
    let sim = spawn_sim(|_| {});
    let client = Arc::new(client(&sim, 4));
    let mut calls = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            client
                .create_cloud_gateway(&gateway_spec(&format!("gw{i}.example")))
                .await
        }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let state = sim_state(&sim).await;
    assert_eq!(
        state["counters"]["logons"], 4,
        "one logon per session, not per call"
    );
    sim.stop().await;
}

#[tokio::test]
async fn faults_surface_as_typed_errors() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    client.warm_up().await.unwrap();

    set_sim_faults(&sim, json!({"error_rate": 1.0})).await;
    let err = client.backup_servers().await.unwrap_err();
    assert_eq!(err.em_status(), Some(503), "{err:?}");

    set_sim_faults(&sim, json!({"error_rate": 0.0, "drop_rate": 1.0})).await;
    let write = client
        .create_cloud_gateway(&gateway_spec("drop.example"))
        .await
        .unwrap_err();
    assert!(
        matches!(write, EmError::OutcomeUnknown { .. }),
        "a write with no answer: {write:?}"
    );
    let read = client.backup_servers().await.unwrap_err();
    assert!(
        matches!(read, EmError::Unreachable(_)),
        "a read with no answer: {read:?}"
    );

    // The dropped create was processed all the same: that is why it is not repeated.
    set_sim_faults(&sim, json!({"drop_rate": 0.0})).await;
    eventually(
        "the dropped create to land",
        Duration::from_secs(5),
        || async {
            let gateways = client.cloud_gateways().await.unwrap();
            gateways
                .iter()
                .any(|g| g.name == "drop.example")
                .then_some(())
        },
    )
    .await;
    let state = sim_state(&sim).await;
    assert_eq!(
        state["counters"]["requests_by_route"]["POST /cloud/gateways"], 1,
        "never repeated"
    );

    set_sim_faults(&sim, json!({"latency_ms": 400})).await;
    let mut slow = settings(&sim, 1);
    slow.request_timeout = Duration::from_millis(100);
    let slow = EmClient::new(slow).unwrap();
    let err = slow.backup_servers().await.unwrap_err();
    assert!(matches!(err, EmError::Unreachable(_)), "{err:?}");
    sim.stop().await;

    let err = client.backup_servers().await.unwrap_err();
    assert!(matches!(err, EmError::Unreachable(_)), "EM down: {err:?}");
}

#[tokio::test]
async fn reads_backup_servers_and_tenants_for_a_portal() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let servers = client.backup_servers().await.unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0].uid, VBR01);
    assert_eq!(servers[0].name, "vbr01.example.local");
    let id = Uuid::parse_str(xml::id_of(VBR01)).unwrap();
    assert_eq!(
        client.backup_server(id).await.unwrap().unwrap().port,
        Some(9392)
    );
    let tenants = client.cloud_tenants().await.unwrap();
    assert!(tenants.iter().any(|t| t.uid == ACME && t.name == "acme"));
    assert_eq!(client.cloud_tenant(Uuid::new_v4()).await.unwrap(), None);
    client.ping().await.unwrap();
    sim.stop().await;
}

/// A password em-sim does not take (until a test makes it its password).
const WRONG: &str = "Wr0ng-Pa55-c41e";

fn with_wrong_password(sim: &RunningSim, sessions: usize, first: Duration) -> EmClient {
    let mut s = settings(sim, sessions);
    s.password = WRONG.to_string().into();
    s.logon_backoff = LogonBackoff {
        first,
        max: first * 2,
    };
    EmClient::new(s).unwrap()
}

async fn logons(sim: &RunningSim) -> (u64, u64) {
    let state = sim_state(sim).await;
    let counter = |name: &str| state["counters"][name].as_u64().unwrap();
    (counter("logons"), counter("logons_refused"))
}

fn assert_backing_off(result: Result<impl std::fmt::Debug, EmError>, first: Duration) {
    match result {
        Err(EmError::LogonRefused {
            status: 401,
            retry_in,
            ..
        }) => assert!(
            !retry_in.is_zero() && retry_in <= first,
            "{retry_in:?}: the time left of the first wait"
        ),
        other => panic!("expected the logon back-off, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_credentials_make_one_logon_per_wait_for_the_whole_pool() {
    let first = Duration::from_secs(1);
    let sim = spawn_sim(|_| {});
    let client = Arc::new(with_wrong_password(&sim, 4, first));
    // 40 callers at once over 4 empty slots: one logon, whose refusal they all get.
    let calls = (0..40).map(|_| {
        let client = client.clone();
        async move { client.backup_servers().await }
    });
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(
        logons(&sim).await,
        (0, 1),
        "one refused logon for 40 callers"
    );
    for result in results {
        assert_backing_off(result, first);
    }
    // While the wait runs, calls answer at once without a logon.
    for _ in 0..20 {
        assert_backing_off(client.cloud_gateways().await, first);
    }
    assert_backing_off(client.warm_up().await, first);
    assert_eq!(logons(&sim).await, (0, 1), "none while backing off");
    assert!(client.logon_refusal().is_some());

    // The password is fixed at EM: the first logon after the wait succeeds and ends the back-off.
    sim_control(
        &sim,
        Method::PUT,
        "/_sim/account",
        Some(json!({"password": WRONG})),
    )
    .await;
    eventually("a logon after the wait", Duration::from_secs(5), || async {
        client.backup_servers().await.ok()
    })
    .await;
    assert_eq!(client.logon_refusal(), None);
    client.warm_up().await.unwrap();
    assert_eq!(logons(&sim).await, (4, 1), "every slot logs on again");
    sim.stop().await;
}

/// The password is changed at EM under a running pool (a rotation the gateway was not told
/// of): the sessions' re-logons stop at the first refusal.
#[tokio::test]
async fn a_password_changed_under_a_running_pool_is_refused_once() {
    let first = Duration::from_secs(1);
    let sim = spawn_sim(|_| {});
    let client = Arc::new(client(&sim, 4));
    client.warm_up().await.unwrap();
    sim_control(
        &sim,
        Method::PUT,
        "/_sim/account",
        Some(json!({"password": "r0tated-Pa55"})),
    )
    .await;
    sim_control(&sim, Method::POST, "/_sim/sessions/expire", None).await;
    let calls = (0..20).map(|_| {
        let client = client.clone();
        async move { client.backup_servers().await }
    });
    let results = futures_util::future::join_all(calls).await;
    assert_eq!(
        logons(&sim).await,
        (4, 1),
        "four expired sessions, one refused logon"
    );
    for result in results {
        assert_backing_off(result, first);
    }
    sim.stop().await;
}

#[tokio::test]
async fn failures_other_than_refusals_do_not_back_off() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 2);
    // EM answers 503 to everything, the logon included: each call tries, as before.
    set_sim_faults(&sim, json!({"error_rate": 1.0})).await;
    for _ in 0..3 {
        let err = client.backup_servers().await.unwrap_err();
        assert!(
            matches!(err, EmError::Refused { status: 503, .. }),
            "EM's own answer, not a back-off: {err:?}"
        );
    }
    assert_eq!(client.logon_refusal(), None);
    set_sim_faults(&sim, json!({"error_rate": 0.0})).await;
    client.backup_servers().await.expect("no wait after a 503");

    // EM unreachable: every call tries again, none backs off.
    let mut down = settings(&sim, 2);
    down.password = WRONG.to_string().into();
    let down = EmClient::new(down).unwrap();
    sim.stop().await;
    for _ in 0..3 {
        let err = down.backup_servers().await.unwrap_err();
        assert!(matches!(err, EmError::Unreachable(_)), "{err:?}");
    }
    assert_eq!(down.logon_refusal(), None);
}

/// Logons go one at a time over the pool; when one fails for EM being out of reach, the callers
/// that waited for it take its failure instead of each trying (and timing out) in turn.
#[tokio::test]
async fn callers_waiting_for_a_logon_share_its_failure() {
    let sim = spawn_sim(|_| {});
    set_sim_faults(&sim, json!({"latency_ms": 2000})).await;
    let mut slow = settings(&sim, 4);
    slow.request_timeout = Duration::from_millis(300);
    let client = Arc::new(EmClient::new(slow).unwrap());
    let started = std::time::Instant::now();
    let calls = (0..20).map(|_| {
        let client = client.clone();
        async move { client.backup_servers().await }
    });
    for result in futures_util::future::join_all(calls).await {
        assert!(matches!(result, Err(EmError::Unreachable(_))), "{result:?}");
    }
    let took = started.elapsed();
    // One timed-out logon, not 20 in a row (6 s).
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(client.logon_refusal(), None, "no answer is no refusal");
    sim.stop().await;
}

/// The poller's read: one session's list, read as it arrives, only its finished tasks wanted.
#[tokio::test]
async fn finished_tasks_are_read_from_a_sessions_list_with_the_clients_rules() {
    let sim = spawn_sim(|_| {});
    let client = client(&sim, 1);
    let mut submitted = Vec::new();
    for host in ["ft1.example", "ft2.example", "ft3.example"] {
        submitted.push(
            client
                .create_cloud_gateway(&gateway_spec(host))
                .await
                .unwrap(),
        );
    }
    let session = submitted[0].session.clone();
    let skipped = submitted[1].task.task_id.clone();
    let found = eventually("the tasks to finish", Duration::from_secs(5), || async {
        let found = client
            .finished_tasks(&session, |id| id != skipped)
            .await
            .expect("the list is readable");
        (found.len() == 2).then_some(found)
    })
    .await;
    let ids: Vec<_> = found.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            submitted[0].task.task_id.as_str(),
            submitted[2].task.task_id.as_str()
        ]
    );
    assert!(found.iter().all(|t| t.state == TaskState::Finished));
    assert_eq!(
        related_id(&found[0]),
        related_id(&finished(&client, &submitted[0]).await)
    );

    // An HTML page instead of the list: a bad answer, not an empty list.
    set_sim_faults(&sim, json!({"garbage_rate": 1.0})).await;
    let err = client.finished_tasks(&session, |_| true).await.unwrap_err();
    assert!(matches!(err, EmError::BadAnswer(_)), "{err:?}");
    // A refusal carries EM's status.
    set_sim_faults(&sim, json!({"garbage_rate": 0.0, "error_rate": 1.0})).await;
    let err = client.finished_tasks(&session, |_| true).await.unwrap_err();
    assert_eq!(err.em_status(), Some(503), "{err:?}");
    // No answer at all, twice: EM is unreachable.
    set_sim_faults(&sim, json!({"error_rate": 0.0, "drop_rate": 1.0})).await;
    let err = client.finished_tasks(&session, |_| true).await.unwrap_err();
    assert!(matches!(err, EmError::Unreachable(_)), "{err:?}");
    // EM forgot the session: its tasks are lost, and the session is not replaced under a poll.
    set_sim_faults(&sim, json!({"drop_rate": 0.0})).await;
    sim_control(&sim, Method::POST, "/_sim/sessions/expire", None).await;
    let err = client.finished_tasks(&session, |_| true).await.unwrap_err();
    assert_eq!(err, EmError::SessionLost);
    sim.stop().await;
}

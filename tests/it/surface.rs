//! Everything a Cloud Connect administrator does with gateways and pools, through the JSON API
//! alone; and retries made safe by Idempotency-Key.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

both_databases!(
    gateways_and_pools_through_their_whole_life,
    a_repeated_request_is_answered_once,
    two_identical_requests_at_once_make_one_em_call,
    a_lost_answer_is_replayed_not_resent,
);

async fn setup(db: Db) -> (em_gateway::sim::RunningSim, TestApp) {
    let sim = spawn_sim(|_| {});
    let url = fresh_database(db).await;
    let app = spawn_app(&test_settings(&sim, &url)).await;
    (sim, app)
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = http()
        .request(method, app.url(path))
        .bearer_auth(&app.write_key);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

async fn settled_ok(app: &TestApp, task: &Value) -> Value {
    let done = app.settled(task["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    done
}

fn em_posts(state: &Value, route: &str) -> u64 {
    state["counters"]["requests_by_route"][route]
        .as_u64()
        .unwrap_or(0)
}

async fn gateways_and_pools_through_their_whole_life(db: Db) {
    let (sim, app) = setup(db).await;
    // Three gateways.
    let mut ids = Vec::new();
    for host in ["gw-a.example", "gw-b.example", "gw-c.example"] {
        let (status, task, _) = send(
            &app,
            Method::POST,
            "/v1/cloud-gateways",
            None,
            Some(json!({"backup_server_uid": VBR01, "server_host_name": host})),
        )
        .await;
        assert_eq!(status, 202);
        ids.push(
            settled_ok(&app, &task).await["resource"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let listed = app.get_json("/v1/cloud-gateways").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);
    let page1 = app.get_json("/v1/cloud-gateways?limit=2").await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let page2 = app
        .get_json(&format!(
            "/v1/cloud-gateways?limit=2&cursor={}",
            page1["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert!(page2["next_cursor"].is_null());
    let by_name = app.get_json("/v1/cloud-gateways?name=GW-B").await;
    assert_eq!(by_name["items"][0]["name"], "gw-b.example");
    let other_server = app
        .get_json(&format!("/v1/cloud-gateways?backup_server_uid={VBR02}"))
        .await;
    assert_eq!(other_server["items"].as_array().unwrap().len(), 0);

    let one = app
        .get_json(&format!("/v1/cloud-gateways/{}", ids[0]))
        .await;
    assert_eq!(one["uid"], format!("urn:veeam:CloudGateway:{}", ids[0]));
    assert_eq!(one["backup_server"]["uid"], VBR01);
    assert_eq!(one["backup_server"]["name"], "vbr01.example.local");
    assert_eq!(one["enabled"], true);
    assert_eq!(one["network_type"], "direct");
    assert!(one["pool"].is_null());

    // Change one: disable it and put it behind NAT.
    let (status, task, _) = send(&app, Method::PATCH, &format!("/v1/cloud-gateways/{}", ids[0]), None,
        Some(json!({"enabled": false, "network_type": "nat", "external_ip": "203.0.113.9", "description": "maintenance"}))).await;
    assert_eq!(status, 202);
    assert_eq!(task["operation"], "update_cloud_gateway");
    assert_eq!(
        task["resource"]["id"],
        ids[0].as_str(),
        "an update names its object at once"
    );
    settled_ok(&app, &task).await;
    let changed = app
        .get_json(&format!("/v1/cloud-gateways/{}", ids[0]))
        .await;
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["network_type"], "nat");
    assert_eq!(changed["external_ip"], "203.0.113.9");
    assert_eq!(changed["description"], "maintenance");
    assert_eq!(changed["external_port"], 6180, "untouched settings stay");

    // Pool two of them for a tenant.
    let (status, task, _) = send(&app, Method::POST, "/v1/cloud-gateway-pools", None, Some(json!({
        "backup_server_uid": VBR01, "name": "EU", "cloud_gateway_uids": [ids[0], ids[1]], "cloud_tenant_uids": [ACME]}))).await;
    assert_eq!(status, 202);
    let pool_id = settled_ok(&app, &task).await["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pool = app
        .get_json(&format!("/v1/cloud-gateway-pools/{pool_id}"))
        .await;
    assert_eq!(pool["name"], "EU");
    let members: Vec<&str> = pool["cloud_gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec!["gw-a.example", "gw-b.example"]);
    assert_eq!(pool["cloud_tenants"][0]["name"], "acme");
    assert_eq!(pool["backup_server"]["uid"], VBR01);
    let in_pool = app
        .get_json(&format!("/v1/cloud-gateways?pool_uid={pool_id}"))
        .await;
    assert_eq!(in_pool["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.get_json(&format!("/v1/cloud-gateways/{}", ids[1]))
            .await["pool"]["name"],
        "EU"
    );
    let for_acme = app
        .get_json(&format!("/v1/cloud-gateway-pools?tenant_uid={ACME}"))
        .await;
    assert_eq!(for_acme["items"].as_array().unwrap().len(), 1);

    // A pool member cannot be deleted: EM fails the task and says why.
    let (status, task, _) = send(
        &app,
        Method::DELETE,
        &format!("/v1/cloud-gateways/{}", ids[0]),
        None,
        None,
    )
    .await;
    assert_eq!(status, 202);
    let failed = app.settled(task["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("member of cloud gateway pool EU"),
        "{failed}"
    );

    // Rename the pool, swap its gateways, drop its tenants.
    let (status, task, _) = send(
        &app,
        Method::PATCH,
        &format!("/v1/cloud-gateway-pools/{pool_id}"),
        None,
        Some(
            json!({"name": "EU primary", "cloud_gateway_uids": [ids[2]], "cloud_tenant_uids": []}),
        ),
    )
    .await;
    assert_eq!(status, 202);
    settled_ok(&app, &task).await;
    let pool = app
        .get_json(&format!("/v1/cloud-gateway-pools/{pool_id}"))
        .await;
    assert_eq!(pool["name"], "EU primary");
    assert_eq!(pool["cloud_gateways"][0]["id"], ids[2].as_str());
    assert_eq!(pool["cloud_tenants"].as_array().unwrap().len(), 0);

    // Delete the pool, then the gateway it no longer holds.
    let (status, task, _) = send(
        &app,
        Method::DELETE,
        &format!("/v1/cloud-gateway-pools/{pool_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        settled_ok(&app, &task).await["resource"]["type"],
        "cloud_gateway_pool"
    );
    assert_eq!(
        app.get(&format!("/v1/cloud-gateway-pools/{pool_id}"), &app.read_key)
            .await
            .status(),
        404
    );
    let (status, task, _) = send(
        &app,
        Method::DELETE,
        &format!("/v1/cloud-gateways/{}", ids[0]),
        None,
        None,
    )
    .await;
    assert_eq!(status, 202);
    settled_ok(&app, &task).await;
    assert_eq!(
        app.get(&format!("/v1/cloud-gateways/{}", ids[0]), &app.read_key)
            .await
            .status(),
        404
    );

    // Unknown objects are 404s; EM's own 404 carries EM's message.
    let unknown = "00000000-0000-4000-8000-0000000000aa";
    assert_eq!(
        app.get(&format!("/v1/cloud-gateways/{unknown}"), &app.read_key)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/v1/cloud-gateways/not-a-guid", &app.read_key)
            .await
            .status(),
        404
    );
    let (status, _, _) = send(
        &app,
        Method::PATCH,
        &format!("/v1/cloud-gateways/{unknown}"),
        None,
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, problem, _) = send(
        &app,
        Method::DELETE,
        &format!("/v1/cloud-gateways/{unknown}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(problem["em"]["status"], 404);
    let (status, problem, _) = send(
        &app,
        Method::PATCH,
        &format!("/v1/cloud-gateways/{}", ids[1]),
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "body");
    let (status, _, _) = send(
        &app,
        Method::PATCH,
        &format!("/v1/cloud-gateways/{}", ids[1]),
        None,
        Some(json!({"external_ip": "1.2.3.4"})),
    )
    .await;
    assert_eq!(status, 422);
    app.stop().await;
    sim.stop().await;
}

async fn a_repeated_request_is_answered_once(db: Db) {
    let (sim, app) = setup(db).await;
    let body = json!({"backup_server_uid": VBR01, "server_host_name": "idem.example"});
    let (s1, t1, h1) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("order-42"),
        Some(body.clone()),
    )
    .await;
    let (s2, t2, h2) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("order-42"),
        Some(body.clone()),
    )
    .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(t1, t2, "the same body, the same task");
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(h2["location"], h1["location"]);
    assert_eq!(em_posts(&sim_state(&sim).await, "POST /cloud/gateways"), 1);

    // The same key with another body.
    let (status, problem, _) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("order-42"),
        Some(json!({"backup_server_uid": VBR01, "server_host_name": "other.example"})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        problem["type"],
        "https://em-gateway.dev/problems/idempotency-key-reused"
    );

    // Keys belong to their API key: another key's "order-42" is its own.
    let other = http()
        .post(app.url("/v1/cloud-gateways"))
        .bearer_auth(&app.admin_key)
        .header("Idempotency-Key", "order-42")
        .json(&json!({"backup_server_uid": VBR01, "server_host_name": "admin.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 202);
    assert_eq!(em_posts(&sim_state(&sim).await, "POST /cloud/gateways"), 2);

    // A refusal (here: a backup server EM does not have) is an answer too, kept and replayed;
    // an outage is not kept.
    let bad = json!({"backup_server_uid": "urn:veeam:BackupServer:00000000-0000-4000-8000-000000000001", "server_host_name": "x.example"});
    let (s1, p1, _) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("refused"),
        Some(bad.clone()),
    )
    .await;
    let (s2, p2, h2) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("refused"),
        Some(bad),
    )
    .await;
    assert_eq!((s1, s2), (409, 409));
    assert_eq!(p1, p2);
    assert_eq!(h2["content-type"], "application/problem+json");
    set_sim_faults(&sim, json!({"error_rate": 1.0})).await;
    let body = json!({"backup_server_uid": VBR01, "server_host_name": "outage.example"});
    let (status, _, _) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("outage"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 503);
    set_sim_faults(&sim, json!({"error_rate": 0.0})).await;
    let (status, task, headers) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("outage"),
        Some(body),
    )
    .await;
    assert_eq!(status, 202, "tried again after the outage");
    assert!(headers.get("idempotent-replayed").is_none());
    settled_ok(&app, &task).await;

    // PATCH and DELETE replay the same way.
    let gid = settled_ok(&app, &t1).await["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/cloud-gateways/{gid}");
    let (_, a, _) = send(
        &app,
        Method::PATCH,
        &path,
        Some("patch-1"),
        Some(json!({"description": "x"})),
    )
    .await;
    let (_, b, h) = send(
        &app,
        Method::PATCH,
        &path,
        Some("patch-1"),
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!(a["id"], b["id"]);
    assert_eq!(h["idempotent-replayed"], "true");
    let (_, a, _) = send(&app, Method::DELETE, &path, Some("delete-1"), None).await;
    let (_, b, _) = send(&app, Method::DELETE, &path, Some("delete-1"), None).await;
    assert_eq!(a["id"], b["id"]);
    let state = sim_state(&sim).await;
    assert_eq!(em_posts(&state, "PUT /cloud/gateways/{id}"), 1);
    assert_eq!(em_posts(&state, "DELETE /cloud/gateways/{id}"), 1);

    let (status, _, _) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some(&"k".repeat(300)),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "an over-long key");
    app.stop().await;
    sim.stop().await;
}

async fn two_identical_requests_at_once_make_one_em_call(db: Db) {
    let (sim, app) = setup(db).await;
    // EM answers slowly, so the second request arrives while the first is at work.
    set_sim_faults(&sim, json!({"latency_ms": 300})).await;
    let body = json!({"backup_server_uid": VBR01, "server_host_name": "race.example"});
    let (a, b) = tokio::join!(
        send(
            &app,
            Method::POST,
            "/v1/cloud-gateways",
            Some("race"),
            Some(body.clone())
        ),
        send(
            &app,
            Method::POST,
            "/v1/cloud-gateways",
            Some("race"),
            Some(body.clone())
        ),
    );
    let mut statuses = vec![a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        vec![202, 409],
        "one does the work, the other is told to wait"
    );
    assert_eq!(
        em_posts(&sim_state(&sim).await, "POST /cloud/gateways"),
        1,
        "exactly one EM call"
    );
    set_sim_faults(&sim, json!({"latency_ms": 0})).await;
    let (status, _, headers) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("race"),
        Some(body),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(headers["idempotent-replayed"], "true");
    app.stop().await;
    sim.stop().await;
}

async fn a_lost_answer_is_replayed_not_resent(db: Db) {
    let (sim, app) = setup(db).await;
    set_sim_faults(&sim, json!({"drop_rate": 1.0})).await;
    let body = json!({"backup_server_uid": VBR01, "server_host_name": "dropped.example"});
    let (s1, t1, _) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("dropped"),
        Some(body.clone()),
    )
    .await;
    set_sim_faults(&sim, json!({"drop_rate": 0.0})).await;
    let (s2, t2, h2) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        Some("dropped"),
        Some(body),
    )
    .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(t1["id"], t2["id"]);
    assert_eq!(h2["idempotent-replayed"], "true");
    settled_ok(&app, &t1).await;
    assert_eq!(
        em_posts(&sim_state(&sim).await, "POST /cloud/gateways"),
        1,
        "never sent twice"
    );
    app.stop().await;
    sim.stop().await;
}

/// The hard case: the process died after recording its intent and sending to EM, before it
/// could answer. A retry finds the intent and answers with its task, which is settled from EM's
/// objects; nothing is sent to EM a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_crash_mid_request_finds_the_intent() {
    use em_gateway::store::{Claim, IdempotencyKey};
    use em_gateway::tasks::replay::request_bytes;

    let sim = spawn_sim(|_| {});
    let url = fresh_database(Db::Sqlite).await;
    let app = spawn_app(&test_settings_with(
        &sim,
        &url,
        &[("EMGW_EM_TIMEOUT_MS", "200")],
    ))
    .await;
    let body = json!({"backup_server_uid": VBR01, "server_host_name": "crash.example"});
    let bytes = serde_json::to_vec(&body).unwrap();

    // What the dead process left: a claimed key, its intent, and EM's object being created.
    let key_id = app
        .store
        .api_key_by_hash(&em_gateway::access::hash(&app.write_key))
        .await
        .unwrap()
        .unwrap()
        .id;
    let key = IdempotencyKey {
        api_key_id: key_id,
        key: "crash".into(),
    };
    let claim = app
        .store
        .claim_idempotency(
            &key,
            &app.keys
                .fingerprints(&request_bytes("POST", "/v1/cloud-gateways", "", &bytes)),
            em_gateway::clock::Clock::system().now(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(claim, Claim::Fresh);
    let intent = gateway_intent("crash.example");
    app.store
        .insert_tasks(
            &[(intent.clone(), Some(key))],
            em_gateway::clock::Clock::system().now(),
        )
        .await
        .unwrap();
    let direct = client(&sim, 1);
    let spec =
        em_gateway::tasks::command::gateway_spec(&serde_json::from_str(&intent.request).unwrap());
    direct.create_cloud_gateway(&spec).await.unwrap();
    sim_control(&sim, Method::POST, "/_sim/counters/reset", None).await;

    // While the dead request could still be at work, a retry waits.
    let first = http()
        .post(app.url("/v1/cloud-gateways"))
        .bearer_auth(&app.write_key)
        .header("Idempotency-Key", "crash")
        .header("Content-Type", "application/json")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 409);
    // Once it cannot be, the retry gets the intent's task.
    let replay = eventually("the claim to go stale", Duration::from_secs(5), || async {
        let resp = http()
            .post(app.url("/v1/cloud-gateways"))
            .bearer_auth(&app.write_key)
            .header("Idempotency-Key", "crash")
            .header("Content-Type", "application/json")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        (resp.status() == 202).then_some(resp)
    })
    .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let task: Value = replay.json().await.unwrap();
    assert_eq!(task["id"], intent.id.to_string());
    let done = settled_ok(&app, &task).await;
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("cloud gateway crash.example exists"),
        "{done}"
    );
    assert_eq!(
        em_posts(&sim_state(&sim).await, "POST /cloud/gateways"),
        0,
        "no second create"
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_em_answer_is_a_502_for_reads_and_an_open_question_for_writes() {
    let (sim, app) = setup(Db::Sqlite).await;
    set_sim_faults(&sim, json!({"garbage_rate": 1.0})).await;
    let resp = app.get("/v1/backup-servers", &app.read_key).await;
    assert_eq!(resp.status(), 502);
    let problem: Value = resp.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("cannot read"),
        "{problem}"
    );
    // A write EM answered 200-but-unreadable may have been taken: accepted, settled from EM.
    let (status, task, _) = send(
        &app,
        Method::POST,
        "/v1/cloud-gateways",
        None,
        Some(json!({"backup_server_uid": VBR01, "server_host_name": "garbled.example"})),
    )
    .await;
    assert_eq!(status, 202);
    assert!(task["em_task_id"].is_null());
    set_sim_faults(&sim, json!({"garbage_rate": 0.0})).await;
    let done = app.settled(task["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "failed", "EM never did it: {done}");
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("no cloud gateway for garbled.example appeared"),
        "{done}"
    );
    app.stop().await;
    sim.stop().await;
}

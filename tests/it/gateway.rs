//! The gateway end to end: the app on a real port, `em-sim` on a real port, a fresh database
//! per test, on SQLite and on Postgres.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

both_databases!(
    create_is_accepted_then_settled_with_the_resource,
    what_goes_with_em_s_task_id_is_recorded_before_the_answer,
    a_pool_is_created_from_a_new_gateway,
    an_em_side_failure_fails_the_task_with_ems_message,
    invalid_input_never_reaches_em,
    an_unknown_backup_server_is_refused_before_em_sees_it,
    em_down_is_503_with_retry_after,
    a_request_em_did_not_take_in_is_sent_once_more,
    tasks_survive_em_session_expiry_and_restart,
    a_restarted_gateway_still_settles_its_tasks,
    a_lost_em_answer_is_settled_from_ems_objects,
    tasks_list_filters_and_pages,
    keys_and_scopes_guard_every_route,
    inventory_lists_backup_servers_and_tenants,
);

fn gateway(host: &str) -> Value {
    json!({"backup_server_uid": VBR01, "server_host_name": host, "description": "test gateway",
           "network_type": "direct", "external_port": 6180, "internal_port": 6180,
           "metadata": {"order": "42"}})
}

async fn setup(
    db: Db,
    tweak: impl FnOnce(&mut em_gateway::sim::SimConfig),
) -> (em_gateway::sim::RunningSim, TestApp) {
    let sim = spawn_sim(tweak);
    let url = fresh_database(db).await;
    let app = spawn_app(&test_settings(&sim, &url)).await;
    (sim, app)
}

/// A stepped app (its poller and deliverer move only when the test says) with one EM session.
async fn setup_stepped_one_session(db: Db) -> (em_gateway::sim::RunningSim, TestApp) {
    let sim = spawn_sim(|_| {});
    let url = fresh_database(db).await;
    let app = spawn_stepped_app(&test_settings_with(
        &sim,
        &url,
        &[("EMGW_EM_SESSIONS", "1")],
    ))
    .await;
    (sim, app)
}

/// EM's task id is written behind the 202 but for a new EM session's first create, which
/// registers the session with it. A create under an Idempotency-Key is written behind too: its
/// 202 is kept under the key before it is sent, so a repeat gets it meanwhile.
async fn what_goes_with_em_s_task_id_is_recorded_before_the_answer(db: Db) {
    // Stepped: what is written behind the answers waits for a tick. One EM session: the
    // first create registers it.
    let (sim, app) = setup_stepped_one_session(db).await;
    let create = |host: &str, key: Option<&str>| {
        let mut req = http()
            .post(app.url("/v1/cloud-gateways"))
            .bearer_auth(&app.write_key)
            .json(&gateway(host));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 202);
            resp.json::<Value>().await.unwrap()
        }
    };
    let stored = |task: &Value| {
        let id = em_gateway::domain::TaskId::parse(task["id"].as_str().unwrap()).unwrap();
        let store = app.store.clone();
        async move { store.task(id).await.unwrap().unwrap().em_task_id }
    };
    let first = create("srv01.tech.local", None).await;
    assert_eq!(
        stored(&first).await.as_deref(),
        first["em_task_id"].as_str(),
        "a new session's first task"
    );
    let keyed = create("srv02.tech.local", Some("order-42")).await;
    assert!(keyed["em_task_id"].is_string());
    assert_eq!(
        stored(&keyed).await,
        None,
        "written behind, under a key too"
    );
    let replayed = create("srv02.tech.local", Some("order-42")).await;
    assert_eq!(
        replayed, keyed,
        "the kept answer, before the record is written"
    );

    // Without either: answered at once, the record written behind it (here at the tick);
    // reads show the task as answered meanwhile.
    let behind = create("srv03.tech.local", None).await;
    assert!(behind["em_task_id"].is_string());
    assert_eq!(stored(&behind).await, None, "not written yet");
    let path = format!("/v1/tasks/{}", behind["id"].as_str().unwrap());
    let read = app.get_json(&path).await;
    assert_eq!(read["em_task_id"], behind["em_task_id"]);
    assert_eq!(read["updated_at"], behind["updated_at"]);
    let listed = app.get_json("/v1/tasks?limit=1").await;
    assert_eq!(listed["items"][0]["em_task_id"], behind["em_task_id"]);
    app.tick_poller().await;
    assert_eq!(
        stored(&behind).await.as_deref(),
        behind["em_task_id"].as_str()
    );
    assert_eq!(
        stored(&keyed).await.as_deref(),
        keyed["em_task_id"].as_str()
    );
    let replayed = create("srv02.tech.local", Some("order-42")).await;
    assert_eq!(replayed, keyed, "the kept answer, after");
    // The tick wrote it first, then followed (and here settled) the task.
    assert_eq!(
        app.get_json(&path).await["em_task_id"],
        behind["em_task_id"]
    );
    app.stop().await;
    sim.stop().await;
}

async fn create_is_accepted_then_settled_with_the_resource(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    let resp = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("srv01.tech.local"),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let task: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/tasks/{}", task["id"].as_str().unwrap())
    );
    assert_eq!(task["state"], "running");
    assert_eq!(task["operation"], "create_cloud_gateway");
    assert_eq!(task["em_task_id"], "task-1");
    assert_eq!(task["metadata"], json!({"order": "42"}));
    assert!(task["resource"].is_null());

    let done = app.settled(task["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["resource"]["type"], "cloud_gateway");
    let id = done["resource"]["id"].as_str().unwrap();
    assert_eq!(
        done["resource"]["uid"],
        format!("urn:veeam:CloudGateway:{id}")
    );
    assert_eq!(done["metadata"], json!({"order": "42"}));
    assert!(done["finished_at"].is_string());

    // What EM got is what was asked.
    let client = client(&sim, 1);
    let created = client
        .cloud_gateway(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.name, "srv01.tech.local");
    assert_eq!(created.description.as_deref(), Some("test gateway"));
    app.stop().await;
    sim.stop().await;
}

async fn a_pool_is_created_from_a_new_gateway(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    let task: Value = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("gw-pool.example"),
        )
        .await
        .json()
        .await
        .unwrap();
    let done = app.settled(task["id"].as_str().unwrap()).await;
    let gateway_uid = done["resource"]["uid"].as_str().unwrap().to_string();
    let resp = app
        .post(
            "/v1/cloud-gateway-pools",
            &app.write_key,
            json!({"backup_server_uid": VBR01, "name": "EU pool", "cloud_gateway_uids": [gateway_uid],
                   "cloud_tenant_uids": [ACME], "metadata": {"ticket": "T-1"}}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["operation"], "create_cloud_gateway_pool");
    let done = app.settled(task["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["resource"]["type"], "cloud_gateway_pool");
    assert_eq!(done["metadata"]["ticket"], "T-1");
    app.stop().await;
    sim.stop().await;
}

async fn an_em_side_failure_fails_the_task_with_ems_message(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    let first: Value = app
        .post("/v1/cloud-gateways", &app.write_key, gateway("dup.example"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.settled(first["id"].as_str().unwrap()).await["state"],
        "succeeded"
    );
    let again: Value = app
        .post("/v1/cloud-gateways", &app.write_key, gateway("dup.example"))
        .await
        .json()
        .await
        .unwrap();
    let done = app.settled(again["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "failed");
    assert_eq!(
        done["message"],
        "Server dup.example is already a cloud gateway."
    );
    assert!(done["resource"].is_null());
    app.stop().await;
    sim.stop().await;
}

async fn invalid_input_never_reaches_em(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    let cases = [
        (
            json!({"backup_server_uid": "nope", "server_host_name": "-bad", "network_type": "nat", "external_port": 0}),
            422,
            vec![
                "backup_server_uid",
                "server_host_name",
                "external_ip",
                "external_port",
            ],
        ),
        (
            json!({"server_host_name": "gw.example"}),
            422,
            vec!["backup_server_uid"],
        ),
        (
            json!({"backup_server_uid": VBR01, "server_host_name": "gw.example", "network_type": "bridge"}),
            422,
            vec!["network_type"],
        ),
        (
            json!({"backup_server_uid": VBR01, "server_host_name": "gw.example", "metadata": {"bad key": "x"}}),
            422,
            vec!["metadata.bad key"],
        ),
        (
            json!({"backup_server_uid": ACME, "server_host_name": "gw.example"}),
            422,
            vec!["backup_server_uid"],
        ),
        (
            json!({"backup_server_uid": VBR01, "server_host_name": "gw.example", "colour": "red"}),
            400,
            vec!["colour"],
        ),
        (
            json!({"backup_server_uid": VBR01, "server_host_name": "gw.example", "external_port": "6180"}),
            400,
            vec!["external_port"],
        ),
        (json!(["not", "an", "object"]), 400, vec!["body"]),
    ];
    for (body, status, fields) in cases {
        let resp = app
            .post("/v1/cloud-gateways", &app.write_key, body.clone())
            .await;
        assert_eq!(resp.status(), status, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["status"], status);
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, fields, "{problem}");
    }
    let pool_cases = [
        json!({"backup_server_uid": VBR01, "name": " ", "cloud_gateway_uids": []}),
        json!({"backup_server_uid": VBR01, "name": "P", "cloud_gateway_uids": ["x"]}),
        json!({"backup_server_uid": VBR01, "name": "P\tQ", "cloud_gateway_uids": ["3e4e6d17-ee2a-430f-807c-8d92af2a5551"]}),
    ];
    for body in pool_cases {
        let resp = app
            .post("/v1/cloud-gateway-pools", &app.write_key, body.clone())
            .await;
        assert_eq!(resp.status(), 422, "{body}");
    }
    let broken = http()
        .post(app.url("/v1/cloud-gateways"))
        .bearer_auth(&app.write_key)
        .header("Content-Type", "application/json")
        .body("{\"backup_server_uid\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let too_big = http()
        .post(app.url("/v1/cloud-gateways"))
        .bearer_auth(&app.write_key)
        .header("Content-Type", "application/json")
        .body(format!(
            "{{\"description\": \"{}\"}}",
            "x".repeat(70 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let not_json = http()
        .post(app.url("/v1/cloud-gateways"))
        .bearer_auth(&app.write_key)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);

    let routes = &sim_state(&sim).await["counters"]["requests_by_route"];
    assert!(
        routes.get("POST /cloud/gateways").is_none(),
        "nothing reached EM: {routes}"
    );
    assert!(
        routes.get("POST /cloud/gatewaypools").is_none(),
        "nothing reached EM: {routes}"
    );
    let tasks = app.get_json("/v1/tasks").await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 0);
    app.stop().await;
    sim.stop().await;
}

async fn an_unknown_backup_server_is_refused_before_em_sees_it(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    // Well-formed, but EM does not know this backup server.
    let unknown = "urn:veeam:BackupServer:00000000-0000-4000-8000-000000000001";
    for (path, body) in [
        (
            "/v1/cloud-gateways",
            json!({"backup_server_uid": unknown, "server_host_name": "gw.example"}),
        ),
        (
            "/v1/cloud-gateway-pools",
            json!({"backup_server_uid": unknown, "name": "P", "cloud_gateway_uids": ["3e4e6d17-ee2a-430f-807c-8d92af2a5551"]}),
        ),
    ] {
        let resp = app.post(path, &app.write_key, body).await;
        assert_eq!(resp.status(), 409, "{path}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(
            problem["errors"][0]["field"], "backup_server_uid",
            "{problem}"
        );
    }
    let routes = &sim_state(&sim).await["counters"]["requests_by_route"];
    assert!(
        routes.get("POST /cloud/gateways").is_none()
            && routes.get("POST /cloud/gatewaypools").is_none(),
        "nothing reached EM: {routes}"
    );
    let tasks = app.get_json("/v1/tasks").await;
    assert_eq!(
        tasks["items"].as_array().unwrap().len(),
        0,
        "a refused write leaves no task"
    );
    app.stop().await;
    sim.stop().await;
}

/// EM unavailable: 503, try again in 5 s, the problem naming it; the problem.
async fn em_unavailable(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://em-gateway.dev/problems/em-unavailable"
    );
    problem
}

async fn em_down_is_503_with_retry_after(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    sim.stop().await;
    let resp = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("down.example"),
        )
        .await;
    em_unavailable(resp).await;
    let ready = http().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_ne!(body["enterprise_manager"], "ok");
    assert_eq!(
        http()
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

/// A 408 from EM's web server means EM never saw the request: a create is sent once more, and
/// when that is not taken in either, EM is unavailable (503, try later), not a bad answer.
async fn a_request_em_did_not_take_in_is_sent_once_more(db: Db) {
    // Stepped, one EM session: the creates are the only requests EM sees, so the faults meet
    // them and nothing else.
    let (sim, app) = setup_stepped_one_session(db).await;
    // EM's creates, the requests the faults answered instead, and all EM took in.
    let posts = || async {
        let counters = &sim_state(&sim).await["counters"];
        (
            counters["requests_by_route"]["POST /cloud/gateways"]
                .as_u64()
                .unwrap_or(0),
            counters["requests_failed_by_fault"].as_u64().unwrap_or(0),
            counters["requests"].as_u64().unwrap_or(0),
        )
    };
    // A first create logs the sessions on, so that the faults below meet the creates only.
    let first = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("warm.example"),
        )
        .await;
    assert_eq!(first.status(), 202);
    let before = posts().await;

    set_sim_faults(&sim, json!({"error_status": 408, "error_next": 1})).await;
    let resp = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("again.example"),
        )
        .await;
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    assert_eq!(
        posts().await,
        (before.0 + 1, 1, before.2 + 1),
        "sent twice, taken in once"
    );

    set_sim_faults(&sim, json!({"error_next": 2})).await;
    let resp = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("never.example"),
        )
        .await;
    let problem = em_unavailable(resp).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("408"),
        "{problem}"
    );
    assert_eq!(
        posts().await,
        (before.0 + 1, 3, before.2 + 1),
        "sent twice, no third time"
    );
    let hosts: Vec<Value> = app.get_json("/v1/tasks").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["resource"]["server_host_name"].clone())
        .collect();
    assert_eq!(
        hosts.len(),
        2,
        "no task for what EM never took in: {hosts:?}"
    );
    app.stop().await;
    sim.stop().await;
}

async fn tasks_survive_em_session_expiry_and_restart(db: Db) {
    let (sim, app) = setup(db, |c| c.task_time = Duration::from_millis(400)).await;
    let a: Value = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("expiry.example"),
        )
        .await
        .json()
        .await
        .unwrap();
    sim_control(&sim, Method::POST, "/_sim/sessions/expire", None).await;
    let b: Value = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("restart.example"),
        )
        .await
        .json()
        .await
        .unwrap();
    sim_control(&sim, Method::POST, "/_sim/restart", None).await;
    for task in [a, b] {
        let done = app.settled(task["id"].as_str().unwrap()).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert!(
            done["message"]
                .as_str()
                .unwrap()
                .contains("settled by looking at EM's objects"),
            "{done}"
        );
        assert_eq!(done["resource"]["type"], "cloud_gateway");
    }
    app.stop().await;
    sim.stop().await;
}

async fn a_restarted_gateway_still_settles_its_tasks(db: Db) {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(600));
    let url = fresh_database(db).await;
    let settings = test_settings(&sim, &url);
    let first = spawn_app(&settings).await;
    let task: Value = first
        .post(
            "/v1/cloud-gateways",
            &first.write_key,
            gateway("restart-gw.example"),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap().to_string();
    first.stop().await;
    let second = spawn_app(&settings).await;
    let done = second.settled(&id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["resource"]["type"], "cloud_gateway");
    second.stop().await;
    sim.stop().await;
}

async fn a_lost_em_answer_is_settled_from_ems_objects(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    set_sim_faults(&sim, json!({"drop_rate": 1.0})).await;
    let resp = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("lost.example"),
        )
        .await;
    assert_eq!(
        resp.status(),
        202,
        "a write EM may have taken is accepted, not refused"
    );
    let task: Value = resp.json().await.unwrap();
    assert!(task["em_task_id"].is_null());
    set_sim_faults(&sim, json!({"drop_rate": 0.0})).await;
    let done = app.settled(task["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        sim_state(&sim).await["counters"]["requests_by_route"]["POST /cloud/gateways"],
        1,
        "never sent twice"
    );
    app.stop().await;
    sim.stop().await;
}

async fn tasks_list_filters_and_pages(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let t: Value = app
            .post(
                "/v1/cloud-gateways",
                &app.write_key,
                gateway(&format!("list{i}.example")),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    let dup: Value = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("list0.example"),
        )
        .await
        .json()
        .await
        .unwrap();
    for id in ids
        .iter()
        .chain([dup["id"].as_str().unwrap().to_string()].iter())
    {
        app.settled(id).await;
    }
    let page1 = app.get_json("/v1/tasks?limit=4").await;
    let items = page1["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["id"], dup["id"], "newest first");
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = app
        .get_json(&format!("/v1/tasks?limit=4&cursor={cursor}"))
        .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert!(page2["next_cursor"].is_null());
    let failed = app.get_json("/v1/tasks?state=failed").await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    let by_op = app
        .get_json("/v1/tasks?operation=create_cloud_gateway_pool")
        .await;
    assert_eq!(by_op["items"].as_array().unwrap().len(), 0);
    for bad in [
        "state=done",
        "limit=0",
        "limit=501",
        "cursor=zzz",
        "colour=red",
    ] {
        let resp = app.get(&format!("/v1/tasks?{bad}"), &app.read_key).await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let missing = app
        .get(
            "/v1/tasks/0193a5c4-8f2e-7cc1-9d7e-3b1f3c2a9e10",
            &app.read_key,
        )
        .await;
    assert_eq!(missing.status(), 404);
    let garbage = app.get("/v1/tasks/not-a-uuid", &app.read_key).await;
    assert_eq!(garbage.status(), 404);
    app.stop().await;
    sim.stop().await;
}

async fn keys_and_scopes_guard_every_route(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    let no_key = http().get(app.url("/v1/tasks")).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(no_key.headers()["content-type"], "application/problem+json");
    assert_eq!(app.get("/v1/tasks", "emgw_unknown").await.status(), 401);
    assert_eq!(app.get("/v1/tasks", "not even a key").await.status(), 401);
    let basic = http()
        .get(app.url("/v1/tasks"))
        .basic_auth("a", Some("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(app.get("/v1/tasks", &app.read_key).await.status(), 200);
    let read_write = app
        .post(
            "/v1/cloud-gateways",
            &app.read_key,
            gateway("scope.example"),
        )
        .await;
    assert_eq!(read_write.status(), 403);
    assert_eq!(
        app.post(
            "/v1/cloud-gateways",
            &app.admin_key,
            gateway("scope.example")
        )
        .await
        .status(),
        202
    );
    let unknown = app.get("/v1/nothing-here", &app.read_key).await;
    assert_eq!(unknown.status(), 404);
    app.stop().await;
    sim.stop().await;
}

async fn inventory_lists_backup_servers_and_tenants(db: Db) {
    let (sim, app) = setup(db, |_| {}).await;
    let servers = app.get_json("/v1/backup-servers").await;
    let vbr01 = servers["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["uid"] == VBR01)
        .unwrap()
        .clone();
    assert_eq!(vbr01["id"], "29e5d158-1f58-44bc-bbaa-2752d787a91d");
    assert_eq!(vbr01["name"], "vbr01.example.local");
    assert_eq!(
        app.get_json("/v1/backup-servers/29e5d158-1f58-44bc-bbaa-2752d787a91d")
            .await,
        vbr01
    );
    assert_eq!(
        app.get_json(&format!("/v1/backup-servers/{VBR01}")).await,
        vbr01,
        "a UID works as the id too"
    );
    let named = app.get_json("/v1/backup-servers?name=VBR02").await;
    assert_eq!(named["items"].as_array().unwrap().len(), 1);

    let tenants = app.get_json("/v1/cloud-tenants").await;
    let acme = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["uid"] == ACME)
        .unwrap()
        .clone();
    assert_eq!(acme["name"], "acme");
    assert_eq!(acme["backup_server"]["uid"], VBR01);
    assert_eq!(
        app.get_json(&format!("/v1/cloud-tenants/{ACME}")).await,
        acme
    );
    let missing = app
        .get(
            "/v1/cloud-tenants/00000000-0000-4000-8000-000000000009",
            &app.read_key,
        )
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        app.get("/v1/backup-servers?colour=red", &app.read_key)
            .await
            .status(),
        400
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_settle_every_task() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(300));
    let url = fresh_database(Db::Postgres).await;
    let settings = test_settings(&sim, &url);
    let a = spawn_app(&settings).await;
    let b = spawn_app(&settings).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &a } else { &b };
        let t: Value = app
            .post(
                "/v1/cloud-gateways",
                &app.write_key,
                gateway(&format!("rep{i}.example")),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(t["id"].as_str().unwrap().to_string());
        if i == 10 {
            // Half the tasks lose their sessions: they become orphans any replica may lease.
            sim_control(&sim, Method::POST, "/_sim/sessions/expire", None).await;
        }
    }
    for id in &ids {
        let done = a.settled(id).await;
        assert_eq!(done["state"], "succeeded", "{done}");
    }
    let routes = sim_state(&sim).await;
    assert_eq!(routes["cloud_gateways"], 20);
    a.stop().await;
    b.stop().await;
    sim.stop().await;
}

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert!(
        committed == em_gateway::api::openapi::document(),
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_asks_em_once_per_session_not_once_per_task() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(800));
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    sim_control(&sim, Method::POST, "/_sim/counters/reset", None).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let t: Value = app
            .post(
                "/v1/cloud-gateways",
                &app.write_key,
                gateway(&format!("poll{i}.example")),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    // Tick by tick: each tick reads each session's task list once, 30 tasks or not.
    let task_lists = |state: &Value| {
        state["counters"]["requests_by_route"]["GET /tasks"]
            .as_u64()
            .unwrap_or(0)
    };
    let ticks = std::sync::atomic::AtomicU64::new(0);
    eventually("every task to settle", Duration::from_secs(15), || async {
        let before = task_lists(&sim_state(&sim).await);
        let report = app.tick_poller().await;
        let after = task_lists(&sim_state(&sim).await);
        assert!(report.em_task_lists <= 2, "{report:?}");
        assert_eq!(
            after - before,
            report.em_task_lists as u64,
            "one GET /tasks per session"
        );
        ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (report.settled == 0
            && app.get_json("/v1/tasks?state=running").await["items"]
                .as_array()
                .unwrap()
                .is_empty())
        .then_some(())
    })
    .await;
    for id in &ids {
        assert_eq!(
            app.get_json(&format!("/v1/tasks/{id}")).await["state"],
            "succeeded"
        );
    }
    let state = sim_state(&sim).await;
    let routes = &state["counters"]["requests_by_route"];
    assert!(
        routes.get("GET /tasks/{id}").is_none(),
        "never one call per task: {routes}"
    );
    let ticks = ticks.load(std::sync::atomic::Ordering::SeqCst);
    assert!(task_lists(&state) <= 2 * ticks, "{routes}");
    assert_eq!(
        state["counters"]["logons"], 0,
        "sessions were logged on at start, not per request"
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn the_docs_work_offline_and_serve_the_committed_document() {
    let (sim, app) = setup(Db::Sqlite, |_| {}).await;
    let served = http()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, em_gateway::api::openapi::document());
    let page = http().get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no CDN: {html}"
    );
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let resp = http().get(app.url(asset)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{asset} is bundled");
    }
    let init = http()
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    app.stop().await;
    sim.stop().await;
}

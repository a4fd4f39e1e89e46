//! Tenant work that EM or the gateway lost on the way still ends, exactly once, in the state
//! EM's objects say: every tenant operation with EM restarted mid-task (it forgets its tasks,
//! not its objects), and an onboarding through a gateway killed with SIGKILL and started again.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;
use crate::tenant_secrets::issue_key;
use crate::tenants::{ACME_ID, ACME_QUOTA, REPO01, SOBR01};

both_databases!(
    every_tenant_operation_em_forgot_mid_task_is_settled_from_its_objects,
    tenant_operations_em_forgot_and_never_did_fail_once_the_grace_period_is_over,
    an_onboarding_through_a_killed_gateway_settles_once_after_its_restart,
);

const LOST: &str =
    "Enterprise Manager lost track of this task; settled by looking at EM's objects: ";
const GLOBEX_ID: &str = "3f2a1c10-0000-4000-8000-00000000e902";

/// Sends a write, expects 202; returns the task's id.
async fn accepted(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> String {
    let mut req = http()
        .request(method.clone(), app.url(path))
        .bearer_auth(&app.write_key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let task: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{method} {path}: {task}");
    assert_eq!(task["state"], "running");
    task["id"].as_str().unwrap().to_string()
}

async fn operations_pending(sim: &em_gateway::sim::RunningSim) -> u64 {
    sim_state(sim).await["operations_pending"].as_u64().unwrap()
}

/// Restarts EM while the write just accepted is under way, then waits for EM to carry the
/// operation out (or fail it): EM forgets the task, not the work.
async fn restart_em_mid_task(sim: &em_gateway::sim::RunningSim) {
    sim_control(sim, Method::POST, "/_sim/restart", None).await;
    // A restart keeps the operations under way: one pending now was pending at the restart.
    assert!(
        operations_pending(sim).await >= 1,
        "EM restarted with the operation under way"
    );
    eventually(
        "EM to finish the operation",
        Duration::from_secs(10),
        || async { (operations_pending(sim).await == 0).then_some(()) },
    )
    .await;
}

/// A write EM forgot mid-task, settled by stepping the poller.
async fn forgotten(
    app: &TestApp,
    sim: &em_gateway::sim::RunningSim,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let id = accepted(app, method, path, body).await;
    restart_em_mid_task(sim).await;
    app.settle_by_ticking(&id).await
}

fn settled_from_objects(task: &Value, state: &str, what: &str) {
    assert_eq!(task["state"], state, "{task}");
    let message = task["message"].as_str().unwrap_or_default();
    assert_eq!(message, format!("{LOST}{what}"), "{task}");
}

async fn every_tenant_operation_em_forgot_mid_task_is_settled_from_its_objects(db: Db) {
    // Long enough for the restart to strike while EM works.
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(400));
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;

    let created = forgotten(
        &app,
        &sim,
        Method::POST,
        "/v1/cloud-tenants",
        Some(json!({"backup_server_uid": VBR01, "name": "Lost Track Ltd",
            "password": "Forgotten-Pa55",
            "backup_resources": [{"name": "Cloud Repository", "repository_uid": REPO01, "quota_mb": 4096}]})),
    )
    .await;
    settled_from_objects(&created, "succeeded", "cloud tenant Lost Track Ltd exists");
    assert_eq!(created["resource"]["type"], "cloud_tenant");
    let id = created["resource"]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/cloud-tenants/{id}");
    let tenant = app.get_json(&path).await;
    assert_eq!(
        tenant["name"], "Lost Track Ltd",
        "the resource is EM's tenant"
    );
    let quota = tenant["backup_resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let changed = forgotten(
        &app,
        &sim,
        Method::PATCH,
        &path,
        Some(json!({"enabled": false, "backup_resources": [{"id": quota, "quota_mb": 8192}]})),
    )
    .await;
    settled_from_objects(
        &changed,
        "succeeded",
        &format!("cloud tenant {id} has the requested settings"),
    );
    let tenant = app.get_json(&path).await;
    assert_eq!(tenant["enabled"], false);
    assert_eq!(tenant["backup_resources"][0]["quota_mb"], 8192);

    let added = forgotten(
        &app,
        &sim,
        Method::POST,
        &format!("{path}/backup-resources"),
        Some(json!({"name": "Scale-out", "repository_uid": SOBR01, "quota_mb": 2048})),
    )
    .await;
    let sobr = SOBR01.rsplit(':').next().unwrap();
    settled_from_objects(
        &added,
        "succeeded",
        &format!("cloud tenant {id} has a storage quota on repository {sobr}"),
    );
    assert_eq!(added["resource"]["type"], "cloud_tenant_backup_resource");
    let second = added["resource"]["id"].as_str().unwrap().to_string();
    let tenant = app.get_json(&path).await;
    assert!(
        tenant["backup_resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["id"] == second.as_str() && q["repository"]["uid"] == SOBR01),
        "the resource is EM's new quota: {tenant}"
    );

    let removed = forgotten(
        &app,
        &sim,
        Method::DELETE,
        &format!("{path}/backup-resources/{second}"),
        None,
    )
    .await;
    settled_from_objects(
        &removed,
        "succeeded",
        &format!("cloud tenant backup resource {second} no longer exists"),
    );
    assert_eq!(
        app.get_json(&path).await["backup_resources"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let deleted = forgotten(&app, &sim, Method::DELETE, &path, None).await;
    settled_from_objects(
        &deleted,
        "succeeded",
        &format!("cloud tenant {id} no longer exists"),
    );
    assert_eq!(app.get(&path, &app.read_key).await.status(), 404);

    // Settled from EM's objects every time, never from EM's (forgotten) task.
    let tasks = app.get_json("/v1/tasks?limit=10").await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 5, "{tasks}");
    app.stop().await;
    sim.stop().await;
}

async fn tenant_operations_em_forgot_and_never_did_fail_once_the_grace_period_is_over(db: Db) {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(400));
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    // Every operation EM starts fails: its effect never shows among EM's objects.
    set_sim_faults(&sim, json!({"task_failure_rate": 1.0})).await;
    let before = sim_state(&sim).await["tenants"].clone();
    let acme = format!("/v1/cloud-tenants/{ACME_ID}");
    let sobr = SOBR01.rsplit(':').next().unwrap();
    let cases: Vec<(Method, String, Option<Value>, String)> = vec![
        (
            Method::POST,
            "/v1/cloud-tenants".into(),
            Some(
                json!({"backup_server_uid": VBR01, "name": "Never Ltd", "password": "Never-Pa55"}),
            ),
            "no cloud tenant Never Ltd appeared".into(),
        ),
        (
            Method::PATCH,
            acme.clone(),
            Some(json!({"enabled": false})),
            format!("cloud tenant {ACME_ID} did not take the requested settings"),
        ),
        (
            Method::POST,
            format!("{acme}/backup-resources"),
            Some(json!({"name": "Scale-out", "repository_uid": SOBR01, "quota_mb": 2048})),
            format!("no storage quota on repository {sobr} appeared for cloud tenant {ACME_ID}"),
        ),
        (
            Method::DELETE,
            format!("{acme}/backup-resources/{ACME_QUOTA}"),
            None,
            format!("cloud tenant backup resource {ACME_QUOTA} still exists"),
        ),
        (
            Method::DELETE,
            format!("/v1/cloud-tenants/{GLOBEX_ID}"),
            None,
            format!("cloud tenant {GLOBEX_ID} still exists"),
        ),
    ];
    for (method, path, body, missing) in cases {
        let id = accepted(&app, method.clone(), &path, body).await;
        restart_em_mid_task(&sim).await;
        // Looked at, found wanting, and given the grace period (3 s) to show.
        eventually(
            "the lost task to be looked at",
            Duration::from_secs(10),
            || async { (app.tick_poller().await.orphans_claimed >= 1).then_some(()) },
        )
        .await;
        let task = app.get_json(&format!("/v1/tasks/{id}")).await;
        assert_eq!(task["state"], "running", "{method} {path}: {task}");
        app.advance(Duration::from_secs(4));
        let task = app.settle_by_ticking(&id).await;
        settled_from_objects(&task, "failed", &format!("{missing} within 3 s"));
        assert_eq!(task["resource"], Value::Null, "{task}");
    }
    assert_eq!(
        sim_state(&sim).await["tenants"],
        before,
        "EM's tenants are as they were"
    );
    app.stop().await;
    sim.stop().await;
}

async fn an_onboarding_through_a_killed_gateway_settles_once_after_its_restart(db: Db) {
    // EM takes long enough that the gateway is killed before the task can settle.
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(1500));
    let database = fresh_database(db).await;
    let key = issue_key(&database).await;
    let vars = process_vars(&sim, &database, &[]);
    let first = gateway_process(&vars).await;
    let receiver = Receiver::start(Answer::Ok);
    let hook: Value = http()
        .post(format!("{}/v1/webhooks", first.base))
        .bearer_auth(&key)
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let onboard = |base: String| {
        http()
            .post(format!("{base}/v1/cloud-tenants"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "onboard-survivor")
            .json(&json!({"backup_server_uid": VBR01, "name": "Survivor Ltd",
                "password": "Survivor-Pa55",
                "backup_resources": [{"name": "Cloud Repository", "repository_uid": REPO01, "quota_mb": 4096}]}))
            .send()
    };
    let resp = onboard(first.base.clone()).await.unwrap();
    assert_eq!(resp.status(), 202);
    let task: Value = resp.json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_string();

    first.kill().await;
    assert!(
        operations_pending(&sim).await >= 1,
        "the gateway died before EM finished, so before the task could settle"
    );

    let second = gateway_process(&vars).await;
    // The client, retrying after the crash, gets the same task; EM sees no second create.
    let again = onboard(second.base.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());
    let task_url = format!("{}/v1/tasks/{id}", second.base);
    let task = eventually("the task to settle", Duration::from_secs(30), || async {
        let t: Value = http()
            .get(&task_url)
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (t["state"] != "running").then_some(t)
    })
    .await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert!(
        task["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(LOST),
        "the restarted gateway could not follow the dead one's EM task: {task}"
    );

    let state = sim_state(&sim).await;
    let survivors: Vec<&Value> = state["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "Survivor Ltd")
        .collect();
    assert_eq!(survivors.len(), 1, "one tenant on EM: {survivors:?}");
    assert_eq!(task["resource"]["id"], survivors[0]["id"]);
    assert_eq!(
        state["counters"]["requests_by_route"]["POST /cloud/tenants"], 1,
        "EM saw one create"
    );

    // The webhook fires once: one event, delivered, and the receiver got it once.
    let deliveries_url = format!(
        "{}/v1/webhooks/{}/deliveries",
        second.base,
        hook["id"].as_str().unwrap()
    );
    let deliveries = eventually(
        "the delivery to be recorded",
        Duration::from_secs(15),
        || async {
            let page: Value = http()
                .get(&deliveries_url)
                .bearer_auth(&key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let items = page["items"].as_array()?.clone();
            items
                .iter()
                .all(|d| d["state"] == "delivered")
                .then_some(items)
                .filter(|i| !i.is_empty())
        },
    )
    .await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["task_id"], id.as_str());
    let received: Vec<Value> = receiver
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|e| e["data"]["id"] == id.as_str())
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["type"], "task.succeeded");
    second.kill().await;
    sim.stop().await;
}

//! Cloud tenants over real HTTP against em-sim: onboard with a quota on a pool in one call,
//! change, suspend, add and remove quotas, delete; what is refused before EM sees it; what EM
//! refuses later; idempotent replays.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

both_databases!(
    a_tenant_is_onboarded_changed_and_removed,
    a_name_taken_in_a_race_fails_with_ems_message,
    what_em_would_fail_later_is_refused_before_it_is_sent,
    bad_input_is_422_naming_the_field_and_never_reaches_em,
    a_repeated_tenant_create_is_answered_from_its_first_time,
    repositories_are_listed_in_mb_per_backup_server,
);

pub const REPO01: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101";
pub const SOBR01: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a102";
/// 50 GB free.
pub const NEARLY_FULL: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a103";
pub const REPO02: &str = "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a201";
pub const WAN01: &str = "urn:veeam:WanAccelerator:3f2a1c10-0000-4000-8000-00000000aa01";
/// Acme's quota on REPO01: 100 GB, 20 GB used.
pub const ACME_QUOTA: &str = "3f2a1c10-0000-4000-8000-00000000e911";
pub const ACME_ID: &str = "5cf540af-512a-5ba8-9f12-77fba51207e0";

async fn send(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = http()
        .request(method, app.url(path))
        .bearer_auth(&app.write_key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// Sends a write, expects 202 and ticks the poller until its task settles.
async fn settled_write(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let resp = send(app, method.clone(), path, body).await;
    let status = resp.status();
    let task: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{method} {path}: {task}");
    app.settle_by_ticking(task["id"].as_str().unwrap()).await
}

/// A gateway and a pool holding it on VBR01, for the tenant to use.
async fn pool(app: &TestApp, host: &str) -> String {
    let gateway = settled_write(
        app,
        Method::POST,
        "/v1/cloud-gateways",
        Some(json!({"backup_server_uid": VBR01, "server_host_name": host})),
    )
    .await;
    assert_eq!(gateway["state"], "succeeded", "{gateway}");
    let pool = settled_write(
        app,
        Method::POST,
        "/v1/cloud-gateway-pools",
        Some(
            json!({"backup_server_uid": VBR01, "name": format!("pool of {host}"),
            "cloud_gateway_uids": [gateway["resource"]["uid"]]}),
        ),
    )
    .await;
    assert_eq!(pool["state"], "succeeded", "{pool}");
    pool["resource"]["uid"].as_str().unwrap().to_string()
}

pub fn new_tenant(name: &str) -> Value {
    json!({"backup_server_uid": VBR01, "name": name, "password": "Initial-Pa55word",
        "backup_resources": [{"name": "Cloud Repository", "repository_uid": REPO01, "quota_mb": 307200}]})
}

async fn a_tenant_is_onboarded_changed_and_removed(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let receiver = Receiver::start(Answer::Ok);
    let hook = app
        .post("/v1/webhooks", &app.write_key, json!({"url": receiver.url}))
        .await;
    assert_eq!(hook.status(), 201);
    let pool_uid = pool(&app, "gw-tenants.example").await;
    assert_eq!(
        app.deliver_due().await,
        2,
        "the gateway's and the pool's events"
    );

    // Onboard: quota, pool, lease, throttling, concurrency, insider protection, in one call.
    let lease = "2031-06-30T00:00:00Z";
    let created = settled_write(
        &app,
        Method::POST,
        "/v1/cloud-tenants",
        Some(json!({
            "backup_server_uid": VBR01, "name": "ABC Company", "description": "ABC Company Ltd",
            "password": "Initial-Pa55word", "enabled": true, "lease_expires_at": lease,
            "backup_resources": [{"name": "Cloud Repository", "repository_uid": REPO01,
                "quota_mb": 307200, "wan_accelerator_uid": WAN01}],
            "max_concurrent_tasks": 2, "throttling": {"speed_limit": 10, "unit": "MBps"},
            "backup_protection_days": 7, "cloud_gateway_pool_uids": [pool_uid],
            "failover_to_other_gateways": true, "metadata": {"order": "42"}})),
    )
    .await;
    assert_eq!(created["state"], "succeeded", "{created}");
    assert_eq!(created["operation"], "create_cloud_tenant");
    assert_eq!(created["resource"]["type"], "cloud_tenant");
    assert_eq!(created["metadata"]["order"], "42");
    assert_eq!(created["warnings"], json!([]));
    let id = created["resource"]["id"].as_str().unwrap().to_string();
    assert_eq!(app.deliver_due().await, 1);
    let event = receiver.received().last().unwrap().json();
    assert_eq!(event["type"], "task.succeeded");
    assert_eq!(event["data"]["id"], created["id"]);

    let tenant = app.get_json(&format!("/v1/cloud-tenants/{id}")).await;
    assert_eq!(tenant["name"], "ABC Company");
    assert_eq!(tenant["description"], "ABC Company Ltd");
    assert_eq!(tenant["enabled"], true);
    assert_eq!(tenant["lease_expires_at"], lease);
    assert_eq!(tenant["backup_server"]["name"], "vbr01.example.local");
    let quota = &tenant["backup_resources"][0];
    assert_eq!(quota["name"], "Cloud Repository");
    assert_eq!(quota["quota_mb"], 307200);
    assert_eq!(quota["used_mb"], 0);
    assert_eq!(quota["repository"]["name"], "Cloud Repository 01");
    assert_eq!(quota["wan_accelerator_uid"], WAN01);
    assert_eq!(tenant["max_concurrent_tasks"], 2);
    assert_eq!(
        tenant["throttling"],
        json!({"speed_limit": 10, "unit": "MBps"})
    );
    assert_eq!(tenant["backup_protection_days"], 7);
    assert_eq!(tenant["cloud_gateway_pool_uids"], json!([pool_uid]));
    assert_eq!(
        tenant["cloud_gateway_pools"][0]["name"],
        "pool of gw-tenants.example"
    );
    assert_eq!(tenant["failover_to_other_gateways"], true);
    assert_eq!(tenant["last_active_at"], Value::Null);
    assert!(!tenant.to_string().contains("Initial-Pa55word"));
    let quota_id = quota["id"].as_str().unwrap().to_string();

    let listed = |query: &'static str| {
        let app = &app;
        async move {
            let page = app.get_json(&format!("/v1/cloud-tenants{query}")).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(
        listed("?name=abc")
            .await
            .contains(&"ABC Company".to_string())
    );
    assert!(
        listed("?enabled=true")
            .await
            .contains(&"ABC Company".to_string())
    );
    assert!(
        !listed("?enabled=false")
            .await
            .contains(&"ABC Company".to_string())
    );
    assert!(
        !listed("?backup_server_uid=8c88c6d6-931f-4044-8c0b-7a0c5f188b00")
            .await
            .contains(&"ABC Company".to_string())
    );

    // Suspend, new password, grow the quota, drop lease, throttling and pools.
    let changed = settled_write(
        &app,
        Method::PATCH,
        &format!("/v1/cloud-tenants/{id}"),
        Some(json!({"enabled": false, "password": "Second-Pa55word",
            "backup_resources": [{"id": quota_id, "quota_mb": 409600}],
            "lease_expires_at": null, "throttling": null, "cloud_gateway_pool_uids": []})),
    )
    .await;
    assert_eq!(changed["state"], "succeeded", "{changed}");
    let tenant = app.get_json(&format!("/v1/cloud-tenants/{id}")).await;
    assert_eq!(tenant["enabled"], false);
    assert_eq!(tenant["backup_resources"][0]["quota_mb"], 409600);
    assert_eq!(tenant["lease_expires_at"], Value::Null);
    assert_eq!(tenant["throttling"], Value::Null);
    assert_eq!(tenant["cloud_gateway_pool_uids"], json!([]));
    assert_eq!(tenant["max_concurrent_tasks"], 2, "left out, kept");
    assert_eq!(tenant["backup_protection_days"], 7, "left out, kept");
    let password_ok = http()
        .post(format!(
            "{}/_sim/tenants/{id}/password-check",
            sim.api_url.trim_end_matches("/api")
        ))
        .json(&json!({"password": "Second-Pa55word"}))
        .send()
        .await
        .unwrap();
    assert!(password_ok.status().is_success(), "EM has the new password");

    // A second quota, on the scale-out repository; then it goes again.
    let added = settled_write(
        &app,
        Method::POST,
        &format!("/v1/cloud-tenants/{id}/backup-resources"),
        Some(json!({"name": "Archive", "repository_uid": SOBR01, "quota_mb": 102400})),
    )
    .await;
    assert_eq!(added["state"], "succeeded", "{added}");
    assert_eq!(added["operation"], "create_cloud_tenant_backup_resource");
    assert_eq!(added["resource"]["type"], "cloud_tenant_backup_resource");
    let added_id = added["resource"]["id"].as_str().unwrap().to_string();
    let tenant = app.get_json(&format!("/v1/cloud-tenants/{id}")).await;
    assert_eq!(tenant["backup_resources"].as_array().unwrap().len(), 2);
    let removed = settled_write(
        &app,
        Method::DELETE,
        &format!("/v1/cloud-tenants/{id}/backup-resources/{added_id}"),
        None,
    )
    .await;
    assert_eq!(removed["state"], "succeeded", "{removed}");
    assert_eq!(removed["resource"]["id"], added_id);
    let tenant = app.get_json(&format!("/v1/cloud-tenants/{id}")).await;
    assert_eq!(tenant["backup_resources"].as_array().unwrap().len(), 1);

    let deleted = settled_write(
        &app,
        Method::DELETE,
        &format!("/v1/cloud-tenants/{id}?delete_backups=true"),
        None,
    )
    .await;
    assert_eq!(deleted["state"], "succeeded", "{deleted}");
    assert_eq!(deleted["operation"], "delete_cloud_tenant");
    assert_eq!(
        app.get(&format!("/v1/cloud-tenants/{id}"), &app.read_key)
            .await
            .status(),
        404
    );
    assert_eq!(app.deliver_due().await, 4, "every write fired its webhook");
    app.stop().await;
    sim.stop().await;
}

/// The pre-check cannot see a name taken between its read and EM's run: two creates of one
/// name at once both pass it, and EM fails the second with its own message.
async fn a_name_taken_in_a_race_fails_with_ems_message(db: Db) {
    // EM's tasks take long enough that neither tenant (nor quota) exists while both requests are
    // checked, however busy the machine: an object appears only when its task finishes.
    let sim = spawn_sim(|c| c.task_time = std::time::Duration::from_secs(3));
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let (a, b) = tokio::join!(
        send(
            &app,
            Method::POST,
            "/v1/cloud-tenants",
            Some(new_tenant("racer"))
        ),
        send(
            &app,
            Method::POST,
            "/v1/cloud-tenants",
            Some(new_tenant("RACER"))
        ),
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (202, 202));
    let mut states = Vec::new();
    for resp in [a, b] {
        let task: Value = resp.json().await.unwrap();
        states.push(app.settle_by_ticking(task["id"].as_str().unwrap()).await);
    }
    states.sort_by_key(|t| t["state"].as_str().unwrap().to_string());
    assert_eq!(states[0]["state"], "failed", "{states:?}");
    assert_eq!(states[1]["state"], "succeeded", "{states:?}");
    let message = states[0]["message"].as_str().unwrap();
    assert!(
        message.contains("already exists on this backup server"),
        "EM's own message: {message}"
    );
    // The same quota twice at once: one fails with EM's message too.
    let tenant = states[1]["resource"]["id"].as_str().unwrap().to_string();
    let quota = json!({"name": "Second", "repository_uid": SOBR01, "quota_mb": 2048});
    let path = format!("/v1/cloud-tenants/{tenant}/backup-resources");
    let (a, b) = tokio::join!(
        send(&app, Method::POST, &path, Some(quota.clone())),
        send(&app, Method::POST, &path, Some(quota)),
    );
    let mut states = Vec::new();
    for resp in [a, b] {
        assert_eq!(resp.status(), 202);
        let task: Value = resp.json().await.unwrap();
        states.push(app.settle_by_ticking(task["id"].as_str().unwrap()).await);
    }
    states.sort_by_key(|t| t["state"].as_str().unwrap().to_string());
    assert_eq!(states[0]["state"], "failed", "{states:?}");
    assert!(
        states[0]["message"]
            .as_str()
            .unwrap()
            .contains("already has a storage quota on repository"),
        "{states:?}"
    );
    app.stop().await;
    sim.stop().await;
}

/// Writes that reached em-sim's tenant routes.
async fn tenant_writes(sim: &em_gateway::sim::RunningSim) -> u64 {
    let state = sim_state(sim).await;
    state["counters"]["requests_by_route"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| !route.starts_with("GET") && route.contains("/cloud/tenants"))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum()
}

async fn what_em_would_fail_later_is_refused_before_it_is_sent(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let tenant = |patch: Value| {
        let mut body = new_tenant("New Ltd");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let quota =
        |repo: &str, mb: u64| json!([{"name": "Cloud", "repository_uid": repo, "quota_mb": mb}]);
    let acme = format!("/v1/cloud-tenants/{ACME_ID}");
    let cases: Vec<(Method, String, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/cloud-tenants".into(),
            tenant(json!({"name": "ACME"})),
            409,
            "name",
        ),
        (
            Method::POST,
            "/v1/cloud-tenants".into(),
            tenant(json!({"backup_resources": quota(REPO02, 2048)})),
            409,
            "backup_resources[0].repository_uid",
        ),
        (
            Method::POST,
            "/v1/cloud-tenants".into(),
            tenant(
                json!({"backup_resources": quota("urn:veeam:Repository:3f2a1c10-0000-4000-8000-0000000000ff", 2048)}),
            ),
            409,
            "backup_resources[0].repository_uid",
        ),
        (
            Method::POST,
            "/v1/cloud-tenants".into(),
            tenant(json!({"cloud_gateway_pool_uids": ["3f2a1c10-0000-4000-8000-0000000000ff"]})),
            409,
            "cloud_gateway_pool_uids[0]",
        ),
        (
            Method::POST,
            "/v1/cloud-tenants".into(),
            tenant(json!({"backup_server_uid": "3f2a1c10-0000-4000-8000-0000000000ff"})),
            409,
            "backup_server_uid",
        ),
        (
            Method::POST,
            "/v1/cloud-tenants?strict_capacity=true".into(),
            tenant(json!({"backup_resources": quota(NEARLY_FULL, 102400)})),
            409,
            "backup_resources[0].quota_mb",
        ),
        (
            Method::POST,
            format!("{acme}/backup-resources"),
            json!({"name": "Again", "repository_uid": REPO01, "quota_mb": 2048}),
            409,
            "repository_uid",
        ),
        (
            Method::POST,
            format!("{acme}/backup-resources"),
            json!({"name": "Far", "repository_uid": REPO02, "quota_mb": 2048}),
            409,
            "repository_uid",
        ),
        (
            Method::PATCH,
            acme.clone(),
            json!({"backup_resources": [{"id": ACME_QUOTA, "quota_mb": 10240}]}),
            409,
            "backup_resources[0].quota_mb",
        ),
        (
            Method::PATCH,
            acme.clone(),
            json!({"backup_resources": [{"id": "3f2a1c10-0000-4000-8000-0000000000ee", "quota_mb": 10240}]}),
            409,
            "backup_resources[0].id",
        ),
        (
            Method::PATCH,
            acme.clone(),
            json!({"cloud_gateway_pool_uids": ["3f2a1c10-0000-4000-8000-0000000000ff"]}),
            409,
            "cloud_gateway_pool_uids[0]",
        ),
        (
            Method::PATCH,
            "/v1/cloud-tenants/3f2a1c10-0000-4000-8000-0000000000ee".into(),
            json!({"enabled": false}),
            404,
            "",
        ),
        (
            Method::DELETE,
            "/v1/cloud-tenants/3f2a1c10-0000-4000-8000-0000000000ee".into(),
            Value::Null,
            404,
            "",
        ),
        (
            Method::DELETE,
            format!("{acme}/backup-resources/3f2a1c10-0000-4000-8000-0000000000ee"),
            Value::Null,
            404,
            "",
        ),
        (
            Method::POST,
            "/v1/cloud-tenants/3f2a1c10-0000-4000-8000-0000000000ee/backup-resources".into(),
            json!({"name": "X", "repository_uid": REPO01, "quota_mb": 2048}),
            404,
            "",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let body = (!body.is_null()).then_some(body);
        let resp = send(&app, method.clone(), &path, body.clone()).await;
        assert_eq!(resp.status().as_u16(), status, "{method} {path} {body:?}");
        let problem: Value = resp.json().await.unwrap();
        if !field.is_empty() {
            assert_eq!(
                problem["errors"][0]["field"], field,
                "{method} {path}: {problem}"
            );
            assert_eq!(problem["errors"].as_array().unwrap().len(), 1, "{problem}");
        }
    }
    assert_eq!(tenant_writes(&sim).await, 0, "nothing reached EM");

    // Over capacity without `strict_capacity`: sent on, with a warning kept in the task.
    let resp = send(
        &app,
        Method::POST,
        "/v1/cloud-tenants",
        Some(tenant(
            json!({"backup_resources": quota(NEARLY_FULL, 102400)}),
        )),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let task: Value = resp.json().await.unwrap();
    let warning = task["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("backup_resources[0].quota_mb: 102400 MB is more than repository Nearly Full Repository has free (51200 MB)"),
        "{warning}"
    );
    let settled = app.settled(task["id"].as_str().unwrap()).await;
    assert_eq!(
        settled["state"], "succeeded",
        "EM allows over-commit: {settled}"
    );
    assert_eq!(settled["warnings"], task["warnings"], "the warning stays");
    app.stop().await;
    sim.stop().await;
}

async fn bad_input_is_422_naming_the_field_and_never_reaches_em(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let with = |field: &str, value: Value| {
        let mut body = new_tenant("Valid Name");
        body[field] = value;
        body
    };
    let quota = |q: Value| json!([q]);
    let cases: Vec<(Value, &str)> = vec![
        (with("name", json!("")), "name"),
        (with("name", json!("x".repeat(129))), "name"),
        (with("name", json!("a/b")), "name"),
        (with("name", json!("a@b")), "name"),
        (with("name", json!("trailing.")), "name"),
        (with("name", json!(" padded")), "name"),
        (with("password", json!("")), "password"),
        (with("password", json!("p".repeat(129))), "password"),
        (with("password", json!("bell\u{7}")), "password"),
        (
            with("lease_expires_at", json!("2020-01-01T00:00:00Z")),
            "lease_expires_at",
        ),
        (
            with("lease_expires_at", json!("next tuesday")),
            "lease_expires_at",
        ),
        (
            with("throttling", json!({"speed_limit": 10, "unit": "mbps"})),
            "throttling.unit",
        ),
        (
            with("throttling", json!({"speed_limit": 0, "unit": "MBps"})),
            "throttling.speed_limit",
        ),
        (
            with("max_concurrent_tasks", json!(0)),
            "max_concurrent_tasks",
        ),
        (
            with("backup_protection_days", json!(0)),
            "backup_protection_days",
        ),
        (with("description", json!("bad \u{FFFE}")), "description"),
        (
            with(
                "backup_resources",
                quota(json!({"name": "C", "repository_uid": REPO01, "quota_mb": 1023})),
            ),
            "backup_resources[0].quota_mb",
        ),
        (
            with(
                "backup_resources",
                quota(json!({"name": "C", "repository_uid": REPO01, "quota_mb": 2147483648_i64})),
            ),
            "backup_resources[0].quota_mb",
        ),
        (
            with(
                "backup_resources",
                quota(
                    json!({"name": "C", "repository_uid": "urn:veeam:CloudTenant:3f2a1c10-0000-4000-8000-00000000a101", "quota_mb": 2048}),
                ),
            ),
            "backup_resources[0].repository_uid",
        ),
        (
            with(
                "backup_resources",
                quota(json!({"name": " ", "repository_uid": REPO01, "quota_mb": 2048})),
            ),
            "backup_resources[0].name",
        ),
        (
            with(
                "backup_resources",
                json!([
            {"name": "A", "repository_uid": REPO01, "quota_mb": 2048},
            {"name": "B", "repository_uid": REPO01, "quota_mb": 2048}]),
            ),
            "backup_resources[1].repository_uid",
        ),
        (
            json!({"backup_server_uid": VBR01, "name": "No Password"}),
            "password",
        ),
    ];
    for (body, field) in cases {
        let resp = send(&app, Method::POST, "/v1/cloud-tenants", Some(body.clone())).await;
        assert_eq!(resp.status(), 422, "{body}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
        assert!(
            !problem.to_string().contains("bell") && !problem.to_string().contains("ppppp"),
            "a password is never echoed: {problem}"
        );
    }
    let acme = format!("/v1/cloud-tenants/{ACME_ID}");
    for (body, status, field) in [
        (json!({}), 422, "body"),
        (json!({"backup_resources": []}), 422, "backup_resources"),
        (
            json!({"backup_protection_days": 0}),
            422,
            "backup_protection_days",
        ),
        (
            json!({"backup_resources": [{"id": ACME_QUOTA, "quota_mb": 5}]}),
            422,
            "backup_resources[0].quota_mb",
        ),
        (
            json!({"backup_resources": [{"id": ACME_QUOTA, "quota_mb": 4096}, {"id": ACME_QUOTA, "quota_mb": 8192}]}),
            422,
            "backup_resources[1].id",
        ),
        (json!({"name": "renamed"}), 400, "name"),
    ] {
        let resp = send(&app, Method::PATCH, &acme, Some(body.clone())).await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    for query in ["?delete_backups=yes", "?colour=red"] {
        let resp = send(&app, Method::DELETE, &format!("{acme}{query}"), None).await;
        assert_eq!(resp.status(), 400, "{query}");
    }
    assert_eq!(tenant_writes(&sim).await, 0, "nothing reached EM");
    app.stop().await;
    sim.stop().await;
}

async fn a_repeated_tenant_create_is_answered_from_its_first_time(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let create = |body: Value| {
        http()
            .post(app.url("/v1/cloud-tenants"))
            .bearer_auth(&app.write_key)
            .header("Idempotency-Key", "onboard-abc-1")
            .json(&body)
            .send()
    };
    let first = create(new_tenant("Once Ltd")).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = create(new_tenant("Once Ltd")).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let other = create(new_tenant("Twice Ltd")).await.unwrap();
    assert_eq!(other.status(), 422, "the same key with another body");
    let creates = sim_state(&sim).await["counters"]["requests_by_route"]["POST /cloud/tenants"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(creates, 1, "EM saw one create");
    app.stop().await;
    sim.stop().await;
}

async fn repositories_are_listed_in_mb_per_backup_server(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let page = app
        .get_json("/v1/repositories?backup_server_uid=29e5d158-1f58-44bc-bbaa-2752d787a91d")
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{page}");
    let repo = items.iter().find(|r| r["uid"] == REPO01).unwrap();
    assert_eq!(repo["name"], "Cloud Repository 01");
    assert_eq!(repo["kind"], "WindowsLocal");
    assert_eq!(repo["capacity_mb"], 10 * 1024 * 1024);
    // 8 TB seeded free, less the 20 GB Acme keeps there.
    assert_eq!(repo["free_mb"], 8 * 1024 * 1024 - 20 * 1024);
    assert_eq!(repo["backup_server"]["name"], "vbr01.example.local");
    let all = app.get_json("/v1/repositories").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    let bad = app
        .get("/v1/repositories?backup_server_uid=nope", &app.read_key)
        .await;
    assert_eq!(bad.status(), 400);
    app.stop().await;
    sim.stop().await;
}

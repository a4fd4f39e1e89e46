//! Owners: two teams' keys on one gateway see and touch only their own tasks and webhooks; an
//! admin key sees both; EM's objects are shared. Every documented route is walked, so a route
//! added later must say which side it is on.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

both_databases!(
    two_owners_never_cross_on_any_route,
    webhook_subscriptions_are_capped_per_owner,
);

/// Which side of ownership a route is on.
#[derive(Debug, PartialEq)]
enum Side {
    /// Tasks and webhooks: another owner's are 404 and never listed.
    Owned,
    /// EM's objects: the same for every key.
    Shared,
    /// Key management: admin keys only (walked in `access`).
    Admin,
    /// Health, metrics, the document: no key.
    Open,
}

fn side(path: &str) -> Side {
    if path.starts_with("/v1/tasks") || path.starts_with("/v1/webhooks") {
        Side::Owned
    } else if path.starts_with("/v1/api-keys") {
        Side::Admin
    } else if path.starts_with("/v1/") {
        Side::Shared
    } else {
        Side::Open
    }
}

struct Team {
    write: String,
    read: String,
}

async fn team(app: &TestApp, owner: &str) -> Team {
    let mut keys = Vec::new();
    for scope in ["write", "read"] {
        let resp = app
            .post(
                "/v1/api-keys",
                &app.admin_key,
                json!({"name": format!("{owner} {scope}"), "scope": scope, "owner": owner}),
            )
            .await;
        assert_eq!(resp.status(), 201);
        let created: Value = resp.json().await.unwrap();
        assert_eq!(created["owner"], owner);
        keys.push(created["key"].as_str().unwrap().to_string());
    }
    Team {
        read: keys.pop().unwrap(),
        write: keys.pop().unwrap(),
    }
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    key: &str,
    idempotency: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = http()
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            app.url(path),
        )
        .bearer_auth(key);
    if let Some(k) = idempotency {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

async fn two_owners_never_cross_on_any_route(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let a = team(&app, "team-a").await;
    let b = team(&app, "team-b").await;
    let (hook_a, hook_b) = (Receiver::start(Answer::Ok), Receiver::start(Answer::Ok));

    // Each team subscribes to every event and creates a gateway, under the same
    // Idempotency-Key and body: the key is each API key's own, so both are done.
    let mut webhook = Vec::new();
    for (t, receiver) in [(&a, &hook_a), (&b, &hook_b)] {
        let resp = app
            .post("/v1/webhooks", &t.write, json!({"url": receiver.url}))
            .await;
        assert_eq!(resp.status(), 201);
        webhook.push(resp.json::<Value>().await.unwrap());
    }
    let body = json!({"backup_server_uid": VBR01, "server_host_name": "shared.example"});
    let mut task = Vec::new();
    for (t, host) in [(&a, "a.example"), (&b, "b.example")] {
        let mut body = body.clone();
        body["server_host_name"] = json!(host);
        let resp = send(
            &app,
            "POST",
            "/v1/cloud-gateways",
            &t.write,
            Some("same-key"),
            Some(body),
        )
        .await;
        assert_eq!(resp.status(), 202);
        assert!(resp.headers().get("Idempotent-Replayed").is_none());
        task.push(resp.json::<Value>().await.unwrap());
    }
    assert_ne!(
        task[0]["id"], task[1]["id"],
        "one team's key never replays the other's"
    );
    assert_eq!(task[0]["owner"], "team-a");
    assert_eq!(task[1]["owner"], "team-b");
    let task_a = task[0]["id"].as_str().unwrap().to_string();
    let hook_a_id = webhook[0]["id"].as_str().unwrap().to_string();

    // Settle both and deliver: each team's receiver gets its own task's event only.
    let settled = eventually("both tasks to settle", Duration::from_secs(15), || async {
        app.tick_poller().await;
        let page = app
            .get_json_with("/v1/tasks?state=succeeded", &app.admin_key)
            .await;
        (ids(&page).len() == 2).then_some(page)
    })
    .await;
    let gateway_a = settled["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["owner"] == "team-a")
        .unwrap()["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.deliver_due().await,
        2,
        "one delivery per team, not four"
    );
    for (receiver, own) in [(&hook_a, &task[0]), (&hook_b, &task[1])] {
        let got = receiver.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].json()["data"]["id"], own["id"]);
    }
    let delivery_a = app
        .get_json_with(&format!("/v1/webhooks/{hook_a_id}/deliveries"), &a.read)
        .await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Every documented route, from team B's keys, aimed at team A's things.
    let doc: Value = serde_json::from_str(&em_gateway::api::openapi::document()).unwrap();
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let concrete = |id: &str| {
                path.replace("{id}", id)
                    .replace("{delivery_id}", &delivery_a)
            };
            match (side(path), path.as_str(), method.as_str()) {
                (Side::Owned, "/v1/tasks", "GET") | (Side::Owned, "/v1/webhooks", "GET") => {
                    for key in [&b.read, &b.write] {
                        let mine = app.get_json_with(path, key).await;
                        let seen = ids(&mine);
                        assert!(
                            !seen.contains(&task_a) && !seen.contains(&hook_a_id),
                            "{method} {path} lists team A's to team B: {mine}"
                        );
                        assert_eq!(seen.len(), 1, "{path} lists team B's own");
                        let asked = app
                            .get_json_with(&format!("{path}?owner=team-a"), key)
                            .await;
                        assert!(ids(&asked).is_empty(), "{path}?owner=team-a to team B");
                    }
                }
                (Side::Owned, "/v1/webhooks", "POST") => {
                    // Creating is not aimed at anything; its owner is checked above.
                }
                (Side::Owned, _, _) => {
                    let id = if path.starts_with("/v1/tasks") {
                        &task_a
                    } else {
                        &hook_a_id
                    };
                    let url = concrete(id);
                    let keys: &[&String] = if method == "GET" {
                        &[&b.read, &b.write]
                    } else {
                        &[&b.write]
                    };
                    for key in keys {
                        let resp = send(&app, &method, &url, key, None, None).await;
                        assert_eq!(resp.status(), 404, "{method} {url} from team B");
                        let problem: Value = resp.json().await.unwrap();
                        assert!(!problem.to_string().contains("team-a"), "{problem}");
                    }
                    let own = send(&app, &method, &url, &a.read, None, None).await;
                    if method == "GET" {
                        assert_eq!(own.status(), 200, "{method} {url} from team A");
                    }
                }
                (Side::Shared, _, "GET") => {
                    let url = concrete(&gateway_a);
                    let resp = send(&app, "GET", &url, &b.read, None, None).await;
                    // A list, or the gateway team A made: B sees it like A (or both a 404 for
                    // ids of other kinds).
                    let from_a = send(&app, "GET", &url, &a.read, None, None).await;
                    assert_eq!(resp.status(), from_a.status(), "GET {url}");
                    if path == "/v1/cloud-gateways/{id}" {
                        assert_eq!(resp.status(), 200, "team A's gateway is shared");
                    }
                }
                (Side::Shared, _, _) | (Side::Admin, _, _) | (Side::Open, _, _) => {}
            }
            walked += 1;
        }
    }
    assert!(walked >= 28, "walked only {walked} operations");

    // What team B tried left team A's things as they were.
    let still = app
        .get_json_with(&format!("/v1/webhooks/{hook_a_id}"), &a.read)
        .await;
    assert!(still["disabled_at"].is_null());
    let log = app
        .get_json_with(&format!("/v1/webhooks/{hook_a_id}/deliveries"), &a.read)
        .await;
    assert_eq!(
        log["items"][0]["state"], "delivered",
        "B's retry reached nothing"
    );

    // The admin key sees everyone's, and may narrow to one owner.
    let all = app.get_json_with("/v1/tasks", &app.admin_key).await;
    assert_eq!(ids(&all).len(), 2);
    let only_a = app
        .get_json_with("/v1/tasks?owner=team-a", &app.admin_key)
        .await;
    assert_eq!(ids(&only_a), vec![task_a.clone()]);
    let hooks_b = app
        .get_json_with("/v1/webhooks?owner=team-b", &app.admin_key)
        .await;
    assert_eq!(
        ids(&hooks_b),
        vec![webhook[1]["id"].as_str().unwrap().to_string()]
    );
    assert_eq!(
        app.get(&format!("/v1/tasks/{task_a}"), &app.admin_key)
            .await
            .status(),
        200
    );
    let keys_a = app
        .get_json_with("/v1/api-keys?owner=team-a", &app.admin_key)
        .await;
    assert_eq!(ids(&keys_a).len(), 2);

    // Keys made without an owner belong to `default`, which sees neither team's.
    let default = app.get_json_with("/v1/tasks", &app.read_key).await;
    assert!(ids(&default).is_empty(), "{default}");
    let bad = app.get("/v1/tasks?owner=no%20such", &app.admin_key).await;
    assert_eq!(bad.status(), 400);
    app.stop().await;
    sim.stop().await;
}

async fn webhook_subscriptions_are_capped_per_owner(db: Db) {
    let sim = spawn_sim(|_| {});
    let url = fresh_database(db).await;
    let app = spawn_app(&test_settings_with(
        &sim,
        &url,
        &[("EMGW_WEBHOOKS_PER_OWNER", "2")],
    ))
    .await;
    let a = team(&app, "team-a").await;
    let b = team(&app, "team-b").await;
    let subscribe = |key: String, n: u32| {
        let app = &app;
        async move {
            app.post(
                "/v1/webhooks",
                &key,
                json!({"url": format!("https://hooks.example.com/{n}")}),
            )
            .await
        }
    };
    for n in 0..2 {
        assert_eq!(subscribe(a.write.clone(), n).await.status(), 201);
    }
    let refused = subscribe(a.write.clone(), 2).await;
    assert_eq!(refused.status(), 409);
    let problem: Value = refused.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("team-a") && detail.contains("EMGW_WEBHOOKS_PER_OWNER"),
        "{detail}"
    );
    assert_eq!(
        subscribe(b.write.clone(), 0).await.status(),
        201,
        "another owner has its own allowance"
    );
    // Deleting one makes room again.
    let listed = app.get_json_with("/v1/webhooks", &a.read).await;
    let first = ids(&listed)[0].clone();
    let deleted = send(
        &app,
        "DELETE",
        &format!("/v1/webhooks/{first}"),
        &a.write,
        None,
        None,
    )
    .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(subscribe(a.write.clone(), 3).await.status(), 201);
    app.stop().await;
    sim.stop().await;
}

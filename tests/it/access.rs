//! Who gets in: every documented /v1 route, walked from the OpenAPI document itself.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

fn needed_scope(path: &str, method: &str) -> u8 {
    if path.starts_with("/v1/api-keys") {
        3
    } else if method == "get" {
        1
    } else {
        2
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_route_needs_a_key_of_the_right_scope() {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let doc: Value = serde_json::from_str(&em_gateway::api::openapi::document()).unwrap();
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !path.starts_with("/v1") {
                assert_eq!(
                    op["security"],
                    json!([]),
                    "{method} {path} is not documented as open"
                );
                continue;
            }
            assert!(
                op["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{method} {path} documents no security"
            );
            let url = app.url(
                &path
                    .replace("{id}", "0193a5c4-8f2e-7cc1-9d7e-3b1f3c2a9e10")
                    .replace("{delivery_id}", "x"),
            );
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |auth: Option<String>| {
                let mut req = http()
                    .request(m.clone(), &url)
                    .header("Content-Type", "application/json")
                    .body("{}");
                if let Some(a) = auth {
                    req = req.header("Authorization", a);
                }
                req.send()
            };
            let cases = [
                (None, "no key"),
                (Some("Bearer".to_string()), "an empty bearer"),
                (
                    Some("Bearer emgw_not-a-real-key".to_string()),
                    "an unknown key",
                ),
                (Some(format!("Basic {}", app.admin_key)), "the wrong scheme"),
                (Some(format!("Bearer {}x", app.admin_key)), "a mangled key"),
            ];
            for (auth, what) in cases {
                let resp = send(auth).await.unwrap();
                assert_eq!(resp.status(), 401, "{method} {path} with {what}");
                assert_eq!(resp.headers()["content-type"], "application/problem+json");
            }
            let needed = needed_scope(path, method);
            if needed >= 2 {
                let resp = send(Some(format!("Bearer {}", app.read_key)))
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 403, "{method} {path} with a read key");
            }
            if needed == 3 {
                let resp = send(Some(format!("Bearer {}", app.write_key)))
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 403, "{method} {path} with a write key");
            }
            walked += 1;
        }
    }
    assert!(walked >= 25, "walked only {walked} routes");
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_keys_over_http() {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let resp = app
        .post(
            "/v1/api-keys",
            &app.admin_key,
            json!({"name": "portal", "scope": "write", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("emgw_") && key.starts_with(created["prefix"].as_str().unwrap()));
    assert!(created["expires_at"].is_string());

    assert_eq!(
        app.get("/v1/tasks", &key).await.status(),
        200,
        "the new key works"
    );
    let listed = app.get_json_with("/v1/api-keys", &app.admin_key).await;
    let text = listed.to_string();
    assert!(
        text.contains("portal") && !text.contains(&key),
        "listed, never with the key"
    );
    let mine = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "portal")
        .unwrap();
    assert!(mine["last_used_at"].is_string(), "use is recorded");

    let id = created["id"].as_str().unwrap();
    let revoke = http()
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    assert_eq!(
        app.get("/v1/tasks", &key).await.status(),
        401,
        "revoked at once"
    );
    let again = http()
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    for bad in [
        json!({"name": "", "scope": "write"}),
        json!({"name": "x", "scope": "root"}),
        json!({"name": "x", "scope": "read", "expires_in_days": 0}),
        json!({"name": "x", "scope": "read", "owner": null}),
        json!({"name": "x", "scope": "read", "owner": "two words"}),
    ] {
        let resp = app.post("/v1/api-keys", &app.admin_key, bad.clone()).await;
        assert!(
            resp.status() == 400 || resp.status() == 422,
            "{bad}: {}",
            resp.status()
        );
    }
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_key_cannot_revoke_itself() {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let id_of = |listed: &Value, prefix: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| prefix.starts_with(k["prefix"].as_str().unwrap()))
            .map(|k| k["id"].as_str().unwrap().to_string())
            .unwrap()
    };
    let revoke = |id: String, key: String| {
        http()
            .delete(app.url(&format!("/v1/api-keys/{id}")))
            .bearer_auth(key)
            .send()
    };
    let listed = app.get_json_with("/v1/api-keys", &app.admin_key).await;
    let own = id_of(&listed, &app.admin_key);
    let refused = revoke(own.clone(), app.admin_key.clone()).await.unwrap();
    assert_eq!(refused.status(), 409);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("last admin key"),
        "{problem}"
    );
    assert_eq!(
        app.get("/v1/api-keys", &app.admin_key).await.status(),
        200,
        "the key still works"
    );

    // With a second admin key, a key may retire itself.
    let second: Value = app
        .post(
            "/v1/api-keys",
            &app.admin_key,
            json!({"name": "second admin", "scope": "admin"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let retired = revoke(own, app.admin_key.clone()).await.unwrap();
    assert_eq!(retired.status(), 204);
    assert_eq!(app.get("/v1/api-keys", &app.admin_key).await.status(), 401);
    // And the one left is now the last.
    let second_key = second["key"].as_str().unwrap().to_string();
    let refused = revoke(second["id"].as_str().unwrap().to_string(), second_key)
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_method_on_a_known_path_is_405_with_allow() {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    for (method, path, allow) in [
        ("TRACE", "/healthz", "GET"),
        ("POST", "/readyz", "GET"),
        ("PUT", "/v1/tasks", "GET"),
        ("PUT", "/v1/cloud-gateways", "GET, POST"),
    ] {
        let resp = http()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(path),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        let mut got: Vec<String> = resp.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_string())
            .collect();
        got.sort();
        assert_eq!(got.join(", "), allow, "{method} {path}");
    }
    app.stop().await;
    sim.stop().await;
}

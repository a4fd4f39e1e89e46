//! No secret at rest in clear: after API keys, webhooks, secret rotations, idempotent creates
//! and their replays (a tenant's password among them), every value of every column of every
//! table is searched for every secret — and for the plain SHA-256 of every request, which a
//! fingerprint that is not keyed would be. Rows written in clear before secrets were sealed are
//! sealed at start and keep working, and the server key can be rotated.

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::*;
use crate::tenant_secrets::{every_value, spellings};
use crate::tenants::REPO01;
use em_gateway::tasks::replay::request_bytes;

both_databases!(
    no_secret_is_stored_in_clear,
    rows_from_before_sealing_are_sealed_at_start_and_keep_working,
);

/// A request sent, kept to compute what a plain fingerprint of it would have been.
struct Sent {
    method: Method,
    path: String,
    body: Vec<u8>,
}

impl Sent {
    /// The plain SHA-256 fingerprints this request could leave: of the whole request as
    /// fingerprinted, and of its body alone.
    fn plain_hashes(&self) -> Vec<String> {
        let whole = request_bytes(self.method.as_str(), &self.path, "", &self.body);
        vec![
            em_gateway::em::tls::sha256_hex(&whole),
            em_gateway::em::tls::sha256_hex(&self.body),
        ]
    }
}

struct Api<'a> {
    app: &'a TestApp,
    sent: Vec<Sent>,
}

impl Api<'_> {
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        key: &str,
        idempotency_key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let mut req = http()
            .request(method.clone(), self.app.url(path))
            .bearer_auth(key);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        if !bytes.is_empty() {
            req = req
                .header("Content-Type", "application/json")
                .body(bytes.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        if idempotency_key.is_some() {
            self.sent.push(Sent {
                method,
                path: path.to_string(),
                body: bytes,
            });
        }
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The spellings of a webhook secret: the whole `whsec_…`, its base64 part, and the bytes that
/// part stands for, in hex and in base64 again (padded).
fn secret_spellings(secret: &str) -> Vec<String> {
    let mut all = spellings(secret);
    let part = secret.strip_prefix("whsec_").expect("a whsec_ secret");
    all.extend(spellings(part));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(part)
        .expect("base64 after whsec_");
    all.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
    all.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
    all
}

/// Every place any spelling of any secret is found.
fn found(secrets: &[(String, Vec<String>)], rows: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (what, spellings) in secrets {
        for (place, value) in rows {
            if spellings.iter().any(|s| value.contains(s.as_str())) {
                found.push(format!(
                    "{what} in {place}: {}",
                    value.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    found
}

async fn no_secret_is_stored_in_clear(db: Db) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let password = format!("At-Rest-Marker-{}", &run[..12]);
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(200));
    let database = fresh_database(db).await;
    let app = spawn_app(&test_settings(&sim, &database)).await;
    let admin = app.admin_key.clone();
    let write = app.write_key.clone();
    let mut api = Api {
        app: &app,
        sent: Vec::new(),
    };

    // API keys: one made under an Idempotency-Key and replayed, one without.
    let create_key = json!({"name": "at rest", "scope": "write"});
    let (status, made) = api
        .send(
            Method::POST,
            "/v1/api-keys",
            &admin,
            Some("key-once"),
            Some(create_key.clone()),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let (status, again) = api
        .send(
            Method::POST,
            "/v1/api-keys",
            &admin,
            Some("key-once"),
            Some(create_key.clone()),
        )
        .await;
    assert_eq!((status, &again["key"]), (201, &made["key"]), "replayed");
    let replayed_key = made["key"].as_str().unwrap().to_string();
    let (status, other) = api
        .send(
            Method::POST,
            "/v1/api-keys",
            &admin,
            None,
            Some(json!({"name": "plain", "scope": "read"})),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let plain_key = other["key"].as_str().unwrap().to_string();

    // A webhook made under an Idempotency-Key and replayed; its secret rotated with an overlap
    // (the old one still signs), under another key, replayed too.
    let receiver = Receiver::start(Answer::Ok);
    let subscribe = json!({"url": receiver.url, "description": "at rest"});
    let (status, hook) = api
        .send(
            Method::POST,
            "/v1/webhooks",
            &write,
            Some("hook-once"),
            Some(subscribe.clone()),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let (status, again) = api
        .send(
            Method::POST,
            "/v1/webhooks",
            &write,
            Some("hook-once"),
            Some(subscribe),
        )
        .await;
    assert_eq!((status, &again["secret"]), (201, &hook["secret"]));
    let first_secret = hook["secret"].as_str().unwrap().to_string();
    let rotate_path = format!(
        "/v1/webhooks/{}/rotate-secret",
        hook["id"].as_str().unwrap()
    );
    let overlap = json!({"overlap_seconds": 3600});
    let (status, rotated) = api
        .send(
            Method::POST,
            &rotate_path,
            &write,
            Some("rotate-once"),
            Some(overlap.clone()),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (status, again) = api
        .send(
            Method::POST,
            &rotate_path,
            &write,
            Some("rotate-once"),
            Some(overlap),
        )
        .await;
    assert_eq!((status, &again["secret"]), (200, &rotated["secret"]));
    let second_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(first_secret, second_secret);
    // A second webhook, made without a key: its secret is only in its row.
    let (status, plain_hook) = api
        .send(
            Method::POST,
            "/v1/webhooks",
            &write,
            None,
            Some(json!({"url": receiver.url})),
        )
        .await;
    assert_eq!(status, 201, "{plain_hook}");
    let third_secret = plain_hook["secret"].as_str().unwrap().to_string();

    // A tenant onboarded with a password under an Idempotency-Key, and the onboarding replayed.
    let onboard = json!({"backup_server_uid": VBR01, "name": format!("At Rest {}", &run[..6]),
        "password": password,
        "backup_resources": [{"name": "Cloud Repository", "repository_uid": REPO01, "quota_mb": 4096}]});
    let (status, task) = api
        .send(
            Method::POST,
            "/v1/cloud-tenants",
            &write,
            Some("onboard-once"),
            Some(onboard.clone()),
        )
        .await;
    assert_eq!(status, 202, "{task}");
    let (status, again) = api
        .send(
            Method::POST,
            "/v1/cloud-tenants",
            &write,
            Some("onboard-once"),
            Some(onboard),
        )
        .await;
    assert_eq!((status, &again["id"]), (202, &task["id"]));
    let task = app.settled(task["id"].as_str().unwrap()).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    // Both secrets sign during the overlap: the deliveries carry the opened secrets.
    let delivered = receiver.wait_for(2).await;
    for d in &delivered {
        assert!(verify_signature(&second_secret, d) || verify_signature(&third_secret, d));
    }
    assert!(delivered.iter().any(|d| verify_signature(&first_secret, d)));

    // The key is revoked: the replay of its creation no longer hands it out.
    let (status, _) = api
        .send(
            Method::DELETE,
            &format!("/v1/api-keys/{}", made["id"].as_str().unwrap()),
            &admin,
            None,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let resp = http()
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "key-once")
        .json(&create_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(&replayed_key), "{text}");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        problem["detail"],
        "the API key this request created has been revoked or has expired; its secret is not shown again"
    );

    let keyed: Vec<String> = api
        .sent
        .iter()
        .map(|s| {
            app.keys
                .fingerprints(&request_bytes(s.method.as_str(), &s.path, "", &s.body))[0]
                .clone()
        })
        .collect();
    let plain: Vec<String> = api.sent.iter().flat_map(Sent::plain_hashes).collect();
    let tokens = [
        replayed_key.clone(),
        plain_key.clone(),
        app.admin_key.clone(),
        app.write_key.clone(),
        app.read_key.clone(),
    ];
    app.stop().await;
    let rows = every_value(&database).await;

    // The search looks where the secrets would be: sealed values and keyed fingerprints.
    let column = |name: &str| -> Vec<&String> {
        rows.iter()
            .filter(|(place, _)| place == name)
            .map(|(_, v)| v)
            .collect()
    };
    let secrets = column("webhooks.secret");
    assert_eq!(secrets.len(), 2);
    assert!(
        secrets.iter().all(|s| s.starts_with("sealed:v1:")),
        "{secrets:?}"
    );
    let previous = column("webhooks.previous_secret");
    assert_eq!(previous.len(), 1);
    assert!(previous[0].starts_with("sealed:v1:"));
    let bodies = column("idempotency_keys.body");
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    assert!(
        bodies.iter().all(|b| b.starts_with("sealed:v1:")),
        "{bodies:?}"
    );
    let fingerprints = column("idempotency_keys.fingerprint");
    for k in &keyed {
        assert!(
            fingerprints.contains(&k),
            "the keyed fingerprint {k} is stored"
        );
    }

    let mut secrets: Vec<(String, Vec<String>)> = tokens
        .iter()
        .map(|t| (format!("API key {}…", &t[..10]), spellings(t)))
        .collect();
    for (n, s) in [&first_secret, &second_secret, &third_secret]
        .iter()
        .enumerate()
    {
        secrets.push((format!("webhook secret {n}"), secret_spellings(s)));
    }
    secrets.push(("the tenant password".into(), spellings(&password)));
    for (n, hash) in plain.iter().enumerate() {
        secrets.push((format!("plain fingerprint {n}"), vec![hash.clone()]));
    }
    let leaks = found(&secrets, &rows);
    assert!(leaks.is_empty(), "{leaks:#?}");
    sim.stop().await;
}

/// Runs SQL on the test's database (as an older version of the gateway would have written).
async fn execute(database_url: &str, sql: &str, binds: &[&str]) {
    if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&mut conn).await.unwrap();
    }
}

async fn rows_from_before_sealing_are_sealed_at_start_and_keep_working(db: Db) {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(200));
    let database = fresh_database(db).await;
    let settings = test_settings(&sim, &database);
    let app = spawn_app(&settings).await;
    let receiver = Receiver::start(Answer::Ok);
    let subscribe = json!({"url": receiver.url});
    let resp = http()
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&app.write_key)
        .header("Idempotency-Key", "legacy-hook")
        .json(&subscribe)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let answer = resp.text().await.unwrap();
    let hook: Value = serde_json::from_str(&answer).unwrap();
    let secret = hook["secret"].as_str().unwrap().to_string();
    let write_key = app.write_key.clone();
    app.stop().await;

    // What a gateway from before sealing left: the secret and the kept answer in clear.
    let id = hook["id"].as_str().unwrap();
    execute(
        &database,
        "UPDATE webhooks SET secret = $1 WHERE id = $2",
        &[&secret, id],
    )
    .await;
    execute(
        &database,
        "UPDATE idempotency_keys SET body = $1 WHERE key = 'legacy-hook'",
        &[&answer],
    )
    .await;
    let rows = every_value(&database).await;
    assert!(
        rows.iter().any(|(_, v)| v.contains(&secret)),
        "set up in clear"
    );

    // A new server key, the old one among the previous: the start seals everything again.
    let (_, new_key) = em_gateway::secrets::ServerKey::generate().unwrap();
    let new_key = secrecy::ExposeSecret::expose_secret(&new_key).to_string();
    let rotated = test_settings_with(
        &sim,
        &database,
        &[
            ("EMGW_SECRET_KEY", &new_key),
            ("EMGW_SECRET_KEYS_PREVIOUS", TEST_SECRET_KEY),
        ],
    );
    let app = spawn_app(&rotated).await;
    let rows = every_value(&database).await;
    let leaks: Vec<&(String, String)> = rows
        .iter()
        .filter(|(_, v)| spellings(&secret).iter().any(|s| v.contains(s.as_str())))
        .collect();
    assert!(leaks.is_empty(), "{leaks:#?}");
    let current = format!("sealed:v1:{}:", app.keys.current_id());
    for (place, value) in &rows {
        if place == "webhooks.secret" || place == "idempotency_keys.body" {
            assert!(value.starts_with(&current), "{place} sealed again: {value}");
        }
    }

    // The replay still answers as the first time (its fingerprint taken under the old key).
    let resp = http()
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&write_key)
        .header("Idempotency-Key", "legacy-hook")
        .json(&subscribe)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    assert_eq!(resp.text().await.unwrap(), answer);

    // And the webhook still signs with the secret it was given.
    let resp = http()
        .post(app.url("/v1/cloud-gateways"))
        .bearer_auth(&write_key)
        .json(&json!({"backup_server_uid": VBR01, "server_host_name": "legacy.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let delivered = receiver.wait_for(1).await;
    assert!(verify_signature(&secret, &delivered[0]));
    app.stop().await;

    // Without the key that sealed them, the gateway does not start, and says which key it lacks.
    let (_, stranger) = em_gateway::secrets::ServerKey::generate().unwrap();
    let stranger = secrecy::ExposeSecret::expose_secret(&stranger).to_string();
    let lost = test_settings_with(&sim, &database, &[("EMGW_SECRET_KEY", &stranger)]);
    let refused = em_gateway::startup::Application::build(
        &lost,
        em_gateway::startup::Options {
            handle_signals: false,
            workers: em_gateway::startup::Workers::Manual,
            clock: em_gateway::clock::Clock::system(),
        },
    )
    .await;
    let Err(err) = refused else {
        panic!("started without the key that sealed the database's secrets");
    };
    let err = err.to_string();
    let sealed_with = em_gateway::secrets::ServerKey::parse(&new_key).unwrap();
    assert!(
        err.contains(sealed_with.id()) && err.contains("EMGW_SECRET_KEYS_PREVIOUS"),
        "{err}"
    );
    sim.stop().await;
}

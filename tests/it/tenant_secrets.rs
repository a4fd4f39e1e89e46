//! The tenant's password is a secret end to end: the real binary, at debug level, onboards a
//! tenant, replays the onboarding, changes the password, loses a create with EM, and answers a
//! request it refuses; then not one of the passwords it carried is found in any row of any
//! table, any log line, any webhook, any answer or `/metrics` — while EM holds each of them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::support::*;
use crate::tenants::REPO01;

both_databases!(the_tenant_password_reaches_em_and_nothing_else);

/// A key of the `default` owner, made in the database the gateway will use.
pub async fn issue_key(database_url: &str) -> String {
    let store = em_gateway::store::Store::connect(database_url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let issued = em_gateway::access::issue(
        &store,
        "tenant tests",
        em_gateway::domain::Scope::Admin,
        em_gateway::domain::Owner::default(),
        None,
        em_gateway::clock::Clock::system().now(),
    )
    .await
    .unwrap();
    secrecy::ExposeSecret::expose_secret(&issued.token).to_string()
}

/// A client of a gateway process that keeps every answer it got, head and body.
pub struct Client {
    pub base: String,
    pub key: String,
    pub answers: Vec<String>,
    /// The plain SHA-256 of each request sent with an Idempotency-Key (as fingerprinted, and of
    /// its body alone): what an unkeyed fingerprint would store, guessable from a password.
    pub plain_fingerprints: Vec<String>,
}

impl Client {
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http()
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
            let bytes = body
                .as_ref()
                .map(|b| serde_json::to_vec(b).unwrap())
                .unwrap_or_default();
            let whole = em_gateway::tasks::replay::request_bytes(method.as_str(), path, "", &bytes);
            self.plain_fingerprints.extend([
                em_gateway::em::tls::sha256_hex(&whole),
                em_gateway::em::tls::sha256_hex(&bytes),
            ]);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let head = format!("{status} {:?}", resp.headers());
        let text = resp.text().await.unwrap();
        self.answers.push(format!("{head}\n{text}"));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Follows a task until it settles.
    pub async fn settled(&mut self, task_id: &str) -> Value {
        let path = format!("/v1/tasks/{task_id}");
        eventually(
            &format!("task {task_id} to settle"),
            Duration::from_secs(30),
            || async {
                let resp = http()
                    .get(format!("{}{path}", self.base))
                    .bearer_auth(&self.key)
                    .send()
                    .await
                    .ok()?;
                let task: Value = resp.json().await.ok()?;
                (task["state"] != "running").then_some(())
            },
        )
        .await;
        // Read once more, as an answer kept.
        self.send(Method::GET, &path, None, None).await.1
    }
}

/// Every value of every column of every row of every table, as text: the tables come from the
/// catalog, so tables added later are read too.
pub async fn every_value(database_url: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
                .bind(&table)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            // As bytes: a blob need not be UTF-8; numbers come as their text.
            let select: Vec<String> = columns
                .iter()
                .map(|c| format!("CAST(\"{c}\" AS BLOB)"))
                .collect();
            let sql = format!("SELECT {} FROM \"{table}\"", select.join(", "));
            for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .unwrap()
            {
                for (i, column) in columns.iter().enumerate() {
                    if let Some(v) = row.get::<Option<Vec<u8>>, _>(i) {
                        let v = String::from_utf8_lossy(&v).into_owned();
                        found.push((format!("{table}.{column}"), v));
                    }
                }
            }
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for table in tables {
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_name = $1 ORDER BY ordinal_position",
            )
            .bind(&table)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            // bytea as text would be hex: read its bytes as they are instead.
            let select: Vec<String> = columns
                .iter()
                .map(|(c, t)| match t.as_str() {
                    "bytea" => format!("encode(\"{c}\", 'escape')"),
                    _ => format!("\"{c}\"::text"),
                })
                .collect();
            let sql = format!("SELECT {} FROM \"{table}\"", select.join(", "));
            for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .unwrap()
            {
                for (i, (column, _)) in columns.iter().enumerate() {
                    if let Some(v) = row.get::<Option<String>, _>(i) {
                        found.push((format!("{table}.{column}"), v));
                    }
                }
            }
        }
    }
    found
}

/// The ways a secret could be written down without being hidden: as is, in hex, and in
/// base64 at each of the three alignments it may fall on (only the characters that depend on
/// the secret alone).
pub fn spellings(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut all = vec![
        secret.to_string(),
        secret.bytes().map(|b| format!("{b:02x}")).collect(),
    ];
    for pad in 0..3 {
        let mut bytes = vec![b'~'; pad];
        bytes.extend_from_slice(secret.as_bytes());
        let encoded = b64.encode(&bytes);
        // The first characters carry the padding, the last ones what follows the secret.
        let start = (pad * 4).div_ceil(3);
        let end = bytes.len() * 4 / 3;
        all.push(encoded[start..end].to_string());
    }
    all
}

/// Where any spelling of `secret` occurs in `haystack`.
fn leaks<'a>(secret: &str, haystack: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let spellings = spellings(secret);
    haystack
        .into_iter()
        .filter(|(_, text)| spellings.iter().any(|s| text.contains(s.as_str())))
        .map(|(place, text)| format!("{place}: {}", text.chars().take(300).collect::<String>()))
        .collect()
}

async fn the_tenant_password_reaches_em_and_nothing_else(db: Db) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let onboard_password = format!("Onboard-Marker-{}", &run[..12]);
    let new_password = format!("Rotated-Marker-{}", &run[12..24]);
    let lost_password = format!("Lost-Marker-{}", &run[20..32]);
    let refused_password = format!("Refused-Marker-{}\u{7}", &run[..8]);
    let passwords = [
        onboard_password.as_str(),
        new_password.as_str(),
        lost_password.as_str(),
        refused_password.trim_end_matches('\u{7}'),
    ];

    // Long enough for EM to be restarted while the lost create is under way.
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(800));
    let database = fresh_database(db).await;
    let key = issue_key(&database).await;
    let gateway = gateway_process(&process_vars(&sim, &database, &[("RUST_LOG", "debug")])).await;
    let mut api = Client {
        base: gateway.base.clone(),
        key,
        answers: Vec::new(),
        plain_fingerprints: Vec::new(),
    };
    let receiver = Receiver::start(Answer::Ok);
    let (status, hook) = api
        .send(
            Method::POST,
            "/v1/webhooks",
            None,
            Some(json!({"url": receiver.url})),
        )
        .await;
    assert_eq!(status, 201, "{hook}");

    // Onboard under an Idempotency-Key, and send it again.
    let onboard = json!({"backup_server_uid": VBR01, "name": "Secret Keepers",
        "password": onboard_password, "description": "kept",
        "backup_resources": [{"name": "Cloud Repository", "repository_uid": REPO01, "quota_mb": 4096}]});
    let (status, created) = api
        .send(
            Method::POST,
            "/v1/cloud-tenants",
            Some("onboard-secret-keepers"),
            Some(onboard.clone()),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let (status, again) = api
        .send(
            Method::POST,
            "/v1/cloud-tenants",
            Some("onboard-secret-keepers"),
            Some(onboard),
        )
        .await;
    assert_eq!((status, &again["id"]), (202, &created["id"]), "replayed");
    let created = api.settled(created["id"].as_str().unwrap()).await;
    assert_eq!(created["state"], "succeeded", "{created}");
    let tenant = created["resource"]["id"].as_str().unwrap().to_string();

    // A new password, under an Idempotency-Key, sent twice.
    let change = json!({"password": new_password, "description": "rotated"});
    let path = format!("/v1/cloud-tenants/{tenant}");
    let (status, changed) = api
        .send(
            Method::PATCH,
            &path,
            Some("rotate-secret-keepers"),
            Some(change.clone()),
        )
        .await;
    assert_eq!(status, 202, "{changed}");
    let (status, again) = api
        .send(
            Method::PATCH,
            &path,
            Some("rotate-secret-keepers"),
            Some(change),
        )
        .await;
    assert_eq!((status, &again["id"]), (202, &changed["id"]), "replayed");
    let changed = api.settled(changed["id"].as_str().unwrap()).await;
    assert_eq!(changed["state"], "succeeded", "{changed}");

    // A password EM would not take is refused, without saying it back.
    let (status, problem) = api
        .send(
            Method::PATCH,
            &path,
            None,
            Some(json!({"password": refused_password})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");

    // A create EM loses: restarted while the create is under way, EM forgets the task (not the
    // tenant). The gateway settles it from EM's objects — by name on the backup server, for it
    // kept no password to judge by.
    let (status, lost) = api
        .send(
            Method::POST,
            "/v1/cloud-tenants",
            Some("onboard-lost-and-found"),
            Some(json!({"backup_server_uid": VBR01, "name": "Lost and Found",
                "password": lost_password})),
        )
        .await;
    assert_eq!(status, 202, "{lost}");
    sim_control(&sim, Method::POST, "/_sim/restart", None).await;
    assert!(
        sim_state(&sim).await["operations_pending"].as_u64() >= Some(1),
        "EM restarted with the create under way"
    );
    let lost = api.settled(lost["id"].as_str().unwrap()).await;
    assert_eq!(lost["state"], "succeeded", "{lost}");
    assert!(
        lost["message"]
            .as_str()
            .unwrap()
            .starts_with("Enterprise Manager lost track of this task; settled by looking at EM's objects: cloud tenant Lost and Found exists"),
        "{lost}"
    );
    let lost_tenant = lost["resource"]["id"].as_str().unwrap().to_string();

    // EM holds each password the gateway carried, and only the latest.
    let holds = |tenant: String, password: String| {
        let base = sim.api_url.trim_end_matches("/api").to_string();
        async move {
            let answer: Value = http()
                .post(format!("{base}/_sim/tenants/{tenant}/password-check"))
                .json(&json!({ "password": password }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["matches"] == true
        }
    };
    assert!(holds(tenant.clone(), new_password.clone()).await);
    assert!(!holds(tenant.clone(), onboard_password.clone()).await);
    assert!(holds(lost_tenant.clone(), lost_password.clone()).await);

    // Every webhook delivered, and recorded so.
    let deliveries_path = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    receiver.wait_for(3).await;
    eventually(
        "three deliveries recorded as delivered",
        Duration::from_secs(15),
        || async {
            let page: Value = http()
                .get(format!("{}{deliveries_path}", api.base))
                .bearer_auth(&api.key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let items = page["items"].as_array()?;
            (items.len() == 3 && items.iter().all(|d| d["state"] == "delivered")).then_some(())
        },
    )
    .await;
    // Everything a client can read about it, kept as answers.
    api.send(Method::GET, &deliveries_path, None, None).await;
    api.send(Method::GET, "/v1/tasks", None, None).await;
    api.send(Method::GET, &path, None, None).await;
    api.send(
        Method::GET,
        &format!("/v1/cloud-tenants/{lost_tenant}"),
        None,
        None,
    )
    .await;
    api.send(Method::GET, "/v1/cloud-tenants", None, None).await;
    let metrics = http()
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let (status, log) = gateway.stop().await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let rows = every_value(&database).await;
    let webhooks: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| format!("{:?}\n{}", r.headers, r.body))
        .collect();

    // What is looked through holds what it should: the search would find a password there.
    assert!(
        rows.iter()
            .any(|(place, v)| place.starts_with("tasks.") && v.contains("Secret Keepers")),
        "the tasks' recorded requests were read"
    );
    assert!(
        rows.iter()
            .any(|(place, _)| place.starts_with("idempotency")),
        "the kept answers were read: {:?}",
        rows.iter()
            .map(|(p, _)| p)
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(
        log.iter()
            .filter(|l| l.contains(r#""level":"DEBUG""#))
            .count()
            > 20,
        "the run was logged at debug level"
    );
    assert!(
        log.iter().any(|l| l.contains(&tenant)),
        "the log names the tenant"
    );
    assert_eq!(webhooks.len(), 3);
    assert!(metrics.contains("emgw_http_requests_total"));

    // The passwords, and the plain hashes of the requests that carried them under a key.
    assert_eq!(api.plain_fingerprints.len(), 10);
    let fingerprints = api.plain_fingerprints.clone();
    let markers = passwords.iter().map(|p| p.to_string()).chain(fingerprints);
    for marker in markers {
        let marker = marker.as_str();
        let mut found = leaks(
            marker,
            rows.iter().map(|(place, v)| (place.as_str(), v.as_str())),
        );
        found.extend(leaks(marker, log.iter().map(|l| ("log", l.as_str()))));
        found.extend(leaks(
            marker,
            webhooks.iter().map(|w| ("webhook", w.as_str())),
        ));
        found.extend(leaks(
            marker,
            api.answers.iter().map(|a| ("answer", a.as_str())),
        ));
        found.extend(leaks(marker, [("/metrics", metrics.as_str())]));
        assert!(found.is_empty(), "{marker} found: {found:#?}");
    }
    sim.stop().await;
}

#[test]
fn a_secret_is_recognised_however_it_is_written() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = "Onboard-Marker-0123";
    for prefix in ["", "a", "ab", "abc"] {
        let encoded = b64.encode(format!("{prefix}{secret}\"}}"));
        let hex: String = format!("x{secret}y")
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        for text in [format!("p={secret}"), encoded, hex] {
            assert!(
                !leaks(secret, [("t", text.as_str())]).is_empty(),
                "{prefix:?}: {text}"
            );
        }
    }
    assert!(leaks(secret, [("t", "Onboard-Marker-012")]).is_empty());
}

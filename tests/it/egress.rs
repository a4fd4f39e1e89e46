//! Webhook egress under attack (security audit, issue 13): proxies from the environment, an
//! explicit egress proxy, and consumers whose answers the database would refuse.

use std::time::Duration;

use em_gateway::domain::ReplicaId;
use em_gateway::store::{AttemptRecord, AttemptResult, RecordedAttempt};
use serde_json::{Value, json};

use crate::support::*;

both_databases!(a_poisoned_answer_is_cleaned_and_retried_on_schedule);

/// The receiver's `scheme://host:port`, to name it as a proxy.
fn origin(receiver: &Receiver) -> String {
    receiver.url.trim_end_matches("/hook").to_string()
}

fn port(receiver: &Receiver) -> u16 {
    reqwest::Url::parse(&receiver.url).unwrap().port().unwrap()
}

async fn subscribe_at(base: &str, key: &str, url: &str) -> Value {
    let resp = http()
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "subscribing {url}");
    resp.json().await.unwrap()
}

async fn create_at(base: &str, key: &str, host: &str) -> String {
    let resp = http()
        .post(format!("{base}/v1/cloud-gateways"))
        .bearer_auth(key)
        .json(&json!({"backup_server_uid": VBR01, "server_host_name": host}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let task: Value = resp.json().await.unwrap();
    task["id"].as_str().unwrap().to_string()
}

async fn deliveries_at(base: &str, key: &str, hook: &Value) -> Vec<Value> {
    let resp = http()
        .get(format!(
            "{base}/v1/webhooks/{}/deliveries",
            hook["id"].as_str().unwrap()
        ))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

async fn issue_key(database_url: &str) -> String {
    let store = em_gateway::store::Store::connect(database_url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let issued = em_gateway::access::issue(
        &store,
        "egress",
        em_gateway::domain::Scope::Admin,
        em_gateway::domain::Owner::default(),
        None,
        em_gateway::clock::Clock::system().now(),
    )
    .await
    .unwrap();
    secrecy::ExposeSecret::expose_secret(&issued.token).to_string()
}

/// A proxy in the environment would resolve and reach an inside name itself, round the
/// resolver's check: the audit had a signed delivery land on `localhost/internal-admin` and
/// logged as delivered. A separate process, since reqwest reads these variables when a client is
/// built and tests in one process share the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_in_the_environment_are_ignored() {
    let sim = spawn_sim(|_| {});
    let db = fresh_database(Db::Sqlite).await;
    let key = issue_key(&db).await;
    let proxy = Receiver::start(Answer::Ok);
    let inside = Receiver::start(Answer::Ok);
    let via = origin(&proxy);
    let vars = process_vars(
        &sim,
        &db,
        &[
            ("EMGW_WEBHOOK_ALLOW_PRIVATE", "false"),
            ("EMGW_WEBHOOK_RETRY_SCHEDULE", "100ms"),
            ("HTTP_PROXY", via.as_str()),
            ("HTTPS_PROXY", via.as_str()),
            ("ALL_PROXY", via.as_str()),
            ("http_proxy", via.as_str()),
            // EM (em-sim, on 127.0.0.1) is reached directly; the webhook's `localhost` is not
            // excepted, so a client that honours the variables sends it to the proxy.
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    let gateway = gateway_process(&vars).await;
    let target = format!("http://localhost:{}/internal-admin", port(&inside));
    let hook = subscribe_at(&gateway.base, &key, &target).await;
    create_at(&gateway.base, &key, "env-proxy.example").await;
    let entries = eventually(
        "the delivery to settle",
        Duration::from_secs(20),
        || async {
            let e = deliveries_at(&gateway.base, &key, &hook).await;
            e.first()
                .is_some_and(|d| d["state"] != "pending")
                .then_some(e)
        },
    )
    .await;
    assert_eq!(proxy.count(), 0, "nothing went through the proxy");
    assert_eq!(inside.count(), 0, "nothing reached the inside address");
    assert_eq!(entries[0]["state"], "failed");
    let attempts = entries[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    for a in attempts {
        assert!(a["status_code"].is_null(), "{a}");
        let error = a["error"].as_str().unwrap();
        assert!(error.contains("no public address"), "{error}");
    }
    gateway.kill().await;
    sim.stop().await;
}

/// With `EMGW_WEBHOOK_PROXY`, every delivery goes through that proxy, which judges the target
/// (here it accepts anything): the proxy's own name (`localhost`) is not held to the guard, but
/// a literal inside address is still refused before the send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_proxy_carries_every_delivery_but_literal_inside_addresses() {
    let sim = spawn_sim(|_| {});
    let db = fresh_database(Db::Sqlite).await;
    let proxy = Receiver::start(Answer::Ok);
    let inside = Receiver::start(Answer::Ok);

    // A literal inside address subscribed while private targets were allowed.
    let allowed = spawn_stepped_app(&test_settings(&sim, &db)).await;
    let literal = format!("http://127.0.0.1:{}/literal", port(&inside));
    let literal_hook = subscribe_at(&allowed.base, &allowed.write_key, &literal).await;
    allowed.stop().await;

    let via = origin(&proxy).replace("127.0.0.1", "localhost");
    let settings = test_settings_with(
        &sim,
        &db,
        &[
            ("EMGW_WEBHOOK_ALLOW_PRIVATE", "false"),
            ("EMGW_WEBHOOK_PROXY", via.as_str()),
        ],
    );
    assert!(settings.webhook_proxy.is_some());
    let app = spawn_stepped_app(&settings).await;
    let named = format!("http://localhost:{}/internal-admin", port(&inside));
    let named_hook = subscribe_at(&app.base, &app.write_key, &named).await;
    let task = create_at(&app.base, &app.write_key, "egress-proxy.example").await;
    app.settle_by_ticking(&task).await;
    assert_eq!(app.deliver_due().await, 2);

    let got = proxy.received();
    assert_eq!(got.len(), 1, "the named target went through the proxy");
    assert_eq!(
        got[0].headers["host"],
        format!("localhost:{}", port(&inside))
    );
    assert!(got[0].headers.contains_key("webhook-signature"));
    let named_log = deliveries_at(&app.base, &app.read_key, &named_hook).await;
    assert_eq!(named_log[0]["state"], "delivered");
    let literal_log = deliveries_at(&app.base, &app.read_key, &literal_hook).await;
    let error = literal_log[0]["attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("not public"), "{error}");
    assert_eq!(
        inside.count(),
        0,
        "nothing reached the inside address directly"
    );
    app.stop().await;
    sim.stop().await;
}

/// A consumer answering `500` with `boom\0boom`: Postgres refuses NUL in text, which rolled the
/// whole batch of attempts back, had the delivery resent every 30 s outside its schedule with
/// nothing logged, and took the other consumers' attempts in the batch down with it.
async fn a_poisoned_answer_is_cleaned_and_retried_on_schedule(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let poisoned = Receiver::start(Answer::Status(500, "boom\0boom".into()));
    let healthy = Receiver::start(Answer::Ok);
    let bad_hook = subscribe_at(&app.base, &app.write_key, &poisoned.url).await;
    let good_hook = subscribe_at(&app.base, &app.write_key, &healthy.url).await;
    let task = create_at(&app.base, &app.write_key, "poison.example").await;
    app.settle_by_ticking(&task).await;
    assert_eq!(app.deliver_due().await, 2, "both in one batch");

    let good = deliveries_at(&app.base, &app.read_key, &good_hook).await;
    assert_eq!(good[0]["state"], "delivered");
    assert_eq!(good[0]["attempts"].as_array().unwrap().len(), 1);

    // The schedule is 200 ms, 400 ms, 600 ms, each ±20%: one attempt per step, no more.
    let ms = Duration::from_millis;
    for (advance, sent, why) in [
        (ms(0), 0, "the retry is not due at once"),
        (ms(240), 1, "the second attempt by 200 ms + 20%"),
        (ms(480), 1, "the third by 400 ms + 20%"),
        (ms(720), 1, "the last by 600 ms + 20%"),
        (
            ms(60_000),
            0,
            "failed for good: nothing more, not even after the lease",
        ),
    ] {
        app.advance(advance);
        assert_eq!(app.deliver_due().await, sent, "{why}");
    }
    assert_eq!(poisoned.count(), 4);
    let bad = deliveries_at(&app.base, &app.read_key, &bad_hook).await;
    assert_eq!(bad[0]["state"], "failed");
    let attempts = bad[0]["attempts"].as_array().unwrap();
    let logged: Vec<(u64, u64, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status_code"].as_u64().unwrap(),
                a["error"].as_str().unwrap(),
            )
        })
        .collect();
    let want = "HTTP 500: boom boom";
    assert_eq!(
        logged,
        [
            (1, 500, want),
            (2, 500, want),
            (3, 500, want),
            (4, 500, want)
        ],
        "every attempt logged, the NUL gone"
    );
    assert_eq!(healthy.count(), 1);
    app.stop().await;
    sim.stop().await;
}

/// The store's own line of defence: an attempt the database refuses, written with others, is
/// written alone and takes no other down; only its delivery's lease is left to lapse. (Postgres
/// refuses NUL in text; SQLite takes it, so the case exists on Postgres only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_database_refuses_takes_no_other_down() {
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(Db::Postgres).await)).await;
    let (a, b, c) = (
        Receiver::start(Answer::Ok),
        Receiver::start(Answer::Ok),
        Receiver::start(Answer::Ok),
    );
    let mut hooks = Vec::new();
    for r in [&a, &b, &c] {
        hooks.push(subscribe_at(&app.base, &app.write_key, &r.url).await);
    }
    let task = create_at(&app.base, &app.write_key, "refused.example").await;
    app.settle_by_ticking(&task).await;

    // The settle leased them to the app's replica and handed them to its deliverer, which
    // this test never runs: another replica claims them once that lease is over.
    let replica = ReplicaId::new();
    let now = app.workers.clock.now() + Duration::from_secs(60);
    let lease = Duration::from_secs(30);
    let jobs = app
        .store
        .claim_deliveries(replica, now, lease, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    let hook_of = |i: usize| hooks[i]["id"].as_str().unwrap().to_string();
    let job_of = |i: usize| {
        jobs.iter()
            .find(|j| j.webhook_id.to_string() == hook_of(i))
            .unwrap()
    };
    let attempt = |i: usize, error: Option<&str>| RecordedAttempt {
        delivery_id: job_of(i).delivery_id,
        webhook_id: job_of(i).webhook_id,
        attempt: AttemptRecord {
            attempt: 1,
            status_code: Some(if error.is_some() { 500 } else { 200 }),
            error: error.map(str::to_string),
            duration_ms: 1,
            started_at: now.to_datetime(),
            finished_at: now.to_datetime(),
        },
        result: match error {
            Some(_) => AttemptResult::RetryAt(now + Duration::from_secs(5)),
            None => AttemptResult::Delivered,
        },
    };
    let batch = [
        attempt(0, None),
        attempt(1, Some("HTTP 500: boom\0boom")),
        attempt(2, None),
    ];
    let recorded = app
        .store
        .record_attempts(replica, &batch, now)
        .await
        .expect("a refused record is no error of the batch");
    assert_eq!(recorded.recorded, 2, "the others are recorded");
    let refused: Vec<_> = recorded.refused.iter().map(|(id, _)| *id).collect();
    assert_eq!(refused, [job_of(1).delivery_id], "only the poisoned one");

    for (i, state, attempts) in [(0, "delivered", 1), (1, "pending", 0), (2, "delivered", 1)] {
        let log = deliveries_at(&app.base, &app.read_key, &hooks[i]).await;
        assert_eq!(log[0]["state"], state, "delivery {i}");
        assert_eq!(log[0]["attempts"].as_array().unwrap().len(), attempts);
    }
    // Its lease stands until it lapses; then it is due again, and only it.
    let other = ReplicaId::new();
    let before = now + lease;
    assert!(
        app.store
            .claim_deliveries(other, before, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let after = before + Duration::from_millis(1);
    let again = app
        .store
        .claim_deliveries(other, after, lease, 10)
        .await
        .unwrap();
    let again: Vec<_> = again.iter().map(|j| j.delivery_id).collect();
    assert_eq!(again, [job_of(1).delivery_id]);
    app.stop().await;
    sim.stop().await;
}

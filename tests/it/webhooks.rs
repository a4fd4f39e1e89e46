//! Webhooks end to end: a real receiver on loopback, signatures checked independently.

use std::time::Duration;

use em_gateway::clock::Clock;
use em_gateway::domain::ReplicaId;
use serde_json::{Value, json};

use crate::support::*;

both_databases!(
    a_settled_task_is_delivered_signed,
    failures_are_retried_in_order_with_one_webhook_id,
    a_410_disables_the_subscription,
    a_hanging_consumer_times_out_and_is_retried,
    a_restarted_gateway_still_delivers,
    a_hanging_consumer_holds_only_its_share_of_the_slots,
    what_waited_for_a_slot_is_handed_over_when_the_gateway_stops,
    slots_short_of_the_subscriptions_go_to_each_in_turn,
    what_a_deleted_subscription_had_waiting_is_not_sent,
    what_waited_is_signed_with_the_secret_rotated_meanwhile,
    a_settled_tasks_deliveries_are_handed_to_the_replica_that_settled_it,
    a_handed_delivery_of_a_deleted_subscription_is_dropped_and_no_attempt,
);

fn gateway(host: &str) -> Value {
    json!({"backup_server_uid": VBR01, "server_host_name": host, "metadata": {"order": "7"}})
}

async fn subscribe(app: &TestApp, url: &str, types: Value) -> Value {
    let resp = app
        .post(
            "/v1/webhooks",
            &app.write_key,
            json!({"url": url, "event_types": types, "description": "test"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn create(app: &TestApp, host: &str) -> String {
    let t: Value = app
        .post("/v1/cloud-gateways", &app.write_key, gateway(host))
        .await
        .json()
        .await
        .unwrap();
    t["id"].as_str().unwrap().to_string()
}

async fn start(db: Db, extra: &[(&str, &str)]) -> (em_gateway::sim::RunningSim, TestApp) {
    let sim = spawn_sim(|_| {});
    let url = fresh_database(db).await;
    let app = spawn_app(&test_settings_with(&sim, &url, extra)).await;
    (sim, app)
}

async fn log(app: &TestApp, hook: &Value) -> Vec<Value> {
    let page = app
        .get_json(&format!(
            "/v1/webhooks/{}/deliveries",
            hook["id"].as_str().unwrap()
        ))
        .await;
    page["items"].as_array().unwrap().clone()
}

async fn a_settled_task_is_delivered_signed(db: Db) {
    let (sim, app) = start(db, &[]).await;
    let receiver = Receiver::start(Answer::Ok);
    let hook = subscribe(&app, &receiver.url, json!([])).await;
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    let listed = app.get_json("/v1/webhooks").await;
    assert!(
        listed["items"][0].get("secret").is_none(),
        "the secret is shown only once"
    );

    let task_id = create(&app, "hooked.example").await;
    let got = receiver.wait_for(1).await;
    let delivery = &got[0];
    assert_eq!(delivery.headers["content-type"], "application/json");
    assert!(delivery.headers["webhook-id"].starts_with("msg_"));
    assert!(
        verify_signature(secret, delivery),
        "signature checks out independently"
    );
    let body = delivery.json();
    assert_eq!(body["type"], "task.succeeded");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["id"], task_id.as_str());
    assert_eq!(body["data"]["state"], "succeeded");
    assert_eq!(body["data"]["resource"]["type"], "cloud_gateway");
    assert_eq!(body["data"]["metadata"]["order"], "7");
    // The task the API shows is the one the webhook carried.
    let task = app.get_json(&format!("/v1/tasks/{task_id}")).await;
    assert_eq!(task, body["data"]);

    let entries = eventually(
        "the attempt to be logged",
        Duration::from_secs(5),
        || async {
            let entries = log(&app, &hook).await;
            (entries.first().is_some_and(|d| d["state"] == "delivered")).then_some(entries)
        },
    )
    .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["event_type"], "task.succeeded");
    assert_eq!(
        entries[0]["event_id"],
        delivery.headers["webhook-id"].as_str()
    );
    assert_eq!(entries[0]["attempts"][0]["attempt"], 1);
    assert_eq!(entries[0]["attempts"][0]["status_code"], 200);
    app.stop().await;
    sim.stop().await;
}

async fn failures_are_retried_in_order_with_one_webhook_id(db: Db) {
    // Stepped: the deliverer sends only when told, on a clock the test moves.
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let receiver = Receiver::start(Answer::FailFirst(2));
    let hook = subscribe(&app, &receiver.url, json!(["task.succeeded"])).await;
    let task = create(&app, "retry.example").await;
    app.settle_by_ticking(&task).await;
    let ms = Duration::from_millis;
    // The schedule is 200 ms then 400 ms, each ±20%: never before 160 ms, always by 240 ms.
    let steps = [
        (ms(0), 1, "the first attempt goes at once"),
        (ms(0), 0, "a retry is not due at once"),
        (ms(159), 0, "nor before 200 ms - 20%"),
        (ms(82), 1, "but by 200 ms + 20%"),
        (ms(319), 0, "the next not before 400 ms - 20%"),
        (ms(162), 1, "but by 400 ms + 20%"),
        (ms(10_000), 0, "delivered: nothing more is sent"),
    ];
    for (advance, sent, why) in steps {
        app.advance(advance);
        assert_eq!(app.deliver_due().await, sent, "{why}");
    }
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one webhook-id for every retry: {ids:?}"
    );
    for r in &got {
        assert!(verify_signature(hook["secret"].as_str().unwrap(), r));
    }
    let entries = log(&app, &hook).await;
    assert_eq!(entries[0]["state"], "delivered");
    let attempts: Vec<(u64, u64)> = entries[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status_code"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, vec![(1, 500), (2, 500), (3, 200)]);
    assert_eq!(entries[0]["attempts"][0]["error"], "HTTP 500: not yet");

    // Manual retry: sent again, same event id, logged as the next attempt.
    let delivery_id = entries[0]["id"].as_str().unwrap();
    let resp = app
        .post(
            &format!(
                "/v1/webhooks/{}/deliveries/{delivery_id}/retry",
                hook["id"].as_str().unwrap()
            ),
            &app.write_key,
            json!({}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(app.deliver_due().await, 1, "a manual retry is due at once");
    let got = receiver.received();
    assert_eq!(got[3].headers["webhook-id"], got[0].headers["webhook-id"]);
    app.stop().await;
    sim.stop().await;
}

async fn a_410_disables_the_subscription(db: Db) {
    let (sim, app) = start(db, &[]).await;
    let gone = Receiver::start(Answer::Gone);
    let fine = Receiver::start(Answer::Ok);
    let hook = subscribe(&app, &gone.url, json!([])).await;
    create(&app, "gone1.example").await;
    gone.wait_for(1).await;
    let disabled = eventually(
        "the subscription to be disabled",
        Duration::from_secs(5),
        || async {
            let h = app
                .get_json(&format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()))
                .await;
            h["disabled_at"].is_string().then_some(h)
        },
    )
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    // A later event reaches the other subscriber but not the disabled one.
    subscribe(&app, &fine.url, json!([])).await;
    create(&app, "gone2.example").await;
    fine.wait_for(1).await;
    assert_eq!(gone.received().len(), 1);
    let entries = log(&app, &hook).await;
    assert_eq!(entries[0]["state"], "failed");
    app.stop().await;
    sim.stop().await;
}

async fn a_hanging_consumer_times_out_and_is_retried(db: Db) {
    let (sim, app) = start(db, &[]).await;
    let receiver = Receiver::start(Answer::Hang(Duration::from_secs(3)));
    let hook = subscribe(&app, &receiver.url, json!([])).await;
    create(&app, "hang.example").await;
    receiver.wait_for(1).await;
    receiver.set(Answer::Ok);
    let entries = eventually(
        "a retry after the timeout",
        Duration::from_secs(10),
        || async {
            let e = log(&app, &hook).await;
            (e.first().is_some_and(|d| d["state"] == "delivered")).then_some(e)
        },
    )
    .await;
    let first = &entries[0]["attempts"][0];
    assert!(first["status_code"].is_null());
    assert!(
        first["error"].as_str().unwrap().contains("timed out"),
        "{first}"
    );
    assert!(first["duration_ms"].as_u64().unwrap() >= 450);
    app.stop().await;
    sim.stop().await;
}

async fn a_restarted_gateway_still_delivers(db: Db) {
    let sim = spawn_sim(|_| {});
    let url = fresh_database(db).await;
    let settings = test_settings_with(&sim, &url, &[("EMGW_WEBHOOK_RETRY_SCHEDULE", "1s")]);
    let receiver = Receiver::start(Answer::FailFirst(1));
    let first = spawn_app(&settings).await;
    subscribe(&first, &receiver.url, json!([])).await;
    create(&first, "restart-hook.example").await;
    receiver.wait_for(1).await;
    first.stop().await;
    let second = spawn_app(&settings).await;
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
    second.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_types_filter_what_a_subscription_gets() {
    let (sim, app) = start(Db::Sqlite, &[]).await;
    let failures = Receiver::start(Answer::Ok);
    let everything = Receiver::start(Answer::Ok);
    subscribe(&app, &failures.url, json!(["task.failed"])).await;
    subscribe(&app, &everything.url, json!([])).await;
    create(&app, "filter.example").await;
    everything.wait_for(1).await;
    create(&app, "filter.example").await; // the same host again: fails on EM
    let got = everything.wait_for(2).await;
    let failed = failures.wait_for(1).await;
    assert_eq!(failed[0].json()["type"], "task.failed");
    assert_eq!(
        failed[0].json()["data"]["message"],
        "Server filter.example is already a cloud gateway."
    );
    assert_eq!(got.len(), 2);
    assert_eq!(failures.received().len(), 1);
    let bad = app
        .post(
            "/v1/webhooks",
            &app.write_key,
            json!({"url": everything.url, "event_types": ["task.exploded"]}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let receiver = Receiver::start(Answer::RetryAfterOnce(1));
    subscribe(&app, &receiver.url, json!([])).await;
    let task = create(&app, "later.example").await;
    app.settle_by_ticking(&task).await;
    assert_eq!(app.deliver_due().await, 1, "503 with Retry-After: 1");
    // Exactly the second asked for, instead of the schedule's 200 ms ± 20%.
    app.advance(Duration::from_millis(999));
    assert_eq!(app.deliver_due().await, 0, "not before the second is over");
    app.advance(Duration::from_millis(1));
    assert_eq!(app.deliver_due().await, 1, "at the second");
    assert_eq!(receiver.received().len(), 2);
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    let (sim, app) = start(Db::Sqlite, &[("EMGW_WEBHOOK_ALLOW_PRIVATE", "false")]).await;
    let receiver = Receiver::start(Answer::Ok);
    let resp = app
        .post("/v1/webhooks", &app.write_key, json!({"url": receiver.url}))
        .await;
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "url");
    for url in [
        "ftp://example.com/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
    ] {
        let resp = app
            .post("/v1/webhooks", &app.write_key, json!({"url": url}))
            .await;
        assert_eq!(resp.status(), 422, "{url}");
    }
    // A name that resolves to loopback passes the URL check but not the connection.
    let sneaky = receiver.url.replace("127.0.0.1", "localhost");
    let hook = subscribe(&app, &sneaky, json!([])).await;
    create(&app, "private.example").await;
    let entries = eventually(
        "the refused attempt to be logged",
        Duration::from_secs(10),
        || async {
            let e = log(&app, &hook).await;
            (e.first()
                .is_some_and(|d| !d["attempts"].as_array().unwrap().is_empty()))
            .then_some(e)
        },
    )
    .await;
    let error = entries[0]["attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("no public address"), "{error}");
    assert!(
        receiver.received().is_empty(),
        "nothing reached the private address"
    );
    app.stop().await;
    sim.stop().await;
}

/// The limit applies to the URL as written: one that grows when normalised (an upper-case scheme,
/// a path added) is still taken at exactly the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_at_the_length_limit_is_taken() {
    let (sim, app) = start(Db::Sqlite, &[("EMGW_WEBHOOK_ALLOW_PRIVATE", "false")]).await;
    let at_limit = format!("HTTPS://A{}", "0".repeat(2048 - "HTTPS://A".len()));
    let resp = app
        .post("/v1/webhooks", &app.write_key, json!({"url": at_limit}))
        .await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let over = format!("{at_limit}0");
    let resp = app
        .post("/v1/webhooks", &app.write_key, json!({"url": over}))
        .await;
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "url");
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_overlaps_with_the_old_one() {
    let (sim, app) = start(Db::Sqlite, &[]).await;
    let receiver = Receiver::start(Answer::Ok);
    let hook = subscribe(&app, &receiver.url, json!([])).await;
    let id = hook["id"].as_str().unwrap();
    let old = hook["secret"].as_str().unwrap().to_string();
    let resp = app
        .post(
            &format!("/v1/webhooks/{id}/rotate-secret"),
            &app.write_key,
            json!({"overlap_seconds": 600}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rotated: Value = resp.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_expires_at"].is_string());
    create(&app, "rotate.example").await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2);
    assert!(verify_signature(&new, &got[0]) && verify_signature(&old, &got[0]));

    assert_eq!(
        http()
            .delete(app.url(&format!("/v1/webhooks/{id}")))
            .bearer_auth(&app.write_key)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        app.get(&format!("/v1/webhooks/{id}"), &app.read_key)
            .await
            .status(),
        404
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(200));
    let url = fresh_database(Db::Postgres).await;
    let settings = test_settings(&sim, &url);
    let a = spawn_app(&settings).await;
    let b = spawn_app(&settings).await;
    let receiver = Receiver::start(Answer::Ok);
    subscribe(&a, &receiver.url, json!([])).await;
    for i in 0..20 {
        let app = if i % 2 == 0 { &a } else { &b };
        create(app, &format!("once{i}.example")).await;
    }
    let got = receiver.wait_for(20).await;
    // Let any duplicate arrive before counting: every task is settled and logged by now.
    eventually(
        "all deliveries to be logged",
        Duration::from_secs(10),
        || async {
            let hooks = a.get_json("/v1/webhooks").await;
            let id = hooks["items"][0]["id"].as_str().unwrap().to_string();
            let page = a
                .get_json(&format!("/v1/webhooks/{id}/deliveries?limit=200"))
                .await;
            let items = page["items"].as_array().unwrap().clone();
            (items.len() == 20 && items.iter().all(|d| d["state"] == "delivered")).then_some(())
        },
    )
    .await;
    let mut ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(
        ids.len(),
        20,
        "no event sent twice ({} requests)",
        got.len()
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    a.stop().await;
    b.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_fails_after_its_last_attempt() {
    let (sim, app) = start(
        Db::Sqlite,
        &[("EMGW_WEBHOOK_RETRY_SCHEDULE", "100ms,100ms")],
    )
    .await;
    let receiver = Receiver::start(Answer::FailFirst(u32::MAX));
    let hook = subscribe(&app, &receiver.url, json!([])).await;
    create(&app, "never.example").await;
    let entries = eventually(
        "the delivery to fail for good",
        Duration::from_secs(10),
        || async {
            let e = log(&app, &hook).await;
            (e.first().is_some_and(|d| d["state"] == "failed")).then_some(e)
        },
    )
    .await;
    assert_eq!(
        entries[0]["attempts"].as_array().unwrap().len(),
        3,
        "1 + one per scheduled retry"
    );
    assert!(entries[0]["next_attempt_at"].is_null());
    assert_eq!(receiver.received().len(), 3);
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let (sim, app) = start(Db::Sqlite, &[("EMGW_WEBHOOK_RETRY_SCHEDULE", "100ms")]).await;
    let elsewhere = Receiver::start(Answer::Ok);
    let redirecting = Receiver::start(Answer::Redirect(elsewhere.url.clone()));
    let hook = subscribe(&app, &redirecting.url, json!([])).await;
    create(&app, "redirect.example").await;
    let entries = eventually(
        "both attempts to be logged",
        Duration::from_secs(10),
        || async {
            let e = log(&app, &hook).await;
            (e.first().is_some_and(|d| d["state"] == "failed")).then_some(e)
        },
    )
    .await;
    assert_eq!(entries[0]["attempts"][0]["status_code"], 302);
    assert!(
        elsewhere.received().is_empty(),
        "the redirect target was never called"
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_concurrency_limits_attempts_in_flight() {
    // The background deliverer, as in the service, limited to one: the consumer never holds two
    // requests at once.
    let (sim, app) = start(Db::Sqlite, &[("EMGW_WEBHOOK_CONCURRENCY", "1")]).await;
    let receiver = Receiver::start(Answer::Hang(Duration::from_millis(300)));
    subscribe(&app, &receiver.url, json!([])).await;
    for i in 0..3 {
        create(&app, &format!("one-at-a-time-{i}.example")).await;
    }
    receiver.wait_for(3).await;
    assert_eq!(receiver.max_in_flight(), 1);
    app.stop().await;
    sim.stop().await;

    // Unlimited, the same three due at once go together (so the receiver does see overlap).
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let receiver = Receiver::start(Answer::Hang(Duration::from_millis(300)));
    subscribe(&app, &receiver.url, json!([])).await;
    for i in 0..3 {
        let task = create(&app, &format!("together-{i}.example")).await;
        app.settle_by_ticking(&task).await;
    }
    assert_eq!(app.deliver_due().await, 3);
    assert_eq!(receiver.max_in_flight(), 3);
    app.stop().await;
    sim.stop().await;
}

async fn a_hanging_consumer_holds_only_its_share_of_the_slots(db: Db) {
    // Eight slots, two a subscription; the hung consumer outlasts the test (no timeout frees a
    // slot), and has more deliveries due than there are slots.
    const TASKS: usize = 12;
    let (sim, app) = start(
        db,
        &[
            ("EMGW_WEBHOOK_CONCURRENCY", "8"),
            ("EMGW_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", "2"),
            ("EMGW_WEBHOOK_TIMEOUT_MS", "120000"),
        ],
    )
    .await;
    let hung = Receiver::start(Answer::Hold);
    let healthy = Receiver::start(Answer::Ok);
    let hung_hook = subscribe(&app, &hung.url, json!([])).await;
    let healthy_hook = subscribe(&app, &healthy.url, json!([])).await;
    for i in 0..TASKS {
        create(&app, &format!("fair-{i}.example")).await;
    }

    // Every event reaches the healthy consumer while the hung one holds two requests.
    healthy.wait_for(TASKS).await;
    let delivered = eventually(
        "the healthy deliveries to be recorded",
        Duration::from_secs(15),
        || async {
            let e = log(&app, &healthy_hook).await;
            (e.len() == TASKS && e.iter().all(|d| d["state"] == "delivered")).then_some(e)
        },
    )
    .await;
    assert_eq!(delivered.len(), TASKS);
    assert_eq!(hung.in_flight(), 2, "the hung consumer holds its share");
    assert_eq!(hung.max_in_flight(), 2, "and never more");
    assert_eq!(hung.count(), 2);
    // Its deliveries wait as they were: pending, due since they were queued, no attempt
    // recorded (the two under way are recorded when they end).
    let waiting = log(&app, &hung_hook).await;
    assert_eq!(waiting.len(), TASKS);
    for d in &waiting {
        assert_eq!(d["state"], "pending", "{d}");
        assert_eq!(d["next_attempt_at"], d["created_at"], "{d}");
        assert_eq!(d["attempts"], json!([]), "{d}");
    }

    // Once it answers, each delivery is delivered at its first attempt: none lost, none
    // pushed back on its retry schedule.
    hung.release();
    hung.wait_for(TASKS).await;
    let entries = eventually(
        "the hung consumer's deliveries to be delivered",
        Duration::from_secs(15),
        || async {
            let e = log(&app, &hung_hook).await;
            e.iter().all(|d| d["state"] == "delivered").then_some(e)
        },
    )
    .await;
    for d in &entries {
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
    }
    assert_eq!(hung.max_in_flight(), 2);
    app.stop().await;
    sim.stop().await;
}

async fn what_waited_for_a_slot_is_handed_over_when_the_gateway_stops(db: Db) {
    // One slot a subscription, and a consumer that hangs until the timeout. The settles hand
    // their deliveries to this replica's deliverer: the first takes the slot, two wait here
    // behind it, the rest stay handed (leased to this replica). At stop, what waits and what
    // is handed goes back at once, besides the hand-over releasing every lease.
    const TASKS: usize = 6;
    let sim = spawn_sim(|_| {});
    let url = fresh_database(db).await;
    let settings = test_settings_with(
        &sim,
        &url,
        &[
            ("EMGW_WEBHOOK_CONCURRENCY", "8"),
            ("EMGW_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", "1"),
            ("EMGW_WEBHOOK_TIMEOUT_MS", "4000"),
        ],
    );
    let app = spawn_app(&settings).await;
    let hung = Receiver::start(Answer::Hold);
    subscribe(&app, &hung.url, json!([])).await;
    let started = std::time::Instant::now();
    for i in 0..TASKS {
        let task = create(&app, &format!("waits-{i}.example")).await;
        app.settled(&task).await;
    }
    // All settled while the first attempt hangs: handed over together.
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "the tasks settled too slowly for this test: {:?}",
        started.elapsed()
    );
    eventually(
        "the second attempt to be under way",
        Duration::from_secs(10),
        || async { (hung.count() == 2).then_some(()) },
    )
    .await;
    app.stop().await;
    assert_eq!(hung.count(), 2, "what waited was not sent once stopping");

    // Another replica takes every delivery at once: the two attempted were recorded (retries,
    // due later), and what waited here was released at the hand-over, not left leased.
    let store = em_gateway::store::Store::connect(&url)
        .await
        .unwrap()
        .sealing_with(test_keyring());
    let other = ReplicaId::new();
    let later = Clock::system().now() + Duration::from_secs(5);
    let taken = store
        .claim_deliveries(other, later, Duration::from_secs(30), 100)
        .await
        .unwrap();
    let tried: Vec<u32> = taken.iter().map(|j| j.attempts).collect();
    assert_eq!(
        taken.len(),
        TASKS,
        "every delivery is free for the next replica: {tried:?}"
    );
    assert_eq!(
        tried.iter().filter(|a| **a == 1).count(),
        2,
        "two attempts were made and recorded: {tried:?}"
    );
    sim.stop().await;
}

/// Fewer slots than subscriptions with work: two consumers hang and hold both slots, and the
/// third one's deliveries neither start nor wait behind a share it has not got in flight; they
/// stay queued until a slot frees, then go in turn, each once.
async fn slots_short_of_the_subscriptions_go_to_each_in_turn(db: Db) {
    const TASKS: usize = 3;
    let (sim, app) = start(
        db,
        &[
            ("EMGW_WEBHOOK_CONCURRENCY", "2"),
            ("EMGW_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", "1"),
            ("EMGW_WEBHOOK_TIMEOUT_MS", "120000"),
        ],
    )
    .await;
    let (a, b, c) = (
        Receiver::start(Answer::Hold),
        Receiver::start(Answer::Hold),
        Receiver::start(Answer::Ok),
    );
    subscribe(&app, &a.url, json!([])).await;
    subscribe(&app, &b.url, json!([])).await;
    let first = create(&app, "short-0.example").await;
    app.settled(&first).await;
    eventually(
        "the two hung consumers to hold both slots",
        Duration::from_secs(15),
        || async { (a.in_flight() == 1 && b.in_flight() == 1).then_some(()) },
    )
    .await;

    let c_hook = subscribe(&app, &c.url, json!([])).await;
    for i in 1..=TASKS {
        let task = create(&app, &format!("short-{i}.example")).await;
        app.settled(&task).await;
    }
    let queued = eventually(
        "the healthy consumer's deliveries to be queued",
        Duration::from_secs(15),
        || async {
            let e = log(&app, &c_hook).await;
            (e.len() == TASKS).then_some(e)
        },
    )
    .await;
    assert_eq!(
        c.count(),
        0,
        "no slot was free: nothing is sent past the limit"
    );
    for d in &queued {
        assert_eq!(d["state"], "pending", "{d}");
        assert_eq!(d["attempts"], json!([]), "{d}");
    }
    assert_eq!((a.max_in_flight(), b.max_in_flight()), (1, 1));

    // One consumer answers: its waiting deliveries go in its slot, then the slot goes to the
    // healthy consumer, whose deliveries go once each while the other still holds its slot.
    // By then the deliverer's last claim is over a second old, so a claim goes first when the
    // slot frees; it must leave the slot to what is handed. (This is a wait for time to pass,
    // not for a result: nothing is asserted on its account.) Deliveries stranded behind a send
    // that found no slot are `fair.rs`'s table tests: here the subscription's next attempt
    // would start them anyway.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    a.release();
    let got = c.wait_for(TASKS).await;
    let events: std::collections::BTreeSet<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(events.len(), TASKS, "each event once");
    assert_eq!(b.in_flight(), 1, "the other consumer still holds its slot");
    b.release();
    let all = 2 * (TASKS + 1) + TASKS;
    eventually(
        "every delivery to be delivered",
        Duration::from_secs(15),
        || async { (a.count() + b.count() + c.count() >= all).then_some(()) },
    )
    .await;
    let delivered = eventually(
        "the healthy consumer's deliveries to be recorded",
        Duration::from_secs(15),
        || async {
            let e = log(&app, &c_hook).await;
            e.iter().all(|d| d["state"] == "delivered").then_some(e)
        },
    )
    .await;
    for d in &delivered {
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
    }
    assert_eq!(
        (a.count(), b.count(), c.count()),
        (TASKS + 1, TASKS + 1, TASKS),
        "nothing sent twice"
    );
    assert_eq!(c.max_in_flight(), 1);
    app.stop().await;
    sim.stop().await;
}

/// A gateway with one webhook slot in all, one per subscription, and a timeout that outlasts
/// the test: a consumer that holds its first request holds the slot.
async fn one_slot(db: Db) -> (em_gateway::sim::RunningSim, TestApp) {
    start(
        db,
        &[
            ("EMGW_WEBHOOK_CONCURRENCY", "1"),
            ("EMGW_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", "1"),
            ("EMGW_WEBHOOK_TIMEOUT_MS", "120000"),
        ],
    )
    .await
}

/// Creates a gateway for each of `numbers`, each settled before the next is created.
async fn settle_tasks(app: &TestApp, name: &str, numbers: std::ops::RangeInclusive<usize>) {
    for i in numbers {
        let task = create(app, &format!("{name}-{i}.example")).await;
        app.settled(&task).await;
    }
}

async fn holding_the_slot(receiver: &Receiver) {
    eventually(
        "the first delivery to hold the slot",
        Duration::from_secs(15),
        || async { (receiver.in_flight() == 1).then_some(()) },
    )
    .await;
}

/// Waits until what the deliverer read of a subscription when its first attempt started is a
/// second old (`webhooks::current::FRESH`): a wait for time to pass, nothing is asserted on its
/// account.
async fn unsubscribe(app: &TestApp, hook: &Value) {
    let id = hook["id"].as_str().unwrap();
    let deleted = http()
        .delete(app.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&app.write_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}

async fn past_what_was_read() {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
}

/// Deliveries held in memory (waiting behind their subscription's attempt, or handed) carry the
/// subscription as it was; one deleted meanwhile gets none of them once what was read of it is a
/// second old. One slot in all, so what the deleted subscription still had goes before the
/// other subscription's delivery, or not at all.
async fn what_a_deleted_subscription_had_waiting_is_not_sent(db: Db) {
    let (sim, app) = one_slot(db).await;
    let (gone, other) = (Receiver::start(Answer::Hold), Receiver::start(Answer::Ok));
    let gone_hook = subscribe(&app, &gone.url, json!([])).await;
    settle_tasks(&app, "deleted", 0..=0).await;
    holding_the_slot(&gone).await;
    settle_tasks(&app, "deleted", 1..=2).await;
    // Both subscriptions' deliveries of two more tasks, handed, the older subscription's first:
    // the deleted one's go (or not) before the other's.
    subscribe(&app, &other.url, json!([])).await;
    settle_tasks(&app, "deleted", 3..=4).await;

    unsubscribe(&app, &gone_hook).await;
    past_what_was_read().await;
    gone.release();
    other.wait_for(2).await;
    assert_eq!(
        gone.count(),
        1,
        "the deleted subscription got what it had waiting"
    );
    app.stop().await;
    sim.stop().await;
}

/// A delivery that waited in memory while its subscription's secret was rotated (with no
/// overlap) is signed with the new secret alone, once what was read of the subscription is a
/// second old.
async fn what_waited_is_signed_with_the_secret_rotated_meanwhile(db: Db) {
    let (sim, app) = one_slot(db).await;
    let receiver = Receiver::start(Answer::Hold);
    let hook = subscribe(&app, &receiver.url, json!([])).await;
    let old = hook["secret"].as_str().unwrap().to_string();
    settle_tasks(&app, "rotated", 0..=1).await;
    holding_the_slot(&receiver).await;
    let id = hook["id"].as_str().unwrap();
    let resp = app
        .post(
            &format!("/v1/webhooks/{id}/rotate-secret"),
            &app.write_key,
            json!({"overlap_seconds": 0}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let new = resp.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    past_what_was_read().await;
    receiver.release();
    let got = receiver.wait_for(2).await;
    assert!(verify_signature(&old, &got[0]), "sent before the rotation");
    assert!(
        verify_signature(&new, &got[1]) && !verify_signature(&old, &got[1]),
        "signed as the subscription is now: {}",
        got[1].headers["webhook-signature"]
    );
    app.stop().await;
    sim.stop().await;
}

/// The poller hands the deliveries it queues to its own replica's deliverer, leased to it:
/// another replica's claim passes them over while the lease lasts, the deliverer sends them with
/// no claim, and once a lease is over (the replica died holding them) any replica's claim
/// takes them.
async fn a_settled_tasks_deliveries_are_handed_to_the_replica_that_settled_it(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let receiver = Receiver::start(Answer::Ok);
    let hook = subscribe(&app, &receiver.url, json!([])).await;
    let other = ReplicaId::new();
    let lease = Duration::from_secs(30);

    let first = create(&app, "handed.example").await;
    app.settle_by_ticking(&first).await;
    let claimed = app
        .store
        .claim_deliveries(other, app.now(), lease, 10)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "leased to the replica that settled it");
    assert_eq!(app.deliver_due().await, 1, "sent from memory");
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["data"]["id"], first.as_str());
    let entries = log(&app, &hook).await;
    assert_eq!(entries[0]["state"], "delivered", "its attempt recorded");

    let second = create(&app, "lapsed.example").await;
    app.settle_by_ticking(&second).await;
    app.advance(Duration::from_secs(61));
    let claimed = app
        .store
        .claim_deliveries(other, app.now(), lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "its lease over, another replica takes it");
    let event: Value = serde_json::from_str(&claimed[0].payload).unwrap();
    assert_eq!(event["data"]["id"], second.as_str());
    app.stop().await;
    sim.stop().await;
}

/// A delivery handed over in memory whose subscription is deleted meanwhile is dropped unsent:
/// the consumer gets nothing, and it is not counted as an attempt.
async fn a_handed_delivery_of_a_deleted_subscription_is_dropped_and_no_attempt(db: Db) {
    let sim = spawn_sim(|_| {});
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    let receiver = Receiver::start(Answer::Ok);
    let hook = subscribe(&app, &receiver.url, json!([])).await;
    let task = create(&app, "dropped.example").await;
    app.settle_by_ticking(&task).await;
    unsubscribe(&app, &hook).await;
    past_what_was_read().await;
    assert_eq!(app.deliver_due().await, 0, "dropped, not attempted");
    assert_eq!(app.deliver_due().await, 0, "and not due again");
    assert!(receiver.received().is_empty());
    app.stop().await;
    sim.stop().await;
}

//! Under faults, nothing is lost: every task ends in the state EM's objects say is right, no
//! create reaches EM twice, no client ever sees a 500, and every settled task's webhook arrives.
//!
//! Real processes and real time; faults strike at moments chosen by progress (after so many
//! creates were accepted, while EM has operations under way), never after a fixed sleep. Where a
//! fault makes a create's outcome unknowable — the gateway died, or a connection was dropped,
//! between recording the intent and EM receiving the request — the task fails, settled from
//! EM's objects because its gateway never appeared; each test checks that every failure is
//! exactly that and nothing else.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Creates accepted so far, across every client: faults are timed by it.
type Progress = Arc<AtomicUsize>;

/// Creates one gateway per host, each under its own Idempotency-Key, retrying whatever goes
/// wrong against whichever gateway instance is current. Returns host → task id.
async fn create_all(
    base: Arc<RwLock<String>>,
    key: &str,
    hosts: &[String],
    concurrency: usize,
    accepted: Progress,
) -> HashMap<String, String> {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut jobs = Vec::new();
    for host in hosts {
        let (base, key, host, limit, accepted) = (
            base.clone(),
            key.to_string(),
            host.clone(),
            limit.clone(),
            accepted.clone(),
        );
        jobs.push(tokio::spawn(async move {
            let _slot = limit.acquire_owned().await.unwrap();
            let id = eventually(
                &format!("{host} to be accepted"),
                Duration::from_secs(90),
                || create_once(&base, &key, &host),
            )
            .await;
            accepted.fetch_add(1, Ordering::SeqCst);
            (host, id)
        }));
    }
    let mut out = HashMap::new();
    for job in jobs {
        let (host, id) = job.await.unwrap();
        out.insert(host, id);
    }
    out
}

/// One try: the task id on 202; `None` on what a client retries (409 while the first request
/// with this key is at work, 503, or no answer because the instance died).
async fn create_once(base: &RwLock<String>, key: &str, host: &str) -> Option<String> {
    let url = format!("{}/v1/cloud-gateways", base.read().unwrap().clone());
    let resp = http()
        .post(url)
        .bearer_auth(key)
        .header("Idempotency-Key", format!("create-{host}"))
        .json(&json!({"backup_server_uid": VBR01, "server_host_name": host}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    if status == 202 {
        let task: Value = resp.json().await.unwrap();
        return Some(task["id"].as_str().unwrap().to_string());
    }
    assert!(
        status == 409 || status == 503,
        "{host}: unexpected {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    None
}

/// Waits until `accepted` reaches `n`.
async fn after_accepted(accepted: &Progress, n: usize) {
    eventually(
        &format!("{n} creates to be accepted"),
        Duration::from_secs(60),
        || async { (accepted.load(Ordering::SeqCst) >= n).then_some(()) },
    )
    .await;
}

/// Waits for every task to settle; returns task id → task.
async fn settle_all(
    base: Arc<RwLock<String>>,
    key: &str,
    ids: &[String],
) -> HashMap<String, Value> {
    let done: Arc<std::sync::Mutex<HashMap<String, Value>>> = Default::default();
    eventually("every task to settle", Duration::from_secs(120), || {
        let (base, done) = (base.clone(), done.clone());
        async move {
            let open: Vec<String> = {
                let done = done.lock().unwrap();
                ids.iter()
                    .filter(|id| !done.contains_key(*id))
                    .cloned()
                    .collect()
            };
            for id in open {
                let url = format!("{}/v1/tasks/{id}", base.read().unwrap().clone());
                if let Ok(resp) = http().get(url).bearer_auth(key).send().await
                    && resp.status() == 200
                {
                    let task: Value = resp.json().await.unwrap();
                    if task["state"] != "running" {
                        done.lock().unwrap().insert(id, task);
                    }
                }
            }
            let done = done.lock().unwrap();
            (done.len() == ids.len()).then(|| done.clone())
        }
    })
    .await
}

/// The invariants: a task succeeded exactly when EM holds its gateway; no host twice on EM; a
/// failed task is one whose create never reached EM, settled so from EM's objects. Returns the
/// hosts whose creates were lost that way.
async fn check_against_em(
    sim: &em_gateway::sim::RunningSim,
    tasks: &HashMap<String, String>,
    settled: &HashMap<String, Value>,
) -> Vec<String> {
    let on_em = client(sim, 1).cloud_gateways().await.unwrap();
    let names: Vec<String> = on_em.iter().map(|g| g.name.clone()).collect();
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a gateway was created twice");
    let mut lost = Vec::new();
    for (host, id) in tasks {
        let task = &settled[id];
        let exists = names.contains(host);
        match task["state"].as_str().unwrap() {
            "succeeded" => assert!(exists, "{host}: succeeded but not on EM: {task}"),
            "failed" => {
                assert!(!exists, "{host}: failed but on EM: {task}");
                let message = task["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("settled by looking at EM's objects")
                        && message.contains(&format!("no cloud gateway for {host} appeared")),
                    "{host}: failed for another reason than a create that never reached EM: {task}"
                );
                lost.push(host.clone());
            }
            other => panic!("{host}: {other}"),
        }
    }
    lost.sort();
    lost
}

async fn webhooks_cover(receiver: &Receiver, settled: &HashMap<String, Value>) {
    eventually(
        "a webhook for every settled task",
        Duration::from_secs(60),
        || async {
            let seen: HashSet<String> = receiver
                .received()
                .iter()
                .filter_map(|r| r.json()["data"]["id"].as_str().map(str::to_string))
                .collect();
            settled.keys().all(|id| seen.contains(id)).then_some(())
        },
    )
    .await;
}

fn hosts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}.example")).collect()
}

async fn issue_key(database_url: &str) -> String {
    let store = em_gateway::store::Store::connect(database_url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let issued = em_gateway::access::issue(
        &store,
        "faults",
        em_gateway::domain::Scope::Admin,
        em_gateway::domain::Owner::default(),
        None,
        em_gateway::clock::Clock::system().now(),
    )
    .await
    .unwrap();
    secrecy::ExposeSecret::expose_secret(&issued.token).to_string()
}

async fn subscribe(base: &str, key: &str, url: &str) {
    let resp = http()
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_at_random_moments_loses_nothing() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(300));
    let db = fresh_database(Db::Sqlite).await;
    let key = issue_key(&db).await;
    let vars = process_vars(&sim, &db, &[]);
    let first = gateway_process(&vars).await;
    let receiver = Receiver::start(Answer::Ok);
    subscribe(&first.base, &key, &receiver.url).await;
    let base = Arc::new(RwLock::new(first.base.clone()));
    let hosts = hosts("kill", 150);
    let accepted = Progress::default();

    // SIGKILL six times, each after a random number of further accepted creates (so mid-run,
    // with creates in every stage of their life), and start a new instance.
    let killer = {
        let (base, vars, accepted) = (base.clone(), vars.clone(), accepted.clone());
        tokio::spawn(async move {
            let mut current = first;
            let mut rng = fastrand::Rng::with_seed(11);
            let mut at = 0;
            for _ in 0..6 {
                at += rng.usize(8..20);
                after_accepted(&accepted, at).await;
                current.kill().await;
                current = gateway_process(&vars).await;
                *base.write().unwrap() = current.base.clone();
            }
            current
        })
    };
    let tasks = create_all(base.clone(), &key, &hosts, 8, accepted).await;
    let last = killer.await.unwrap();
    let ids: Vec<String> = tasks.values().cloned().collect();
    let settled = settle_all(base.clone(), &key, &ids).await;
    let lost = check_against_em(&sim, &tasks, &settled).await;
    eprintln!(
        "{} of {} creates died with the gateway before EM got them: {lost:?}",
        lost.len(),
        hosts.len()
    );
    webhooks_cover(&receiver, &settled).await;
    last.kill().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_mid_run() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(300));
    let db = fresh_database(Db::Postgres).await;
    let key = issue_key(&db).await;
    let vars = process_vars(&sim, &db, &[]);
    let a = gateway_process(&vars).await;
    let b = gateway_process(&vars).await;
    let receiver = Receiver::start(Answer::Ok);
    subscribe(&a.base, &key, &receiver.url).await;
    let base_a = Arc::new(RwLock::new(a.base.clone()));
    let base_b = Arc::new(RwLock::new(b.base.clone()));
    let (first, second) = (hosts("repa", 60), hosts("repb", 60));
    let (via_a_accepted, via_b_accepted) = (Progress::default(), Progress::default());
    let via_a = {
        let (base, key, first, p) = (base_a.clone(), key.clone(), first.clone(), via_a_accepted);
        tokio::spawn(async move { create_all(base, &key, &first, 4, p).await })
    };
    // B dies with work in flight; its clients move over to A.
    let via_b = {
        let (base, key, second, p) = (
            base_b.clone(),
            key.clone(),
            second.clone(),
            via_b_accepted.clone(),
        );
        tokio::spawn(async move { create_all(base, &key, &second, 4, p).await })
    };
    after_accepted(&via_b_accepted, 20).await;
    b.kill().await;
    *base_b.write().unwrap() = a.base.clone();
    let mut tasks = via_a.await.unwrap();
    tasks.extend(via_b.await.unwrap());
    let ids: Vec<String> = tasks.values().cloned().collect();
    let settled = settle_all(base_a.clone(), &key, &ids).await;
    let lost = check_against_em(&sim, &tasks, &settled).await;
    assert!(
        lost.iter().all(|h| h.starts_with("repb")),
        "only creates in flight on the killed replica can be lost: {lost:?}"
    );
    webhooks_cover(&receiver, &settled).await;
    a.kill().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn em_errors_drops_and_session_loss_never_reach_clients_as_500() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(200));
    let db = fresh_database(Db::Sqlite).await;
    let app = spawn_app(&test_settings(&sim, &db)).await;
    let receiver = Receiver::start(Answer::Ok);
    app.post("/v1/webhooks", &app.write_key, json!({"url": receiver.url}))
        .await;
    set_sim_faults(&sim, json!({"error_rate": 0.1, "drop_rate": 0.05})).await;
    let accepted = Progress::default();
    // Every session expired after every 25 further creates, while EM has work under way.
    let expirer = {
        let (base, accepted) = (
            sim.api_url.trim_end_matches("/api").to_string(),
            accepted.clone(),
        );
        tokio::spawn(async move {
            for round in 1..=7 {
                after_accepted(&accepted, round * 25).await;
                let _ = http()
                    .post(format!("{base}/_sim/sessions/expire"))
                    .send()
                    .await;
            }
        })
    };
    let base = Arc::new(RwLock::new(app.base.clone()));
    let hosts = hosts("flaky", 200);
    let tasks = create_all(base.clone(), &app.write_key, &hosts, 8, accepted).await;
    expirer.await.unwrap();
    let ids: Vec<String> = tasks.values().cloned().collect();
    let settled = settle_all(base, &app.read_key, &ids).await;
    set_sim_faults(&sim, json!({"error_rate": 0.0, "drop_rate": 0.0})).await;
    // A create written onto a pooled connection em-sim had just dropped may never have reached
    // EM: the gateway cannot know, keeps the intent and settles it from EM's objects — as
    // failed when the gateway never appeared. Those are the only failures allowed.
    let lost = check_against_em(&sim, &tasks, &settled).await;
    eprintln!(
        "{} of {} creates never reached EM over a dropped connection: {lost:?}",
        lost.len(),
        hosts.len()
    );
    webhooks_cover(&receiver, &settled).await;
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn em_restarted_mid_run_forgets_tasks_not_results() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(300));
    let db = fresh_database(Db::Sqlite).await;
    let app = spawn_app(&test_settings(&sim, &db)).await;
    let base = Arc::new(RwLock::new(app.base.clone()));
    let hosts = hosts("restart", 200);
    let accepted = Progress::default();
    // Three restarts, each after 50 more creates and while EM has operations under way, whose
    // tasks it then forgets.
    let restarter = {
        let sim_base = sim.api_url.trim_end_matches("/api").to_string();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let state = || async {
                http()
                    .get(format!("{sim_base}/_sim/state"))
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            };
            let mut forgotten = 0;
            for round in 1..=3 {
                after_accepted(&accepted, round * 50).await;
                let pending = eventually(
                    "EM to have operations under way",
                    Duration::from_secs(30),
                    || async {
                        let n = state().await["operations_pending"].as_u64().unwrap_or(0);
                        (n > 0).then_some(n)
                    },
                )
                .await;
                let _ = http().post(format!("{sim_base}/_sim/restart")).send().await;
                forgotten += pending;
            }
            forgotten
        })
    };
    let tasks = create_all(base.clone(), &app.write_key, &hosts, 8, accepted).await;
    let forgotten = restarter.await.unwrap();
    let ids: Vec<String> = tasks.values().cloned().collect();
    let settled = settle_all(base, &app.read_key, &ids).await;
    let lost = check_against_em(&sim, &tasks, &settled).await;
    assert!(
        lost.is_empty(),
        "a restart loses tasks, not objects: {lost:?}"
    );
    // Each restart struck while operations were under way: they went on to create their
    // gateways, but EM forgot their tasks, so those tasks were settled from EM's objects.
    let by_objects = settled
        .values()
        .filter(|t| {
            t["message"]
                .as_str()
                .is_some_and(|m| m.contains("EM's objects"))
        })
        .count();
    assert!(forgotten >= 3, "every restart found operations under way");
    assert!(
        by_objects >= 1,
        "EM forgot {forgotten} tasks under way, yet none was settled from EM's objects"
    );
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_everything_after() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(100));
    let db = fresh_database(Db::Sqlite).await;
    let app = spawn_app(&test_settings_with(
        &sim,
        &db,
        &[("EMGW_WEBHOOK_RETRY_SCHEDULE", "300ms,600ms,1s,2s,3s")],
    ))
    .await;
    let receiver = Receiver::start(Answer::FailFirst(u32::MAX));
    app.post("/v1/webhooks", &app.write_key, json!({"url": receiver.url}))
        .await;
    let base = Arc::new(RwLock::new(app.base.clone()));
    let tasks = create_all(
        base.clone(),
        &app.write_key,
        &hosts("down", 100),
        8,
        Progress::default(),
    )
    .await;
    let ids: Vec<String> = tasks.values().cloned().collect();
    let settled = settle_all(base, &app.read_key, &ids).await;
    // Down until every task's event was refused at least twice (a first attempt and a retry).
    eventually(
        "every event to be refused twice",
        Duration::from_secs(30),
        || async {
            let mut refused: HashMap<String, usize> = HashMap::new();
            for r in receiver.received() {
                if let Some(id) = r.json()["data"]["id"].as_str() {
                    *refused.entry(id.to_string()).or_default() += 1;
                }
            }
            settled
                .keys()
                .all(|id| refused.get(id).is_some_and(|n| *n >= 2))
                .then_some(())
        },
    )
    .await;
    receiver.set(Answer::Ok);
    webhooks_cover(&receiver, &settled).await;
    app.stop().await;
    sim.stop().await;
}

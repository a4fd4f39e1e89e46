//! Two replicas on one database and one EM: SIGTERM of one hands its tasks over, and the other
//! settles them within one poll interval of EM finishing.
//!
//! Postgres only: several replicas share a database only on Postgres (SQLite is embedded, one
//! process). The orphan-claim SQL this relies on is shared with SQLite and covered there by the
//! store and recovery tests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::*;
use crate::tenant_secrets::issue_key;

const LOST: &str =
    "Enterprise Manager lost track of this task; settled by looking at EM's objects: ";
/// The replicas' poll interval: the hand-over's bound.
const POLL: Duration = Duration::from_millis(500);
/// How long EM takes: the stopped replica is gone well before EM finishes, so the other must
/// look at the tasks (and find them not done yet) before it can settle them.
const EM_TASK: Duration = Duration::from_secs(5);
/// Tasks submitted, one every `PACE`.
const TASKS: u32 = 5;
const PACE: Duration = Duration::from_millis(500);
/// One tick's own work on a loaded machine, and the clock reading of the test against the
/// gateway's.
const SLACK: Duration = Duration::from_millis(500);

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("a timestamp: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replicas_tasks_are_settled_by_the_other_within_one_poll_interval() {
    let sim = spawn_sim(|c| c.task_time = EM_TASK);
    let database = fresh_database(Db::Postgres).await;
    let key = issue_key(&database).await;
    let poll = POLL.as_millis().to_string();
    let vars = process_vars(&sim, &database, &[("EMGW_POLL_INTERVAL_MS", &poll)]);
    let a = gateway_process(&vars).await;
    let b = gateway_process(&vars).await;

    // Through A: EM's tasks are on A's sessions, which B cannot list. Paced, so that EM finishes
    // them at different moments: a replica that looked at one and then left it alone for longer
    // than an interval (a lease held) would be late for some of them.
    let mut tasks = Vec::new();
    let paced = tokio::time::Instant::now();
    for i in 0..TASKS {
        tokio::time::sleep_until(paced + PACE * i).await;
        let resp = http()
            .post(format!("{}/v1/cloud-gateways", a.base))
            .bearer_auth(&key)
            .json(&json!({"backup_server_uid": VBR01,
                "server_host_name": format!("handover-{i}.example.local"),
                "network_type": "direct"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let task: Value = resp.json().await.unwrap();
        assert_eq!(task["state"], "running");
        tasks.push(task);
    }

    // Requests at once, so that A's HTTP workers open connections of their own: those die
    // with the workers, and the hand-over must not depend on them.
    let reads = (0..32).map(|_| {
        http()
            .get(format!("{}/v1/tasks", a.base))
            .bearer_auth(&key)
            .send()
    });
    for resp in futures_util::future::join_all(reads).await {
        assert_eq!(resp.unwrap().status(), 200);
    }

    let (status, log) = a.stop().await;
    let a_gone = Utc::now();
    assert!(status.is_some_and(|s| s.success()), "A exits cleanly");
    let refused: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("could not release"))
        .collect();
    assert!(refused.is_empty(), "A released its work: {refused:?}");
    let em_first = tasks.iter().map(|t| at(&t["created_at"])).min().unwrap() + EM_TASK;
    assert!(
        a_gone < em_first,
        "the test needs A gone before EM finishes (it took until {a_gone}, EM {em_first})"
    );

    for task in &tasks {
        // EM accepted it before the gateway wrote its task id (`updated_at`): EM is done with it
        // by then plus its task time.
        let em_done = at(&task["updated_at"]) + EM_TASK;
        let later = a_gone.max(em_done);
        let url = format!("{}/v1/tasks/{}", b.base, task["id"].as_str().unwrap());
        let wait = (later - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(30);
        let settled = eventually("B to settle A's task", wait, || async {
            let t: Value = http()
                .get(&url)
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
        assert_eq!(settled["state"], "succeeded", "{settled}");
        assert!(
            settled["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(LOST),
            "B settled it from EM's objects: {settled}"
        );
        let finished = at(&settled["finished_at"]);
        let late = (finished - later).num_milliseconds();
        eprintln!("settled {late} ms after the later of A's exit and EM finishing");
        assert!(
            finished <= later + POLL + SLACK,
            "settled {late} ms after the later of A's exit and EM finishing \
             (bound: one poll interval, {} ms, + {} ms)",
            POLL.as_millis(),
            SLACK.as_millis()
        );
    }
    let _ = b.stop().await;
    sim.stop().await;
}

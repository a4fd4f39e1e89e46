//! The poller's database work follows the tasks that finished, not the tasks in flight: which
//! tasks it follows is kept in memory, and orphans are found from the sessions table.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

both_databases!(a_tick_reads_no_running_task_when_none_finished);

fn gateway(host: &str) -> Value {
    json!({"backup_server_uid": VBR01, "server_host_name": host})
}

async fn create(app: &TestApp, host: &str) -> String {
    let resp = app
        .post("/v1/cloud-gateways", &app.write_key, gateway(host))
        .await;
    assert_eq!(resp.status(), 202, "create {host}");
    let task: Value = resp.json().await.unwrap();
    task["id"].as_str().unwrap().to_string()
}

async fn a_tick_reads_no_running_task_when_none_finished(db: Db) {
    // EM's tasks outlast the test: nothing finishes.
    let sim = spawn_sim(|c| c.task_time = Duration::from_secs(600));
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    for i in 0..40 {
        create(&app, &format!("quiet{i}.example")).await;
    }
    // The first tick reads this replica's running tasks once, into memory.
    let first = app.tick_poller().await;
    assert_eq!(first.resynced, Some(40), "{first:?}");
    for _ in 0..3 {
        let before = app.store.task_rows_read();
        let report = app.tick_poller().await;
        assert_eq!(report.resynced, None, "{report:?}");
        assert!(report.em_task_lists >= 1, "EM is still asked: {report:?}");
        assert_eq!(report.settled + report.orphans_claimed, 0, "{report:?}");
        assert_eq!(
            app.store.task_rows_read() - before,
            0,
            "a tick in which nothing finished read running tasks from the database"
        );
    }
    // A missed update in memory is put right by the next resync.
    app.advance(Duration::from_secs(31));
    let later = app.tick_poller().await;
    assert_eq!(later.resynced, Some(40), "{later:?}");
    app.stop().await;
    sim.stop().await;
}

/// A replica that died before its first heartbeat: its sessions are known only because the
/// submitter registered them with its first task. Another replica finds its tasks from the
/// sessions table once they stop heartbeating and settles them from EM's objects, without taking
/// them into its own in-flight set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_replicas_tasks_are_settled_by_another_from_ems_objects() {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(200));
    let url = fresh_database(Db::Postgres).await;
    let settings = test_settings(&sim, &url);
    // Never ticked: as if it died right after EM accepted its tasks.
    let silent = spawn_stepped_app(&settings).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(create(&silent, &format!("silent{i}.example")).await);
    }
    let other = spawn_stepped_app(&settings).await;
    let first = other.tick_poller().await;
    assert_eq!(
        first.resynced,
        Some(0),
        "another replica's tasks are not its own"
    );
    // EM finished them (so judging by EM's objects cannot fail them for want of time) ...
    eventually("EM to finish", Duration::from_secs(30), || async {
        (sim_state(&sim).await["cloud_gateways"] == 6).then_some(())
    })
    .await;
    // ... and the silent replica is past the missed heartbeats after which it counts as gone.
    other.advance(Duration::from_secs(5));
    eventually(
        "the silent replica's tasks to settle",
        Duration::from_secs(30),
        || async {
            let report = other.tick_poller().await;
            assert_eq!(
                report.em_task_lists, 0,
                "it follows none of them on EM: {report:?}"
            );
            let mut done = 0;
            for id in &ids {
                let task = other.get_json(&format!("/v1/tasks/{id}")).await;
                if task["state"] != "running" {
                    assert_eq!(task["state"], "succeeded", "{task}");
                    done += 1;
                }
            }
            (done == ids.len()).then_some(())
        },
    )
    .await;
    let state = sim_state(&sim).await;
    assert_eq!(state["cloud_gateways"], 6, "each created once");
    other.stop().await;
    silent.stop().await;
    sim.stop().await;
}

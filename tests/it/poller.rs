//! The poller's database work follows the tasks that finished, not the tasks in flight: which
//! tasks it follows is kept in memory, and orphans are found from the sessions table.

use std::time::Duration;

use serde_json::{Value, json};

use em_gateway::store::UnsentLook;

use crate::support::*;

both_databases!(
    a_tick_reads_no_running_task_when_none_finished,
    intents_are_looked_for_only_when_one_may_have_been_left_behind,
    a_replica_gone_lately_has_its_intents_looked_for,
    each_session_lists_its_tasks_at_its_own_turn,
);

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

/// The look for intents EM's answer never came for steps over every intent written since it
/// last looked; it looks only when this replica left one behind (or a replica went away).
async fn intents_are_looked_for_only_when_one_may_have_been_left_behind(db: Db) {
    let sim = spawn_sim(|c| c.task_time = Duration::from_secs(600));
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    for i in 0..5 {
        create(&app, &format!("answered{i}.example")).await;
    }
    let first = app.tick_poller().await;
    assert!(
        matches!(first.unsent_look, Some(UnsentLook::All { .. })),
        "the first tick looks at all: {first:?}"
    );
    // Every answer came back: once they would be due, none is looked for.
    app.advance(Duration::from_secs(60));
    let quiet = app.tick_poller().await;
    assert!(
        matches!(quiet.unsent_look, Some(UnsentLook::LookedAt { .. })),
        "{quiet:?}"
    );
    assert_eq!(quiet.orphans_claimed, 0, "{quiet:?}");

    // EM takes a create, and its answer is lost on the way back.
    set_sim_faults(&sim, json!({"drop_rate": 1.0})).await;
    let resp = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            gateway("lost.example"),
        )
        .await;
    set_sim_faults(&sim, json!({"drop_rate": 0.0})).await;
    assert_eq!(resp.status(), 202, "accepted, its outcome unknown");
    let lost: Value = resp.json().await.unwrap();
    app.advance(Duration::from_secs(60));
    let due = app.tick_poller().await;
    assert!(
        matches!(due.unsent_look, Some(UnsentLook::Since { .. })),
        "the intent left behind is looked for: {due:?}"
    );
    assert_eq!(due.orphans_claimed, 1, "{due:?}");
    let task = app
        .get_json(&format!("/v1/tasks/{}", lost["id"].as_str().unwrap()))
        .await;
    // Settled from EM's objects (its task outlasts the test, so no gateway yet: failed).
    assert_ne!(task["state"], "running", "{task}");
    assert!(
        task["message"]
            .as_str()
            .is_some_and(|m| m.contains("EM's objects")),
        "{task}"
    );
    // Looked at: nothing is left behind any more.
    app.advance(Duration::from_secs(1));
    let after = app.tick_poller().await;
    assert!(
        matches!(after.unsent_look, Some(UnsentLook::LookedAt { .. })),
        "{after:?}"
    );
    app.stop().await;
    sim.stop().await;
}

/// Another replica's intents are its own to know, until it goes away: then the others look for
/// what it may have left behind for as long as that can still come due.
async fn a_replica_gone_lately_has_its_intents_looked_for(db: Db) {
    use em_gateway::domain::ReplicaId;

    let sim = spawn_sim(|c| c.task_time = Duration::from_secs(600));
    let app = spawn_stepped_app(&test_settings(&sim, &fresh_database(db).await)).await;
    app.tick_poller().await;
    // Another replica heartbeats its session, writes an intent, and falls silent.
    let t0 = app.now();
    let gone = ReplicaId::new();
    app.store
        .heartbeat_sessions(gone, &[(0, "gone-session".into())], t0)
        .await
        .unwrap();
    let intent = gateway_intent("left.example");
    app.store.insert_tasks(&[(intent, None)], t0).await.unwrap();
    // Silent past ten heartbeats (1 s here), and its intent due (EM's timeout + 5 s = 7 s).
    app.advance(Duration::from_millis(7_500));
    let due = app.tick_poller().await;
    assert!(
        matches!(due.unsent_look, Some(UnsentLook::Since { .. })),
        "what the gone replica left is looked for: {due:?}"
    );
    assert_eq!(due.orphans_claimed, 1, "{due:?}");
    // Gone long enough that all it wrote has come due and been looked at: nothing new to find.
    app.advance(Duration::from_secs(60));
    let later = app.tick_poller().await;
    assert!(
        matches!(later.unsent_look, Some(UnsentLook::LookedAt { .. })),
        "{later:?}"
    );
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
    // Never ticked: as if it died right after EM accepted its tasks and they were recorded.
    let silent = spawn_stepped_app(&settings).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(create(&silent, &format!("silent{i}.example")).await);
    }
    silent.write_behind().await;
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

/// The running poller spreads an interval's task lists over turns, one session's at each: what
/// finishes settles in four smaller bursts instead of one, and each session still lists once.
async fn each_session_lists_its_tasks_at_its_own_turn(db: Db) {
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(1));
    let settings = test_settings_with(
        &sim,
        &fresh_database(db).await,
        &[("EMGW_EM_SESSIONS", "4")],
    );
    let app = spawn_stepped_app(&settings).await;
    // Sessions are taken in turn: each of the four gets tasks.
    let mut tasks = Vec::new();
    for i in 0..12 {
        tasks.push(create(&app, &format!("turn{i}.example")).await);
    }
    app.write_behind().await;
    eventually(
        "EM finished the twelve tasks",
        Duration::from_secs(10),
        || async { (sim_state(&sim).await["operations_pending"] == 0).then_some(()) },
    )
    .await;
    let mut settled = 0;
    for turn in 0..4 {
        let before = sim_state(&sim).await["counters"]["requests_by_route"]["GET /tasks"]
            .as_u64()
            .unwrap_or(0);
        let report = app.turn_poller(turn, 4).await;
        let lists = sim_state(&sim).await["counters"]["requests_by_route"]["GET /tasks"]
            .as_u64()
            .unwrap_or(0)
            - before;
        assert_eq!(report.em_task_lists, 1, "turn {turn}: {report:?}");
        assert_eq!(lists, 1, "turn {turn}: EM was asked for one session's list");
        assert!(
            (1..12).contains(&report.settled),
            "turn {turn} settles its session's tasks, not all: {report:?}"
        );
        // Only the first turn does the rest of a tick (here: the first resync).
        assert_eq!(
            report.resynced.is_some(),
            turn == 0,
            "turn {turn}: {report:?}"
        );
        settled += report.settled;
    }
    assert_eq!(settled, 12, "the four turns settle every task once");
    for id in &tasks {
        let task = app.get_json(&format!("/v1/tasks/{id}")).await;
        assert_eq!(task["state"], "succeeded", "{task}");
    }
    app.stop().await;
    sim.stop().await;
}

/// PostgreSQL has no statistics of a new table until autovacuum gets to it, and then believes
/// few tasks run: it recorded EM's task ids by reading every running task, so a burst of
/// creates cost as much per create as the tasks in flight. The poller has the statistics
/// refreshed once the tasks in flight reach `STATISTICS_FROM`, and again as they double.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_statistics_are_refreshed_as_the_tasks_in_flight_grow() {
    use em_gateway::tasks::poller::STATISTICS_FROM;
    use futures_util::StreamExt;

    let sim = spawn_sim(|c| c.task_time = Duration::from_secs(600));
    let url = fresh_database(Db::Postgres).await;
    let app = spawn_stepped_app(&test_settings(&sim, &url)).await;
    let analyzed = || {
        let url = url.clone();
        async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'tasks'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            pool.close().await;
            n
        }
    };
    let creates = |from: usize, to: usize| {
        let app = &app;
        futures_util::stream::iter(from..to)
            .map(move |i| async move { create(app, &format!("burst{i}.example")).await })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
    };
    // Started by the tick or not at all: counted as the tick decides.
    let started = || app.workers.poller.statistics_refreshes();
    creates(0, STATISTICS_FROM - 1).await;
    app.tick_poller().await;
    assert_eq!(started(), 0, "below {STATISTICS_FROM} in flight");

    creates(STATISTICS_FROM - 1, STATISTICS_FROM).await;
    app.tick_poller().await;
    assert_eq!(started(), 1);
    eventually("the first refresh", Duration::from_secs(20), || async {
        (analyzed().await == 1).then_some(())
    })
    .await;
    // Not again until the tasks in flight have doubled.
    app.tick_poller().await;
    assert_eq!(started(), 1);
    assert_eq!(analyzed().await, 1);
    app.stop().await;
    sim.stop().await;
}

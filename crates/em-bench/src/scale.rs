//! Phase `scale`: the poller with many tasks in flight, at two sizes (10,000 and 100,000 by
//! default). What must stay flat is the database work per tick: it is read from the gateway's
//! own `emgw_poller_database_seconds` over a window in which every task is in flight and none
//! finishes, so it shows what tracking them costs, not what settling them does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sched::{self, Machine, Sched};
use emgw_test_support::{Answer, PostgresDatabase, Receiver, TableActivity};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::{
    Run, Sending, direct_creates_on, direct_sessions, gateway_creates, http, ms, percentile,
    rss_kib, sim_state, start_gateway_plain, start_sim, verdict,
};

/// The gateway's default poll interval.
const INTERVAL: Duration = Duration::from_secs(1);

/// What one size measured.
pub struct Size {
    pub count: usize,
    pub task_ms: u64,
    pub submitted: Run,
    pub submit_took: Duration,
    /// The window with every task in flight: its length, ticks, database time per tick.
    pub window: Duration,
    pub ticks: f64,
    pub db_per_tick: Duration,
    pub lists_per_session_per_interval: f64,
    pub sessions: f64,
    /// EM finished → webhook received, sorted.
    pub delays: Vec<Duration>,
    /// The same path in its stages, each sorted: EM finished → settled (the task's
    /// `finished_at`), settled → first attempt started, attempt started → received.
    pub stages: [Vec<Duration>; 3],
    /// The poller's mean tick while tasks finish (from the window's end to the last webhook),
    /// and its mean EM task list (`GET /api/tasks`, read and skimmed).
    pub tick_while_finishing: Duration,
    pub list_while_finishing: Duration,
    /// EM's own answer: the four sessions' task lists read straight from em-sim (all at once,
    /// nothing else running), each round's slowest, over a few rounds: mean and worst.
    pub direct_lists: Option<(Duration, Duration)>,
    pub rss_in_flight_kib: u64,
    pub rss_peak_kib: u64,
    /// Running tasks' rows the poller's statements read, per tick over the window.
    pub task_rows_per_tick: f64,
    /// What every process ran and waited for a core over the window (schedstat), and its
    /// share of the two cores.
    pub machine: Machine,
    /// The same for the PostgreSQL backends serving the gateway: the database's work for it,
    /// without autovacuum, checkpoints or WAL writing.
    pub backends: Sched,
    /// What the gateway's statements did to each table over the window (PostgreSQL's own
    /// counters), the busiest first; `*` is the database as a whole.
    pub tables: Vec<TableActivity>,
    /// The same from the submit's start to the window's: where a submit behind its pace
    /// left work.
    pub tables_submit: Vec<TableActivity>,
    /// What every process ran while the tasks finished (from the window's end to the last
    /// webhook), and how long that took: how full the machine is while the p95 is measured.
    pub finishing: Machine,
    pub finishing_took: Duration,
}

impl Size {
    /// PostgreSQL's CPU per tick over the window: the database's own work, whatever the
    /// machine's queue.
    pub fn postgres_per_tick(&self) -> Sched {
        self.per_tick(self.machine.postgres)
    }

    /// The gateway's backends' CPU per tick.
    pub fn backends_per_tick(&self) -> Sched {
        self.per_tick(self.backends)
    }

    fn per_tick(&self, s: Sched) -> Sched {
        let per = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / self.ticks.max(1.0));
        Sched {
            run: per(s.run),
            wait: per(s.wait),
            slices: (s.slices as f64 / self.ticks.max(1.0)) as u64,
        }
    }

    pub fn cores_busy(&self) -> f64 {
        self.machine.total().run.as_secs_f64() / self.window.as_secs_f64().max(1e-9)
    }
}

/// Named values from the gateway's `/metrics` (0 for one it does not show).
async fn metric_values<const N: usize>(base: &str, names: [&str; N]) -> [f64; N] {
    let text = match http().get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    names.map(|name| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    })
}

/// `emgw_poller_database_seconds` sum and count, and the running-task rows read.
async fn database_seconds(base: &str) -> (f64, f64, f64) {
    let [sum, count, rows] = metric_values(
        base,
        [
            "emgw_poller_database_seconds_sum",
            "emgw_poller_database_seconds_count",
            "emgw_poller_running_task_rows_read_total",
        ],
    )
    .await;
    (sum, count, rows)
}

/// `emgw_poller_tick_duration_seconds` and the EM task lists' `emgw_em_call_duration_seconds`,
/// sum and count of each.
async fn tick_seconds(base: &str) -> [f64; 4] {
    metric_values(
        base,
        [
            "emgw_poller_tick_duration_seconds_sum",
            "emgw_poller_tick_duration_seconds_count",
            "emgw_em_call_duration_seconds_sum{operation=\"GET /tasks\"}",
            "emgw_em_call_duration_seconds_count{operation=\"GET /tasks\"}",
        ],
    )
    .await
}

/// When each task was settled and its first webhook attempt started, from the gateway's
/// database (milliseconds since the epoch). A consumer has an event before its attempt is
/// recorded: waits (a while) until `expected` attempts are.
async fn settle_and_attempt_times(
    db: &PostgresDatabase,
    expected: usize,
) -> Result<HashMap<String, (i64, i64)>, String> {
    let mut conn = sqlx::PgConnection::connect(&db.url)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (recorded,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM webhook_attempts WHERE attempt = 1")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        if usize::try_from(recorded).unwrap_or(0) >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT t.id, t.finished_at, a.started_at FROM tasks t \
         JOIN webhook_events e ON e.task_id = t.id \
         JOIN webhook_deliveries d ON d.event_id = e.id \
         JOIN webhook_attempts a ON a.delivery_id = d.id AND a.attempt = 1 \
         WHERE t.finished_at IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| e.to_string())?;
    Ok(rows.into_iter().map(|(id, s, a)| (id, (s, a))).collect())
}

/// How long em-sim itself takes to answer one session's task list, as the poller reads it
/// (each session at its own turn of the interval), with `count` tasks in flight over four
/// sessions and nothing else running: a fresh em-sim, the tasks created straight on it, then
/// each round the four `GET /api/tasks` one after another, each read to the end. Answers the
/// mean and the slowest list.
async fn direct_lists(count: usize, task_ms: u64) -> Result<(Duration, Duration), String> {
    const ROUNDS: usize = 5;
    let sim = start_sim(task_ms).await?;
    let api = sim.api_url.clone();
    let tokens = direct_sessions(&api).await?;
    let created = direct_creates_on(&api, tokens.clone(), 64, count, "l-").await;
    if created.errors > 0 {
        return Err(format!("direct creates: {} errors", created.errors));
    }
    let mut lists = Vec::with_capacity(ROUNDS * tokens.len());
    for _ in 0..ROUNDS {
        for token in &tokens {
            let started = Instant::now();
            let read = async {
                let body = http()
                    .get(format!("{api}/tasks"))
                    .header("X-RestSvcSessionId", token.as_str())
                    .send()
                    .await?
                    .error_for_status()?;
                body.bytes().await
            };
            match tokio::time::timeout(Duration::from_secs(30), read).await {
                Ok(read) => read.map_err(|e| e.to_string())?,
                Err(_) => return Err("no answer in 30 s".to_string()),
            };
            lists.push(started.elapsed());
            tokio::time::sleep(INTERVAL / tokens.len().max(1) as u32).await;
        }
    }
    sim.process.kill().await;
    let mean = lists.iter().sum::<Duration>() / lists.len().max(1) as u32;
    let slowest = lists.iter().max().copied().unwrap_or_default();
    Ok((mean, slowest))
}

/// EM's tasks run long enough for every create to be submitted before the first finishes.
fn task_ms_for(count: usize) -> u64 {
    (count as u64 * 9 / 10).max(20_000)
}

/// Submits `count` creates, paced over a third of the task time so they also finish at that
/// pace, measures the window in which all are in flight, then waits for every webhook.
pub async fn measure(count: usize) -> Result<Size, String> {
    let task_ms = task_ms_for(count);
    let direct_lists = match direct_lists(count, task_ms).await {
        Ok(lists) => Some(lists),
        Err(e) => {
            eprintln!("em-bench: EM's own task lists not measured: {e}");
            None
        }
    };
    let sim = start_sim(task_ms).await?;
    let sim_api = sim.api_url.clone();
    let db = PostgresDatabase::create("emgw_bench_").await?;
    let (gateway, key) = start_gateway_plain(&sim_api, &db.url).await?;
    let base = gateway.base.clone();
    let receiver = Receiver::start(Answer::Ok);
    let resp = http()
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&key)
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 201 {
        return Err(format!("webhook subscription: {}", resp.status()));
    }
    let pace = count as f64 / (task_ms as f64 / 3000.0);
    let tables_at_start = db.table_activity().await?;
    let logons = |s: &Value| s["counters"]["logons"].as_u64().unwrap_or(0);
    let logons_at_start = logons(&sim_state(&sim_api).await);
    let sent: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let started = Instant::now();
    let submitted = gateway_creates(
        &base,
        &key,
        64,
        count,
        "s-",
        Sending {
            sent: Some(sent.clone()),
            pace: Some(pace),
            ..Sending::default()
        },
    )
    .await;
    let submit_took = started.elapsed();
    eprintln!(
        "  {count}: submitted {} in {:.1} s ({} errors)",
        submitted.count,
        submit_took.as_secs_f64(),
        submitted.errors
    );
    // All in flight from now until shortly before the first finishes; let a tick or two pass
    // so the submit's own work is out of the figures.
    tokio::time::sleep(INTERVAL * 2).await;
    let first_finish = started + Duration::from_millis(task_ms);
    let (state_before, db_before) = (sim_state(&sim_api).await, database_seconds(&base).await);
    let pids = (sim.process.pid(), gateway.process.pid());
    let machine_before = Machine::now(pids.0, Some(pids.1));
    let backends_before = sched::each(&db.client_backends().await?);
    let tables_before = db.table_activity().await?;
    let window_start = Instant::now();
    let wait = first_finish
        .saturating_duration_since(Instant::now())
        .saturating_sub(Duration::from_millis(500));
    tokio::time::sleep(wait).await;
    let (state_after, db_after) = (sim_state(&sim_api).await, database_seconds(&base).await);
    let machine = Machine::now(pids.0, Some(pids.1)).since(machine_before);
    let backends = sched::since(&db.client_backends().await?, &backends_before);
    let window = window_start.elapsed();
    // As the backends last reported them, at both ends alike (a backend reports within a
    // second of a transaction, or once idle for ten).
    let tables_after = db.table_activity().await?;
    let tables = TableActivity::since(&tables_after, &tables_before);
    let tables_submit = TableActivity::since(&tables_before, &tables_at_start);
    // A session the gateway logged on again leaves its tasks to be settled as orphans.
    eprintln!(
        "  {count}: EM logons: {} during the submit, {} in the window",
        logons(&state_before).saturating_sub(logons_at_start),
        logons(&state_after).saturating_sub(logons(&state_before)),
    );
    let (rss_in_flight_kib, _) = rss_kib(gateway.process.pid());
    let lists = |s: &Value| {
        s["counters"]["requests_by_route"]["GET /tasks"]
            .as_u64()
            .unwrap_or(0)
    };
    let sessions = state_after["sessions"].as_u64().unwrap_or(4).max(1) as f64;
    let intervals = (window.as_secs_f64() / INTERVAL.as_secs_f64()).max(1.0);
    let lists_per_session_per_interval =
        lists(&state_after).saturating_sub(lists(&state_before)) as f64 / intervals / sessions;
    let ticks = db_after.1 - db_before.1;
    let db_per_tick =
        Duration::from_secs_f64(((db_after.0 - db_before.0) / ticks.max(1.0)).max(0.0));
    let task_rows_per_tick = (db_after.2 - db_before.2) / ticks.max(1.0);

    let ticks_before = tick_seconds(&base).await;
    let finishing_before = Machine::now(pids.0, Some(pids.1));
    let finishing_started = Instant::now();
    let deadline = first_finish + Duration::from_secs(120);
    while receiver.count() < submitted.count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finishing = Machine::now(pids.0, Some(pids.1)).since(finishing_before);
    let finishing_took = finishing_started.elapsed();
    if let Ok(resp) = http().get(format!("{base}/metrics")).send().await {
        let text = resp.text().await.unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("emgw_tasks_settled_total"))
        {
            eprintln!("  {count}: {line}");
        }
    }
    let ticks_after = tick_seconds(&base).await;
    let mean = |sum: usize, count: usize| {
        Duration::from_secs_f64(
            ((ticks_after[sum] - ticks_before[sum])
                / (ticks_after[count] - ticks_before[count]).max(1.0))
            .max(0.0),
        )
    };
    let (tick_while_finishing, list_while_finishing) = (mean(0, 1), mean(2, 3));
    let (_, rss_peak_kib) = rss_kib(gateway.process.pid());
    let mut received: HashMap<String, i64> = HashMap::new();
    for r in receiver.received() {
        let Ok(event) = serde_json::from_str::<Value>(&r.body) else {
            continue;
        };
        if let Some(id) = event["data"]["id"].as_str() {
            received
                .entry(id.to_string())
                .or_insert(r.at_wall.timestamp_micros());
        }
    }
    let task_us = i64::try_from(task_ms).unwrap_or(i64::MAX / 1000) * 1000;
    let times = settle_and_attempt_times(&db, submitted.count)
        .await
        .unwrap_or_else(|e| {
            eprintln!("em-bench: the stages are not measured: {e}");
            HashMap::new()
        });
    let gap = |from: i64, to: i64| Duration::from_micros(u64::try_from(to - from).unwrap_or(0));
    let mut delays = Vec::new();
    let mut stages: [Vec<Duration>; 3] = Default::default();
    {
        let sent = sent.lock().map_err(|e| e.to_string())?;
        for (id, at) in sent.iter() {
            let Some(&got) = received.get(id) else {
                continue;
            };
            let finished = at + task_us;
            delays.push(gap(finished, got));
            if let Some(&(settled_ms, attempt_ms)) = times.get(id) {
                let (settled, attempted) = (settled_ms * 1000, attempt_ms * 1000);
                stages[0].push(gap(finished, settled));
                stages[1].push(gap(settled, attempted));
                stages[2].push(gap(attempted, got));
            }
        }
    }
    delays.sort();
    for stage in &mut stages {
        stage.sort();
    }
    gateway.kill().await;
    sim.process.kill().await;
    if std::env::var("EMBENCH_KEEP_DB").is_ok_and(|v| v == "1") {
        eprintln!("em-bench: kept the database: {}", db.url);
    } else if let Err(e) = db.drop().await {
        eprintln!("em-bench: {e}");
    }
    Ok(Size {
        count,
        task_ms,
        submitted,
        submit_took,
        window,
        ticks,
        db_per_tick,
        lists_per_session_per_interval,
        sessions,
        delays,
        stages,
        tick_while_finishing,
        list_while_finishing,
        direct_lists,
        rss_in_flight_kib,
        rss_peak_kib,
        task_rows_per_tick,
        machine,
        backends,
        tables,
        tables_submit,
        finishing,
        finishing_took,
    })
}

/// Measures each size; answers the targets table's rows and the report's section.
pub async fn run(sizes: &[usize]) -> Result<(String, String), String> {
    let mut measured = Vec::new();
    for &count in sizes {
        eprintln!("em-bench: phase scale: {count} tasks in flight");
        measured.push(measure(count).await?);
    }
    let (Some(small), Some(big)) = (measured.first(), measured.last()) else {
        return Ok((String::new(), String::new()));
    };
    let mut rows = String::new();
    // Submitting slower than em-sim finishes leaves no window with everything in flight.
    let measured_window = small.ticks >= 1.0 && big.ticks >= 1.0;
    let judged = |ok: bool| {
        if measured_window {
            verdict(ok)
        } else {
            "**not measured** (no window with every task in flight: the submit outlasted em-sim's task time)"
        }
    };
    let ratio = big.db_per_tick.as_secs_f64() / small.db_per_tick.as_secs_f64().max(1e-9);
    rows.push_str(&format!(
        "| database time per poller tick at {} in flight ≤ 1.5 × at {} | {} vs {} ms per tick (×{ratio:.2}) | {} |\n",
        big.count, small.count, ms(big.db_per_tick), ms(small.db_per_tick), judged(ratio <= 1.5)
    ));
    let (pg_big, pg_small) = (big.backends_per_tick(), small.backends_per_tick());
    let pg_ratio = pg_big.run.as_secs_f64() / pg_small.run.as_secs_f64().max(1e-9);
    rows.push_str(&format!(
        "| PostgreSQL's CPU per poller tick for the gateway (its backends, schedstat) at {} in flight ≤ 1.5 × at {} | {} vs {} ms per tick (×{pg_ratio:.2}); all PostgreSQL processes {} vs {} ms; running-task rows read per tick {:.0} vs {:.0} | {} |\n",
        big.count,
        small.count,
        ms(pg_big.run),
        ms(pg_small.run),
        ms(big.postgres_per_tick().run),
        ms(small.postgres_per_tick().run),
        big.task_rows_per_tick,
        small.task_rows_per_tick,
        judged(pg_ratio <= 1.5)
    ));
    let lists = big.lists_per_session_per_interval;
    rows.push_str(&format!(
        "| ≤ 1 EM task list per session per interval at {} in flight | {lists:.2} | {} |\n",
        big.count,
        judged(lists <= 1.05)
    ));
    let p95 = percentile(&big.delays, 0.95);
    rows.push_str(&format!(
        "| webhook p95 ≤ interval + 250 ms after EM finishes, at {} in flight | {} ms | {} |\n",
        big.count,
        ms(p95),
        verdict(p95 <= INTERVAL + Duration::from_millis(250))
    ));
    rows.push_str(&format!(
        "| gateway RSS < 64 MiB at {} in flight | {:.1} MiB in flight, peak {:.1} MiB | {} |\n",
        big.count,
        big.rss_in_flight_kib as f64 / 1024.0,
        big.rss_peak_kib as f64 / 1024.0,
        verdict(big.rss_peak_kib < 64 * 1024)
    ));
    let mut section = String::from(
        "\n## Tasks in flight at scale (phase `scale`)\n\nEach size on a fresh em-sim, gateway and database; creates paced over a third of em-sim's task time. Database time per tick is `emgw_poller_database_seconds` (the tick's statements, summed) over a window in which every task is in flight and none finishes.\n\n| in flight | submitted (errors) in | window | ticks | database ms per tick | task lists per session per interval | webhooks received | EM finished → received p50 / p95 / p99 ms | RSS in flight / peak MiB |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in &measured {
        section.push_str(&format!(
            "| {} | {} ({}) in {:.1} s | {:.1} s | {:.0} | {} | {:.2} ({} sessions) | {} | {} / {} / {} | {:.1} / {:.1} |\n",
            s.count,
            s.submitted.count,
            s.submitted.errors,
            s.submit_took.as_secs_f64(),
            s.window.as_secs_f64(),
            s.ticks,
            ms(s.db_per_tick),
            s.lists_per_session_per_interval,
            s.sessions,
            s.delays.len(),
            ms(percentile(&s.delays, 0.5)),
            ms(percentile(&s.delays, 0.95)),
            ms(percentile(&s.delays, 0.99)),
            s.rss_in_flight_kib as f64 / 1024.0,
            s.rss_peak_kib as f64 / 1024.0,
        ));
    }
    section.push_str("\nThe same window, from the kernel's schedstat of every thread (`/proc/PID/task/*/schedstat`), per tick: time each process ran on a core and time it waited, runnable, for one; cores busy is all of them (and the load generator) running over the window (there are 2). Rows read are `emgw_poller_running_task_rows_read_total`: running tasks' rows the poller's statements read.\n\n| in flight | cores busy | gateway run / wait ms | em-sim run / wait ms | PostgreSQL run / wait ms | of which the gateway's backends | running-task rows read |\n|---|---|---|---|---|---|---|\n");
    for s in &measured {
        let per = |d: Duration| ms(Duration::from_secs_f64(d.as_secs_f64() / s.ticks.max(1.0)));
        let pair = |x: Sched| format!("{} / {}", per(x.run), per(x.wait));
        section.push_str(&format!(
            "| {} | {:.2} | {} | {} | {} | {} | {:.0} |\n",
            s.count,
            s.cores_busy(),
            pair(s.machine.gateway),
            pair(s.machine.sim),
            pair(s.machine.postgres),
            pair(s.backends),
            s.task_rows_per_tick
        ));
    }
    section.push_str(&format!(
        "\nWhat the statements did over the same window, per tick, from PostgreSQL's own counters (`pg_stat_user_tables`; `*` is the database: transactions, rows returned, rows fetched), tables with any activity; and, for the submit (from its start to the window's), the same in total.\n\n| in flight | table | {} |\n|---|---|{}\n",
        TableActivity::NAMES.join(" | "),
        "---|".repeat(TableActivity::NAMES.len())
    ));
    for s in &measured {
        for (when, tables, per) in [
            ("window, per tick", &s.tables, s.ticks.max(1.0)),
            ("submit, total", &s.tables_submit, 1.0),
        ] {
            for t in tables.iter() {
                let counts: Vec<String> = t
                    .counts
                    .iter()
                    .map(|&c| format!("{:.0}", c as f64 / per))
                    .collect();
                section.push_str(&format!(
                    "| {} ({when}) | `{}` | {} |\n",
                    s.count,
                    t.table,
                    counts.join(" | ")
                ));
            }
        }
    }
    section.push_str("\nWhere the time from EM finished to webhook received goes, per task: EM finished (sent + em-sim's task time) → settled (the task's `finished_at`) → first attempt started (its `started_at`) → received by the consumer; and the poller's mean tick and mean EM task list (read and skimmed) while the tasks finish. The poller reads each session's list at its own turn of the interval. EM's own answer is one session's list read straight from a fresh em-sim holding as many tasks, the four sessions one after another with nothing else running (five rounds: mean / slowest list): a task that finishes just after its session's list was taken waits for that session's next turn, an interval later, and then for EM's answer, so p95 cannot be below 0.95 × interval + that answer.\n\n| in flight | finished → settled p50 / p95 ms | settled → attempt p50 / p95 ms | attempt → received p50 / p95 ms | mean tick / task list while finishing ms | EM's own list of one session, direct, mean / slowest ms | floor for p95: 0.95 × interval + EM's list ms |\n|---|---|---|---|---|---|---|\n");
    for s in &measured {
        let pair =
            |v: &[Duration]| format!("{} / {}", ms(percentile(v, 0.5)), ms(percentile(v, 0.95)));
        let direct = match s.direct_lists {
            Some((mean, slowest)) => (
                format!("{} / {}", ms(mean), ms(slowest)),
                ms(INTERVAL.mul_f64(0.95) + mean),
            ),
            None => ("not measured".to_string(), "—".to_string()),
        };
        section.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} | {} | {} |\n",
            s.count,
            pair(&s.stages[0]),
            pair(&s.stages[1]),
            pair(&s.stages[2]),
            ms(s.tick_while_finishing),
            ms(s.list_while_finishing),
            direct.0,
            direct.1
        ));
    }
    section.push_str("\nWhile the tasks finish (from the window's end until the last webhook is received): cores busy, of the machine's 2, and each process's CPU per task finished (schedstat). Near 2 cores busy, every step above waits for a core.\n\n| in flight | took s | cores busy | CPU per task µs: gateway / em-sim / PostgreSQL / em-bench (load generator, receiver) |\n|---|---|---|---|\n");
    for s in &measured {
        let per_task = |x: Sched| {
            format!(
                "{:.0}",
                x.run.as_secs_f64() * 1e6 / s.submitted.count.max(1) as f64
            )
        };
        section.push_str(&format!(
            "| {} | {:.1} | {:.2} | {} / {} / {} / {} |\n",
            s.count,
            s.finishing_took.as_secs_f64(),
            s.finishing.total().run.as_secs_f64() / s.finishing_took.as_secs_f64().max(1e-9),
            per_task(s.finishing.gateway),
            per_task(s.finishing.sim),
            per_task(s.finishing.postgres),
            per_task(s.finishing.bench)
        ));
    }
    section.push_str(&format!(
        "\nem-sim's task time: {} s at {} in flight, {} s at {}.\n",
        small.task_ms / 1000,
        small.count,
        big.task_ms / 1000,
        big.count
    ));
    Ok((rows, section))
}

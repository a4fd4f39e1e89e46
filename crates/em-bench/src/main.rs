//! `em-bench`: the benchmark harness. Starts `em-sim` and `em-gateway` (release builds, separate
//! processes), drives them with its own load generator and webhook receiver, and writes
//! `BENCHMARKS.md` with the machine, the commands and every figure beside its target.
//!
//! Run: `cargo build --release --workspace && target/release/em-bench` (PostgreSQL as for the
//! tests: `EMGW_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use emgw_test_support::{Answer, GatewayProcess, PostgresDatabase, Receiver, SimProcess};
use serde_json::{Value, json};
use tokio::process::Command;

mod scale;
mod sim_scale;

/// Measures em-gateway against em-sim and writes BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "em-bench")]
struct Args {
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// A small run (seconds, not minutes) to check that the harness works.
    #[arg(long)]
    quick: bool,
    /// Tasks in flight at once in the scale phase.
    #[arg(long, default_value_t = 10_000)]
    in_flight: usize,
    /// Phases to run, comma-separated: `core` (phases 1–4), `scale` (in flight at each of
    /// --scale-sizes), `sim-scale` (em-sim empty vs full).
    #[arg(long, value_delimiter = ',', default_value = "core,scale,sim-scale")]
    phases: Vec<String>,
    /// Tasks in flight in phase `scale`: the first is the baseline the last is compared with.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    scale_sizes: Vec<usize>,
    /// Gateways em-sim holds in phase `sim-scale`, and the creates measured on it.
    #[arg(long, default_value_t = 100_000)]
    sim_gateways: usize,
    #[arg(long, default_value_t = 20_000)]
    sim_creates: usize,
}

impl Args {
    fn runs(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

const VBR01: &str = "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d";
const SIM_USER: &str = "bench";
const SIM_PASSWORD: &str = "bench-password";

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("em-bench: {e}");
        std::process::exit(1);
    }
}

fn bin(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = dir
        .parent()
        .map(|d| d.join(name))
        .ok_or("no binary directory")?;
    if !path.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release --workspace` first",
            path.display()
        ));
    }
    Ok(path)
}

fn http() -> reqwest::Client {
    let tls = em_gateway::em::tls::client_config(&Default::default()).expect("tls");
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(512)
        .build()
        .expect("a client")
}

async fn start_sim(task_ms: u64) -> Result<SimProcess, String> {
    let task_ms = task_ms.to_string();
    let args = [
        "--username",
        SIM_USER,
        "--password",
        SIM_PASSWORD,
        "--task-ms",
        &task_ms,
        "--workers",
        "1",
    ];
    SimProcess::start(&bin("em-sim")?, &args).await
}

async fn start_gateway(sim_api: &str, database_url: &str) -> Result<GatewayProcess, String> {
    let vars: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("EMGW_EM_URL", sim_api),
        ("EMGW_EM_USERNAME", SIM_USER),
        ("EMGW_EM_PASSWORD", SIM_PASSWORD),
        ("EMGW_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("RUST_LOG", "warn,em_gateway=info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Ok(GatewayProcess::start(&bin("em-gateway")?, &vars).await)
}

async fn api_key(database_url: &str) -> Result<String, String> {
    let out = Command::new(bin("em-gateway")?)
        .args(["keys", "create", "--name", "bench", "--scope", "admin"])
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(str::to_string)
        .ok_or_else(|| "no key printed".into())
}

async fn sim_state(api: &str) -> Value {
    let base = api.trim_end_matches("/api");
    match http().get(format!("{base}/_sim/state")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The gateway's own EM logons, from its /metrics (em-sim's counter also counts the bench's).
async fn gateway_logons(base: &str) -> u64 {
    let text = match http().get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .filter(|l| l.starts_with("emgw_em_logons_total{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[derive(Debug, Clone, Default)]
struct Run {
    p50: Duration,
    p99: Duration,
    per_second: f64,
    count: usize,
    errors: usize,
}

/// Sends `total` requests from `clients` concurrent clients; `request(i)` makes the i-th. With
/// a `pace` (requests per second), the i-th is not sent before `i / pace` seconds.
async fn load<F, Fut>(clients: usize, total: usize, pace: Option<f64>, request: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (request, next) = (request.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(pace) = pace {
                    let due = started + Duration::from_secs_f64(i as f64 / pace);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                if request(i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((lat, e)) = w.await {
            all.extend(lat);
            errors += e;
        }
    }
    let wall = started.elapsed();
    all.sort();
    Run {
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        per_second: all.len() as f64 / wall.as_secs_f64(),
        count: all.len(),
        errors,
    }
}

/// Direct EM: log on a few sessions and POST EM's XML.
async fn direct_creates(
    api: &str,
    clients: usize,
    total: usize,
    prefix: &str,
) -> Result<Run, String> {
    let pace = None;
    let client = http();
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let resp = client
            .post(format!("{api}/sessionMngr/?v=v1_7"))
            .basic_auth(SIM_USER, Some(SIM_PASSWORD))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let token = resp
            .headers()
            .get("x-restsvcsessionid")
            .and_then(|v| v.to_str().ok())
            .ok_or("no token")?
            .to_string();
        tokens.push(token);
    }
    let tokens = Arc::new(tokens);
    let url = format!("{api}/cloud/gateways");
    let prefix = prefix.to_string();
    Ok(load(clients, total, pace, move |i| {
        let (client, tokens, url) = (client.clone(), tokens.clone(), url.clone());
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><CreateCloudGatewaySpec xmlns="http://www.veeam.com/ent/v1.0"><ServerHostName>{prefix}{i}.bench</ServerHostName><ExternalPort>6180</ExternalPort><NetworkType>Direct</NetworkType><InternalPort>6180</InternalPort><BackupServerUid>{VBR01}</BackupServerUid></CreateCloudGatewaySpec>"#
        );
        async move {
            client
                .post(url)
                .header("X-RestSvcSessionId", tokens[i % tokens.len()].as_str())
                .header("Content-Type", "application/xml")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 202)
        }
    })
    .await)
}

/// Through the gateway: POST JSON; `sent` records when each task's request was sent (wall
/// clock, µs), at the latest the moment EM accepted it.
async fn gateway_creates(
    base: &str,
    key: &str,
    clients: usize,
    total: usize,
    prefix: &str,
    sent: Option<Arc<Mutex<HashMap<String, i64>>>>,
    pace: Option<f64>,
) -> Run {
    let client = http();
    let url = format!("{base}/v1/cloud-gateways");
    let (key, prefix) = (key.to_string(), prefix.to_string());
    load(clients, total, pace, move |i| {
        let (client, url, key, sent) = (client.clone(), url.clone(), key.clone(), sent.clone());
        let body =
            json!({"backup_server_uid": VBR01, "server_host_name": format!("{prefix}{i}.bench")});
        async move {
            let at = chrono::Utc::now().timestamp_micros();
            let Ok(resp) = client.post(url).bearer_auth(key).json(&body).send().await else {
                return false;
            };
            if resp.status() != 202 {
                return false;
            }
            if let Some(sent) = sent
                && let Ok(task) = resp.json::<Value>().await
                && let Some(id) = task["id"].as_str()
            {
                sent.lock().map(|mut m| m.insert(id.to_string(), at)).ok();
            }
            true
        }
    })
    .await
}

/// What one run with many tasks in flight measured.
struct InFlightRun {
    submitted: Run,
    submit_took: Duration,
    /// How long all tasks were running at once, and what EM saw meanwhile.
    window: Duration,
    task_lists_per_interval: f64,
    em_requests_per_interval: f64,
    sessions: f64,
    /// EM finished → webhook received, EM finished → settled, settled → received; sorted.
    delays: Vec<Duration>,
    settle_lags: Vec<Duration>,
    deliver_lags: Vec<Duration>,
    rss_in_flight: u64,
    rss_end: u64,
    rss_peak: u64,
    logons: u64,
    metrics: Vec<String>,
}

/// Submits `count` creates (at `pace` per second, or as fast as they are taken) whose EM tasks
/// run `task_ms`, with one webhook subscription, and waits for every webhook.
async fn in_flight_run(
    count: usize,
    task_ms: u64,
    pace: Option<f64>,
) -> Result<InFlightRun, String> {
    let sim = start_sim(task_ms).await?;
    let sim_api = sim.api_url.clone();
    let db = PostgresDatabase::create("emgw_bench_").await?;
    let key = api_key(&db.url).await?;
    let gateway = start_gateway(&sim_api, &db.url).await?;
    let base = gateway.base.clone();
    let receiver = Receiver::start(Answer::Ok);
    let hook_url = receiver.url.clone();
    let resp = http()
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&key)
        .json(&json!({"url": hook_url}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 201 {
        return Err(format!("webhook subscription: {}", resp.status()));
    }
    let sent: Arc<Mutex<HashMap<String, i64>>> = Arc::new(Mutex::new(HashMap::new()));
    let submit_started = Instant::now();
    let submitted = gateway_creates(&base, &key, 64, count, "f-", Some(sent.clone()), pace).await;
    let submit_took = submit_started.elapsed();
    eprintln!(
        "  submitted {} in {:.1} s ({} errors)",
        submitted.count,
        submit_took.as_secs_f64(),
        submitted.errors
    );
    // Count EM requests over a window in which every task is still running: from the last
    // submit to shortly before the first task finishes.
    let window_end = submit_started + Duration::from_millis(task_ms);
    let state_before = sim_state(&sim_api).await;
    let window_start = Instant::now();
    let wait = window_end
        .saturating_duration_since(Instant::now())
        .saturating_sub(Duration::from_millis(500));
    tokio::time::sleep(wait).await;
    let state_after = sim_state(&sim_api).await;
    let window = window_start.elapsed();
    let lists = |s: &Value| {
        s["counters"]["requests_by_route"]["GET /tasks"]
            .as_u64()
            .unwrap_or(0)
    };
    let all_requests = |s: &Value| s["counters"]["requests"].as_u64().unwrap_or(0);
    let intervals = (window.as_secs_f64() / 1.0).max(1.0);
    let em_requests_per_interval =
        all_requests(&state_after).saturating_sub(all_requests(&state_before)) as f64 / intervals;
    let task_lists_per_interval =
        lists(&state_after).saturating_sub(lists(&state_before)) as f64 / intervals;
    let sessions = state_after["sessions"].as_u64().unwrap_or(4).max(1) as f64;
    let (rss_in_flight, _) = rss_kib(gateway.process.pid());

    // Wait for every webhook.
    let deadline = Instant::now() + Duration::from_millis(task_ms) + Duration::from_secs(120);
    loop {
        if receiver.count() >= submitted.count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rss_end, rss_peak) = rss_kib(gateway.process.pid());
    // Task id → (received, settled) on the wall clock, µs; the first event of each task.
    let mut received: HashMap<String, (i64, i64)> = HashMap::new();
    for r in receiver.received() {
        let Ok(event) = serde_json::from_str::<Value>(&r.body) else {
            continue;
        };
        let Some(id) = event["data"]["id"].as_str() else {
            continue;
        };
        let at = r.at_wall.timestamp_micros();
        let settled = event["data"]["finished_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(at, |t| t.timestamp_micros());
        received.entry(id.to_string()).or_insert((at, settled));
    }
    let task_us = i64::try_from(task_ms).unwrap_or(i64::MAX / 1000) * 1000;
    let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
    let (mut delays, mut settle_lags, mut deliver_lags) = (Vec::new(), Vec::new(), Vec::new());
    {
        let sent = sent.lock().map_err(|e| e.to_string())?;
        for (id, at) in sent.iter() {
            if let Some((received, settled)) = received.get(id) {
                let finished = at + task_us;
                delays.push(micros(received - finished));
                settle_lags.push(micros(settled - finished));
                deliver_lags.push(micros(received - settled));
            }
        }
    }
    delays.sort();
    settle_lags.sort();
    deliver_lags.sort();
    let logons = gateway_logons(&base).await;
    let metrics = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .unwrap_or_default();
    gateway.kill().await;
    sim.process.kill().await;
    if let Err(e) = db.drop().await {
        eprintln!("em-bench: {e}");
    }
    let wanted = |l: &str| {
        [
            "emgw_em_logons_total",
            "emgw_tasks_settled_total",
            "emgw_webhook_attempts_total",
            "emgw_poller_tick_duration_seconds_sum",
            "emgw_poller_tick_duration_seconds_count",
            "emgw_webhook_delay_seconds_sum",
            "emgw_webhook_delay_seconds_count",
        ]
        .iter()
        .any(|m| l.starts_with(m))
            || (l.starts_with("emgw_em_call_duration_seconds_sum")
                || l.starts_with("emgw_em_call_duration_seconds_count"))
                && l.contains("GET /tasks\"")
    };
    Ok(InFlightRun {
        submitted,
        submit_took,
        window,
        task_lists_per_interval,
        em_requests_per_interval,
        sessions,
        delays,
        settle_lags,
        deliver_lags,
        rss_in_flight,
        rss_end,
        rss_peak,
        logons,
        metrics: metrics
            .lines()
            .filter(|l| wanted(l))
            .map(str::to_string)
            .collect(),
    })
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} memory, Linux; PostgreSQL on the same machine")
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

async fn run(args: Args) -> Result<(), String> {
    let mut report = String::new();
    let started_at = chrono::Utc::now();
    // Phases in their own modules: target rows and a section each.
    let mut extra = (String::new(), String::new());
    if args.runs("scale") {
        let (rows, section) = scale::run(&args.scale_sizes).await?;
        extra = (extra.0 + &rows, extra.1 + &section);
    }
    if args.runs("sim-scale") {
        let (rows, section) = sim_scale::run(args.sim_gateways, args.sim_creates).await?;
        extra = (extra.0 + &rows, extra.1 + &section);
    }
    if !args.runs("core") {
        let head = format!(
            "# Benchmarks (phases {})\n\nWritten by `em-bench --phases {}` on {} UTC.\n\n**Machine**: {}.\n\n## Targets\n\n| target | measured | |\n|---|---|---|\n",
            args.phases.join(","),
            args.phases.join(","),
            started_at.format("%Y-%m-%d %H:%M"),
            machine()
        );
        let report = format!("{head}{}{}", extra.0, extra.1);
        std::fs::write(&args.out, &report).map_err(|e| format!("{}: {e}", args.out.display()))?;
        print!("{report}");
        return Ok(());
    }
    let scale = if args.quick { 10 } else { 1 };
    let in_flight = if args.quick {
        args.in_flight.min(500)
    } else {
        args.in_flight
    };

    // --- Phase 1 and 2: latency, throughput, task reads ------------------------------------
    eprintln!("em-bench: phase 1: create latency, direct and through the gateway");
    let sim = start_sim(60_000).await?;
    let sim_api = sim.api_url.clone();
    let db = PostgresDatabase::create("emgw_bench_").await?;
    let key = api_key(&db.url).await?;
    let gateway = start_gateway(&sim_api, &db.url).await?;
    let base = gateway.base.clone();
    // Warm both paths up.
    direct_creates(&sim_api, 4, 50, "warm-d").await?;
    gateway_creates(&base, &key, 4, 50, "warm-g", None, None).await;

    let mut rows = Vec::new();
    for clients in [1usize, 32, 256] {
        let total = (if clients == 1 { 1000 } else { 5000 }) / scale;
        let direct = direct_creates(&sim_api, clients, total, &format!("d{clients}-")).await?;
        let through = gateway_creates(
            &base,
            &key,
            clients,
            total,
            &format!("g{clients}-"),
            None,
            None,
        )
        .await;
        eprintln!(
            "  {clients:>3} clients: direct p50 {} ms, gateway p50 {} ms",
            ms(direct.p50),
            ms(through.p50)
        );
        rows.push((clients, direct, through));
    }

    eprintln!("em-bench: phase 2: task reads");
    let tasks: Value = http()
        .get(format!("{base}/v1/tasks?limit=1"))
        .bearer_auth(&key)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let task_id = tasks["items"][0]["id"]
        .as_str()
        .ok_or("no task to read")?
        .to_string();
    let reads = {
        let client = http();
        let url = format!("{base}/v1/tasks/{task_id}");
        let key = key.clone();
        load(32, 100_000 / scale, None, move |_| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            async move {
                client
                    .get(url)
                    .bearer_auth(key)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await
    };
    eprintln!(
        "  {:.0} reads/s, p50 {} ms",
        reads.per_second,
        ms(reads.p50)
    );
    let logons_phase1 = gateway_logons(&base).await;
    gateway.kill().await;
    sim.process.kill().await;
    if let Err(e) = db.drop().await {
        eprintln!("em-bench: {e}");
    }

    // --- Phase 3 and 4: many tasks in flight ---------------------------------------------------
    let task_ms: u64 = if args.quick { 5_000 } else { 30_000 };
    // Submitted over a third of the task time, so they also finish at that pace.
    let pace = in_flight as f64 / (task_ms as f64 / 3000.0);
    eprintln!("em-bench: phase 3: {in_flight} tasks in flight, submitted at {pace:.0}/s");
    let paced = in_flight_run(in_flight, task_ms, Some(pace)).await?;
    eprintln!("em-bench: phase 4: {in_flight} tasks submitted as fast as the gateway takes them");
    let burst = in_flight_run(in_flight, task_ms, None).await?;

    // --- Report ------------------------------------------------------------------------------
    let (_, d32, g32) = rows
        .iter()
        .find(|(c, _, _)| *c == 32)
        .cloned()
        .ok_or("no 32-client run")?;
    let add_p50 = g32.p50.saturating_sub(d32.p50);
    let add_p99 = g32.p99.saturating_sub(d32.p99);
    let ratio = g32.per_second / d32.per_second.max(1.0);
    let p95_delay = percentile(&paced.delays, 0.95);
    let lists_per_session = paced.task_lists_per_interval / paced.sessions;
    report.push_str("# Benchmarks\n\n");
    report.push_str(&format!(
        "Written by `em-bench`{} on {} UTC.\n\n",
        if args.quick {
            " --quick (a small smoke run: figures are indicative only)"
        } else {
            ""
        },
        started_at.format("%Y-%m-%d %H:%M")
    ));
    report.push_str(&format!("**Machine**: {}.\n\n", machine()));
    report.push_str("**Command**: `cargo build --release --workspace && target/release/em-bench` — it starts `target/release/em-sim` and `target/release/em-gateway serve` (PostgreSQL on the same host over loopback with `sslmode=disable`, a fresh database per phase) as separate processes on loopback, and drives them with its own HTTP load generator and webhook receiver; all share the machine's 2 cores.\n\n");
    report.push_str("## Targets\n\n| target | measured | |\n|---|---|---|\n");
    report.push_str(&extra.0);
    report.push_str(&format!("| gateway adds ≤ 1 ms at p50 over direct em-sim (create, 32 clients) | +{} ms ({} vs {} ms) | {} |\n", ms(add_p50), ms(g32.p50), ms(d32.p50), verdict(add_p50 <= Duration::from_millis(1))));
    report.push_str(&format!(
        "| gateway adds ≤ 5 ms at p99 (create, 32 clients) | +{} ms ({} vs {} ms) | {} |\n",
        ms(add_p99),
        ms(g32.p99),
        ms(d32.p99),
        verdict(add_p99 <= Duration::from_millis(5))
    ));
    report.push_str(&format!("| through-gateway throughput ≥ half of direct (32 clients) | {:.0} vs {:.0} creates/s ({:.2}) | {} |\n", g32.per_second, d32.per_second, ratio, verdict(ratio >= 0.5)));
    report.push_str(&format!(
        "| task reads ≥ 10,000/s on Postgres | {:.0}/s | {} |\n",
        reads.per_second,
        verdict(reads.per_second >= 10_000.0)
    ));
    report.push_str(&format!("| ≤ 1 EM request per session per poll interval at {in_flight} in flight | {:.2} task lists per session per interval ({:.2} EM requests of any kind per interval, {} sessions) | {} |\n", lists_per_session, paced.em_requests_per_interval, paced.sessions, verdict(lists_per_session <= 1.05)));
    report.push_str(&format!(
        "| webhook p95 ≤ poll interval + 250 ms after EM finishes | {} ms | {} |\n",
        ms(p95_delay),
        verdict(p95_delay <= Duration::from_millis(1250))
    ));
    let rss_peak = paced.rss_peak.max(burst.rss_peak);
    report.push_str(&format!("| gateway RSS < 64 MiB at {in_flight} in flight | {:.1} MiB while in flight, peak {:.1} MiB (phase 4: {:.1}) | {} |\n", paced.rss_in_flight as f64 / 1024.0, paced.rss_peak as f64 / 1024.0, burst.rss_peak as f64 / 1024.0, verdict(rss_peak < 64 * 1024)));
    let logons_ok = [logons_phase1, paced.logons, burst.logons]
        .iter()
        .all(|l| *l <= 4);
    report.push_str(&format!("| EM logons ≤ pool size (4) | {logons_phase1} in phases 1–2, {} in phase 3, {} in phase 4 | {} |\n\n", paced.logons, burst.logons, verdict(logons_ok)));
    report.push_str("## Create a gateway: direct to em-sim and through the gateway\n\n");
    report.push_str("| clients | direct p50 / p99 ms | direct creates/s | gateway p50 / p99 ms | gateway creates/s | throughput ratio | errors |\n|---|---|---|---|---|---|---|\n");
    for (c, d, g) in &rows {
        report.push_str(&format!(
            "| {c} | {} / {} | {:.0} | {} / {} | {:.0} | {:.2} | {} / {} |\n",
            ms(d.p50),
            ms(d.p99),
            d.per_second,
            ms(g.p50),
            ms(g.p99),
            g.per_second,
            g.per_second / d.per_second.max(1.0),
            d.errors,
            g.errors
        ));
    }
    report.push_str(&format!(
        "\n## Task reads\n\n`GET /v1/tasks/{{id}}`, 32 clients, {} requests: {:.0}/s, p50 {} ms, p99 {} ms, {} errors.\n",
        reads.count, reads.per_second, ms(reads.p50), ms(reads.p99), reads.errors
    ));
    report.push_str(&format!(
        "\n## {in_flight} tasks in flight (phase 3)\n\nem-sim tasks run {} s. {} tasks submitted at {pace:.0}/s, in {:.1} s ({} errors), so they also finish at that pace. Over {:.1} s with all of them running: {:.2} EM task-list calls per poll interval over {} sessions, {:.2} EM requests of any kind per interval. Gateway RSS {:.1} MiB in flight, {:.1} MiB at the end, peak {:.1} MiB.\n\n",
        task_ms / 1000, paced.submitted.count, paced.submit_took.as_secs_f64(), paced.submitted.errors, paced.window.as_secs_f64(), paced.task_lists_per_interval, paced.sessions, paced.em_requests_per_interval,
        paced.rss_in_flight as f64 / 1024.0, paced.rss_end as f64 / 1024.0, paced.rss_peak as f64 / 1024.0
    ));
    report.push_str("| webhooks | received | EM finished → received p50 / p95 / p99 ms | EM finished → settled p50 / p95 ms | settled → received p50 / p95 ms |\n|---|---|---|---|---|\n");
    for (name, r) in [
        (format!("phase 3: submitted at {pace:.0}/s"), &paced),
        (
            format!(
                "phase 4: all submitted at once ({:.1} s)",
                burst.submit_took.as_secs_f64()
            ),
            &burst,
        ),
    ] {
        report.push_str(&format!(
            "| {name} | {} of {} | {} / {} / {} | {} / {} | {} / {} |\n",
            r.delays.len(),
            r.submitted.count,
            ms(percentile(&r.delays, 0.5)),
            ms(percentile(&r.delays, 0.95)),
            ms(percentile(&r.delays, 0.99)),
            ms(percentile(&r.settle_lags, 0.5)),
            ms(percentile(&r.settle_lags, 0.95)),
            ms(percentile(&r.deliver_lags, 0.5)),
            ms(percentile(&r.deliver_lags, 0.95)),
        ));
    }
    report.push_str("\nEM finishing is taken as the moment the bench sent the create plus em-sim's task time; EM accepted it a little later, so the delays are slight overestimates. Settled is the task's `finished_at` in the webhook's payload. Phase 4 is not a target: it shows how fast a burst is drained when every task finishes within a couple of seconds, far beyond what a real EM finishes.\n");
    report.push_str(&format!(
        "\nThe gateway's own counters at the end of phase 3:\n\n```\n{}\n```\n",
        paced.metrics.join("\n")
    ));
    report.push_str(&extra.1);
    if let Ok(notes) = std::fs::read_to_string("BENCHMARKS.notes.md") {
        report.push('\n');
        report.push_str(&notes);
    }
    std::fs::write(&args.out, &report).map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!("em-bench: wrote {}", args.out.display());
    print!("{report}");
    Ok(())
}

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

mod cost;
mod fairness;
mod front;
mod scale;
mod sched;
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
    /// Phases to run, comma-separated: `front` (in front of a slow EM), `cost` (against
    /// /healthz), `fairness`, `scale` (in flight at each of --scale-sizes), `sim-scale` (em-sim
    /// empty vs full), `in-flight` (the earlier phases 3 and 4: one size, paced and as a burst).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "front,cost,fairness,scale,sim-scale"
    )]
    phases: Vec<String>,
    /// EM's answer time in the front phase, ms.
    #[arg(long, default_value_t = 20)]
    em_latency_ms: u64,
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
    start_sim_with(task_ms, &[]).await
}

async fn start_sim_with(task_ms: u64, extra: &[&str]) -> Result<SimProcess, String> {
    let task_ms = task_ms.to_string();
    let mut args = vec![
        "--username",
        SIM_USER,
        "--password",
        SIM_PASSWORD,
        "--task-ms",
        &task_ms,
        "--workers",
        "1",
    ];
    args.extend_from_slice(extra);
    SimProcess::start(&bin("em-sim")?, &args).await
}

async fn start_gateway_with(
    sim_api: &str,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Result<GatewayProcess, String> {
    let mut vars: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("EMGW_EM_URL", sim_api),
        ("EMGW_EM_USERNAME", SIM_USER),
        ("EMGW_EM_PASSWORD", SIM_PASSWORD),
        ("EMGW_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("RUST_LOG", "warn,em_gateway=info"),
        ("EMGW_SECRET_KEY", emgw_test_support::TEST_SECRET_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    // For experiments: the bench's own EMGW_ settings reach every gateway it starts (a profile
    // with one setting changed is one variable away).
    vars.extend(std::env::vars().filter(|(k, _)| k.starts_with("EMGW_")));
    Ok(GatewayProcess::start(&bin("em-gateway")?, &vars).await)
}

/// A running `em-floor` (the floor under the gateway's costs) and its base URL.
struct FloorProcess {
    process: emgw_test_support::Process,
    base: String,
}

impl FloorProcess {
    /// `em-floor` in front of em-sim at `sim_api`, on the database at `database_url`, with
    /// `sessions` EM logon sessions.
    async fn start(sim_api: &str, database_url: &str, sessions: usize) -> Result<Self, String> {
        let env: Vec<(String, String)> = [
            ("FLOOR_DATABASE_URL", database_url),
            ("FLOOR_EM_URL", sim_api),
            ("FLOOR_EM_USERNAME", SIM_USER),
            ("FLOOR_EM_PASSWORD", SIM_PASSWORD),
            ("FLOOR_EM_SESSIONS", &sessions.to_string()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let process = emgw_test_support::Process::start(
            &bin("em-floor")?,
            &[],
            &env,
            "em-floor listening on",
        )
        .await?;
        let base = process
            .announced
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(FloorProcess { process, base })
    }
}

/// Creates through `em-floor`: the same JSON as through the gateway, without a key.
async fn floor_creates(base: &str, clients: usize, total: usize, prefix: &str) -> Run {
    let client = http();
    let url = format!("{base}/creates");
    let prefix = prefix.to_string();
    load(clients, total, None, move |i| {
        let (client, url) = (client.clone(), url.clone());
        let body =
            json!({"backup_server_uid": VBR01, "server_host_name": format!("{prefix}{i}.bench")});
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 202)
        }
    })
    .await
}

/// A gateway reaching Postgres through the URL as a user writes it (no `sslmode`), and an admin
/// key for it.
async fn start_gateway_plain(
    sim_api: &str,
    database_url: &str,
) -> Result<(GatewayProcess, String), String> {
    start_gateway_plain_with(sim_api, database_url, &[]).await
}

async fn start_gateway_plain_with(
    sim_api: &str,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Result<(GatewayProcess, String), String> {
    let plain = database_url.replace("?sslmode=disable", "");
    let key = api_key(&plain).await?;
    Ok((start_gateway_with(sim_api, &plain, extra).await?, key))
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

impl Run {
    /// Rate and latency, as the progress lines print them.
    fn brief(&self) -> String {
        format!(
            "{:.0}/s p50 {:.2} p99 {:.2} ms",
            self.per_second,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
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
    let tokens = direct_sessions(api).await?;
    Ok(direct_creates_on(api, tokens, clients, total, prefix).await)
}

/// Four EM logon sessions of em-sim's, as the gateway holds by default.
async fn direct_sessions(api: &str) -> Result<Vec<String>, String> {
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
    Ok(tokens)
}

/// Creates straight on em-sim, spread over `tokens`' sessions in turn.
async fn direct_creates_on(
    api: &str,
    tokens: Vec<String>,
    clients: usize,
    total: usize,
    prefix: &str,
) -> Run {
    let pace = None;
    let client = http();
    let tokens = Arc::new(tokens);
    let url = format!("{api}/cloud/gateways");
    let prefix = prefix.to_string();
    load(clients, total, pace, move |i| {
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
    .await
}

/// How [`gateway_creates`] sends, beyond the plain creates.
#[derive(Default)]
struct Sending {
    /// Records when each task's request was sent (wall clock, µs), at the latest the moment
    /// EM accepted it.
    sent: Option<Arc<Mutex<HashMap<String, i64>>>>,
    /// Creates per second, at most.
    pace: Option<f64>,
    /// Each create under an `Idempotency-Key` of its own, as a portal that retries sends it.
    keyed: bool,
}

/// Through the gateway: POST JSON.
async fn gateway_creates(
    base: &str,
    key: &str,
    clients: usize,
    total: usize,
    prefix: &str,
    sending: Sending,
) -> Run {
    let client = http();
    let url = format!("{base}/v1/cloud-gateways");
    let (key, prefix) = (key.to_string(), prefix.to_string());
    let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let Sending { sent, pace, keyed } = sending;
    load(clients, total, pace, move |i| {
        let (client, url, key, sent) = (client.clone(), url.clone(), key.clone(), sent.clone());
        let told = told.clone();
        // The first few failures are shown: a count alone cannot tell a refusal from a fault.
        let tell = move |what: String| {
            if told.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 {
                eprintln!("em-bench: create {i} failed: {what}");
            }
        };
        let body =
            json!({"backup_server_uid": VBR01, "server_host_name": format!("{prefix}{i}.bench")});
        let idempotency_key = keyed.then(|| format!("{prefix}{i}"));
        async move {
            let at = chrono::Utc::now().timestamp_micros();
            let mut request = client.post(url).bearer_auth(key).json(&body);
            if let Some(k) = idempotency_key {
                request = request.header("Idempotency-Key", k);
            }
            let resp = match request.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    // reqwest's message leaves out the cause ("error sending request"): the
                    // chain says whether the connection was refused, reset or closed early.
                    let mut what = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        what.push_str(&format!(": {cause}"));
                        source = cause.source();
                    }
                    tell(what);
                    return false;
                }
            };
            if resp.status() != 202 {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                tell(format!(
                    "{status}: {}",
                    body.chars().take(300).collect::<String>()
                ));
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
    let (gateway, key) = start_gateway_plain(&sim_api, &db.url).await?;
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
    let submitted = gateway_creates(
        &base,
        &key,
        64,
        count,
        "f-",
        Sending {
            sent: Some(sent.clone()),
            pace,
            ..Sending::default()
        },
    )
    .await;
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
    let in_flight = if args.quick {
        args.in_flight.min(500)
    } else {
        args.in_flight
    };
    let wants = |phase: &str| args.runs(phase);

    // --- In front of a slow EM; the cost of a request ---------------------------------------
    let front = if wants("front") {
        eprintln!(
            "em-bench: front: creates direct and through the gateway, EM answering in {} ms",
            args.em_latency_ms
        );
        Some(front::run(args.em_latency_ms, &[32, 256], args.quick).await?)
    } else {
        None
    };
    let cost = if wants("cost") {
        eprintln!("em-bench: cost: /healthz, creates and task reads on one gateway");
        Some(cost::run(32, args.quick).await?)
    } else {
        None
    };
    let fair = if wants("fairness") {
        eprintln!("em-bench: fairness: one webhook consumer hanging, one healthy");
        Some(fairness::run(if args.quick { 50 } else { 1000 }).await?)
    } else {
        None
    };
    // Phases in their own modules: target rows and a section each. sim-scale runs before
    // scale, whose 100,000 tasks leave PostgreSQL writing (a checkpoint) for a while after:
    // run after it, em-sim's creates fell to 22,656/s (x0.77) where 38,000-49,000/s and
    // x0.97-1.18 were measured alone.
    let sim = if wants("sim-scale") {
        Some(sim_scale::run(args.sim_gateways, args.sim_creates).await?)
    } else {
        None
    };
    let mut extra = (String::new(), String::new());
    if wants("scale") {
        let (rows, section) = scale::run(&args.scale_sizes).await?;
        extra = (extra.0 + &rows, extra.1 + &section);
    }
    if let Some((rows, section)) = sim {
        extra = (extra.0 + &rows, extra.1 + &section);
    }
    if !wants("in-flight") {
        let report = report_head(&args, started_at)
            + &report_targets(front.as_ref(), cost.as_ref(), fair.as_ref(), None)
            + &extra.0
            + "\n"
            + &report_front_cost(front.as_ref(), cost.as_ref())
            + &extra.1;
        return write_report(&args, report);
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
    report.push_str(&report_head(&args, started_at));
    report.push_str(&report_targets(
        front.as_ref(),
        cost.as_ref(),
        fair.as_ref(),
        Some((in_flight, &paced, &burst)),
    ));
    report.push_str(&extra.0);
    report.push('\n');
    report.push_str(&report_front_cost(front.as_ref(), cost.as_ref()));
    report.push_str(&extra.1);
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
    write_report(&args, report)
}

fn write_report(args: &Args, mut report: String) -> Result<(), String> {
    if let Ok(notes) = std::fs::read_to_string("BENCHMARKS.notes.md") {
        report.push('\n');
        report.push_str(&notes);
    }
    std::fs::write(&args.out, &report).map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!("em-bench: wrote {}", args.out.display());
    print!("{report}");
    Ok(())
}

fn report_head(args: &Args, started_at: chrono::DateTime<chrono::Utc>) -> String {
    let mut report = String::from("# Benchmarks\n\n");
    report.push_str(&format!(
        "Written by `em-bench{}` on {} UTC{}.\n\n",
        if args.quick { " --quick" } else { "" },
        started_at.format("%Y-%m-%d %H:%M"),
        if args.quick {
            " (a small smoke run: figures are indicative only)"
        } else {
            ""
        }
    ));
    report.push_str(&format!("**Machine**: {}.\n\n", machine()));
    report.push_str("**Command**: `cargo build --release --workspace && target/release/em-bench` — it starts `target/release/em-sim` and `target/release/em-gateway serve` as separate processes on loopback and drives them with its own HTTP load generator and webhook receiver; all share the machine's cores. Each phase has a fresh em-sim and a fresh PostgreSQL database on the same host, reached through a `DATABASE_URL` as a user writes it: `postgres://postgres@127.0.0.1:5432/emgw_bench_…` (no `sslmode`).\n\n");
    report
}

type InFlightRuns<'a> = (usize, &'a InFlightRun, &'a InFlightRun);

fn report_targets(
    front: Option<&front::Front>,
    cost: Option<&cost::Cost>,
    fair: Option<&fairness::Fairness>,
    in_flight: Option<InFlightRuns<'_>>,
) -> String {
    let mut report =
        String::from("## Targets (issue 15)\n\n| target | measured | |\n|---|---|---|\n");
    if let Some(front) = front {
        for row in &front.rows {
            report.push_str(&format!(
                "| EM answering in {} ms, {} clients: through-gateway throughput ≥ 0.95 × direct, added p50 ≤ 2 ms, added p99 ≤ 5 ms | {:.0} vs {:.0} creates/s (×{:.2}), p50 +{} ms ({} vs {}), p99 +{} ms ({} vs {}); gateway with {} EM sessions; floor: em-floor ×{:.2}, +{} ms, +{} ms ({}) | {} |\n",
                front.latency_ms,
                row.clients,
                row.through.per_second,
                row.direct.per_second,
                row.ratio(),
                ms(row.added_p50()),
                ms(row.through.p50),
                ms(row.direct.p50),
                ms(row.added_p99()),
                ms(row.through.p99),
                ms(row.direct.p99),
                row.sessions,
                row.floor.per_second / row.direct.per_second.max(1.0),
                ms(row.floor.p50.saturating_sub(row.direct.p50)),
                ms(row.floor.p99.saturating_sub(row.direct.p99)),
                if row.floor_meets() { "meets them" } else { "misses them too" },
                verdict(row.met()),
            ));
        }
    }
    if let Some(cost) = cost {
        let us = |s: f64| format!("{:.1} µs", s * 1e6);
        report.push_str(&format!(
            "| CPU per create ≤ 4 × per `/healthz` | {} vs {} (×{:.1}); floor: em-floor's create {} (×{:.1}) | {} |\n",
            us(cost.creates.cpu),
            us(cost.healthz.cpu),
            cost.create_ratio(),
            us(cost.floor.creates.cpu),
            cost.floor_create_ratio(),
            verdict(cost.create_ratio() <= 4.0)
        ));
        report.push_str(&format!(
            "| CPU per task read ≤ 3 × per `/healthz` | {} vs {} (×{:.1}); floor: em-floor's read {} (×{:.1}) | {} |\n",
            us(cost.reads.cpu),
            us(cost.healthz.cpu),
            cost.read_ratio(),
            us(cost.floor.reads.cpu),
            cost.floor_read_ratio(),
            verdict(cost.read_ratio() <= 3.0)
        ));
        report.push_str(&format!(
            "| task reads ≥ 0.25 × the `/healthz` rate | {:.0} vs {:.0}/s (×{:.2}); floor: em-floor's reads {:.0}/s (×{:.2}) | {} |\n",
            cost.reads.run.per_second,
            cost.healthz.run.per_second,
            cost.read_rate_ratio(),
            cost.floor.reads.run.per_second,
            cost.floor_read_rate_ratio(),
            verdict(cost.read_rate_ratio() >= 0.25)
        ));
    }
    if let Some(fair) = fair {
        report.push_str(&fair.target_row());
    }
    if let Some((in_flight, paced, burst)) = in_flight {
        let p95_delay = percentile(&paced.delays, 0.95);
        let lists_per_session = paced.task_lists_per_interval / paced.sessions;
        report.push_str(&format!("| ≤ 1 EM task list per session per poll interval at {in_flight} in flight | {:.2} task lists per session per interval ({:.2} EM requests of any kind per interval, {} sessions) | {} |\n", lists_per_session, paced.em_requests_per_interval, paced.sessions, verdict(lists_per_session <= 1.05)));
        report.push_str(&format!(
            "| webhook p95 ≤ poll interval + 250 ms after EM finishes ({in_flight} in flight) | {} ms | {} |\n",
            ms(p95_delay),
            verdict(p95_delay <= Duration::from_millis(1250))
        ));
        let rss_peak = paced.rss_peak.max(burst.rss_peak);
        report.push_str(&format!("| gateway RSS < 64 MiB at {in_flight} in flight | {:.1} MiB while in flight, peak {:.1} MiB (phase 4: {:.1}) | {} |\n", paced.rss_in_flight as f64 / 1024.0, paced.rss_peak as f64 / 1024.0, burst.rss_peak as f64 / 1024.0, verdict(rss_peak < 64 * 1024)));
        let logons_ok = [paced.logons, burst.logons].iter().all(|l| *l <= 4);
        report.push_str(&format!(
            "| EM logons ≤ pool size (4) | {} in phase 3, {} in phase 4 | {} |\n",
            paced.logons,
            burst.logons,
            verdict(logons_ok)
        ));
    }
    report
}

fn report_front_cost(front: Option<&front::Front>, cost: Option<&cost::Cost>) -> String {
    let mut report = String::new();
    if let Some(front) = front {
        report.push_str(&format!(
            "## In front of an EM answering in {} ms: creates direct and through the gateway\n\n",
            front.latency_ms
        ));
        report.push_str("em-sim started with `--latency-ms`; its tasks outlast the phase. Direct: the bench logs on four EM sessions and POSTs EM's XML; through the gateway: `POST /v1/cloud-gateways` with JSON, answered 202 once the task is recorded and EM has accepted it. The gateway allows 16 EM calls in flight per logon session (to spare EM); each row has a fresh gateway with one session per 16 clients, 4 at least (`EMGW_EM_SESSIONS`).\n\n");
        report.push_str("The floor: the same creates through `em-floor` (described under the cost table below: the create's I/O and nothing else), with as many EM sessions, on a fresh database, right after. Between the two, the same gateway takes as many creates again, each under an `Idempotency-Key` of its own, as a portal that retries sends them: the key is claimed (written to disk) before the intent, and the answer kept under it (written to disk) before it is sent; the targets are for the creates without.\n\n");
        report.push_str("| clients | through | direct creates/s | direct p50 / p99 ms | through creates/s | through p50 / p99 ms | ratio | added p50 / p99 ms | errors |\n|---|---|---|---|---|---|---|---|---|\n");
        for r in &front.rows {
            for (side, through) in [
                ("gateway", &r.through),
                ("gateway, each create under an `Idempotency-Key`", &r.keyed),
                ("em-floor", &r.floor),
            ] {
                report.push_str(&format!(
                    "| {} | {side} | {:.0} | {} / {} | {:.0} | {} / {} | {:.2} | {} / {} | {} / {} |\n",
                    r.clients,
                    r.direct.per_second,
                    ms(r.direct.p50),
                    ms(r.direct.p99),
                    through.per_second,
                    ms(through.p50),
                    ms(through.p99),
                    through.per_second / r.direct.per_second.max(1.0),
                    ms(through.p50.saturating_sub(r.direct.p50)),
                    ms(through.p99.saturating_sub(r.direct.p99)),
                    r.direct.errors,
                    through.errors
                ));
            }
        }
        report.push_str("\nWhere the tail is, from the gateway's own histograms (all creates of the row, warm-up included): the share of its `POST /v1/cloud-gateways` answers and of its EM `POST /cloud/gateways` calls slower than 25 ms and than 50 ms; the means of both; and for the group-committed writes of a create (the intent, recorded before EM is called; EM's task id, after: waited for when kept with an Idempotency-Key's answer or a new session, else written behind the answer a few milliseconds later with others) the mean wait for a transaction, the mean transaction and the mean writes per transaction; and the mean time from queued to the request having its answer (the wait, the transaction, and the answer's way back to the request's task, which may be on another thread).\n\n| clients | creates > 25 ms | creates > 50 ms | EM calls > 25 ms | EM calls > 50 ms | mean create / EM call ms | writes: wait + transaction ms (per transaction) → answered ms |\n|---|---|---|---|---|---|---|\n");
        for r in &front.rows {
            if let Some(t) = &r.tail {
                let writes = t
                    .writes
                    .iter()
                    .map(crate::front::Write::brief)
                    .collect::<Vec<_>>()
                    .join("; ");
                report.push_str(&format!(
                    "| {} | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.2} / {:.2} | {} |\n",
                    r.clients,
                    t.creates.0 * 100.0,
                    t.creates.1 * 100.0,
                    t.em_calls.0 * 100.0,
                    t.em_calls.1 * 100.0,
                    t.create_ms,
                    t.em_call_ms,
                    writes
                ));
            }
        }
        report.push_str("\nWhere the machine's time went, per create, from the kernel's schedstat of every thread of each process (`/proc/PID/task/*/schedstat`): time running on a core, time runnable but waiting for one (the run queue), and times put on a core (each wake of a sleeping thread is one: a request's hops between threads and processes). Cores busy is all of it running over the side's wall time; there are 2.\n\n| clients | side | cores busy | load generator run / wait µs | em-sim run / wait µs | gateway or em-floor run / wait µs · times on a core | PostgreSQL run / wait µs · times on a core | all: wait µs · times on a core |\n|---|---|---|---|---|---|---|---|\n");
        for r in &front.rows {
            for (side, run, (m, wall)) in [
                ("direct", &r.direct, &r.direct_sched),
                ("gateway", &r.through, &r.through_sched),
                ("em-floor", &r.floor, &r.floor_sched),
            ] {
                let n = run.count.max(1) as f64;
                let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
                let pair = |x: sched::Sched| format!("{:.0} / {:.0}", us(x.run), us(x.wait));
                let hops = |x: sched::Sched| format!("{} · {:.1}", pair(x), x.slices as f64 / n);
                report.push_str(&format!(
                    "| {} | {} | {:.2} | {} | {} | {} | {} | {:.0} · {:.1} |\n",
                    r.clients,
                    side,
                    m.total().run.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                    pair(m.bench),
                    pair(m.sim),
                    if side == "direct" {
                        "—".to_string()
                    } else {
                        hops(m.gateway)
                    },
                    hops(m.postgres),
                    us(m.total().wait),
                    m.total().slices as f64 / n
                ));
            }
        }
        report.push('\n');
    }
    if let Some(cost) = cost {
        report.push_str("## What a request costs the gateway, against its own `/healthz`\n\nOne gateway in front of an in-memory em-sim, 32 clients. CPU is the gateway process's user + system time over the run (from /proc), per request, and of it the system time: the kernel's work for the process's system calls, which on loopback includes the receiving side's part of each send; PostgreSQL's (all its processes) beside it.\n\nThe floor: `em-floor` (in `crates/em-bench`), the same requests' I/O and nothing else, written the plainest way with the same crates (actix-web, sqlx's typed Postgres driver, reqwest), measured the same way right after, in front of the same em-sim on a fresh database. Its read is one indexed `SELECT` answered as JSON; its create takes the JSON, writes and commits the intent (to disk, before EM is called), makes EM's XML create on one of four logon sessions and records EM's task id (not waited to disk), then answers 202. No API key, validation, idempotency, metrics, logs, poller or webhooks. Its sqlx pool tests each connection given back with a round trip, which the gateway's kept connections avoid: for a read the gateway can go below it. Its × `/healthz` is against the gateway's `/healthz`, the targets' yardstick.\n\n| request | requests | per second | p50 / p99 ms | CPU µs | of it in the kernel µs | × `/healthz` | PostgreSQL CPU µs | errors |\n|---|---|---|---|---|---|---|---|---|\n");
        for (name, m) in [
            ("gateway `GET /healthz`", &cost.healthz),
            ("gateway `POST /v1/cloud-gateways`", &cost.creates),
            ("gateway `GET /v1/tasks/{id}`", &cost.reads),
            ("em-floor `GET /healthz`", &cost.floor.healthz),
            ("em-floor `POST /creates`", &cost.floor.creates),
            ("em-floor `GET /tasks/{id}`", &cost.floor.reads),
        ] {
            report.push_str(&format!(
                "| {name} | {} | {:.0} | {} / {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
                m.run.count,
                m.run.per_second,
                ms(m.run.p50),
                ms(m.run.p99),
                m.cpu * 1e6,
                m.kernel * 1e6,
                m.cpu / cost.healthz.cpu.max(1e-9),
                m.postgres_cpu * 1e6,
                m.run.errors
            ));
        }
        report.push('\n');
    }
    report
}

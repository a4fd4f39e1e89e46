//! Phase "cost": what a create and a task read cost the gateway, against the same gateway's
//! `/healthz` (actix-web's own floor: routing, one JSON answer, the middleware) in the same run.
//! CPU is the gateway process's user + system time from /proc; Postgres's is shown beside it.

use crate::{
    FloorProcess, Run, Sending, floor_creates, gateway_creates, http, load, start_gateway_plain,
    start_sim_with,
};
use emgw_test_support::PostgresDatabase;
use serde_json::Value;

/// CPU seconds a process has used (user + system), from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = user_system_seconds(pid);
    user + system
}

/// CPU seconds a process has used in its own code and libraries (user) and in the kernel on
/// its behalf (system: its system calls, and the receiving side's work its sends on loopback
/// do), from /proc/PID/stat.
fn user_system_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) / clock_ticks(), ticks(12) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds of every PostgreSQL process on the machine.
fn postgres_cpu_seconds() -> f64 {
    crate::sched::postgres_pids()
        .into_iter()
        .map(cpu_seconds)
        .sum()
}

pub struct Measured {
    pub run: Run,
    /// Gateway CPU per request, seconds.
    pub cpu: f64,
    /// The kernel's part of `cpu` (system time), seconds.
    pub kernel: f64,
    /// PostgreSQL CPU per request, seconds.
    pub postgres_cpu: f64,
}

async fn measure<F: std::future::Future<Output = Run>>(pid: u32, work: F) -> Measured {
    let ((user0, system0), pg0) = (user_system_seconds(pid), postgres_cpu_seconds());
    let run = work.await;
    let ((user1, system1), pg1) = (user_system_seconds(pid), postgres_cpu_seconds());
    let n = run.count.max(1) as f64;
    Measured {
        cpu: (user1 - user0 + system1 - system0) / n,
        kernel: (system1 - system0) / n,
        postgres_cpu: (pg1 - pg0) / n,
        run,
    }
}

pub struct Cost {
    pub healthz: Measured,
    pub creates: Measured,
    pub reads: Measured,
    /// The same three on `em-floor`: the least the same I/O costs, written plainly.
    pub floor: Floor,
}

pub struct Floor {
    pub healthz: Measured,
    pub creates: Measured,
    pub reads: Measured,
}

impl Cost {
    pub fn create_ratio(&self) -> f64 {
        self.creates.cpu / self.healthz.cpu.max(1e-9)
    }
    pub fn read_ratio(&self) -> f64 {
        self.reads.cpu / self.healthz.cpu.max(1e-9)
    }
    pub fn read_rate_ratio(&self) -> f64 {
        self.reads.run.per_second / self.healthz.run.per_second.max(1.0)
    }
    /// The floor's create and read, against the gateway's `/healthz` (the targets' yardstick).
    pub fn floor_create_ratio(&self) -> f64 {
        self.floor.creates.cpu / self.healthz.cpu.max(1e-9)
    }
    pub fn floor_read_ratio(&self) -> f64 {
        self.floor.reads.cpu / self.healthz.cpu.max(1e-9)
    }
    pub fn floor_read_rate_ratio(&self) -> f64 {
        self.floor.reads.run.per_second / self.healthz.run.per_second.max(1.0)
    }
}

fn get(
    url: String,
    key: Option<String>,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
+ Send
+ Sync
+ 'static {
    let client = http();
    move |_| {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        Box::pin(async move {
            let mut req = client.get(url);
            if let Some(key) = key {
                req = req.bearer_auth(key);
            }
            req.send().await.is_ok_and(|r| r.status() == 200)
        })
    }
}

/// `/healthz` of the process `pid` at `base`, measured.
async fn healthz(pid: u32, base: &str, clients: usize, scale: usize) -> Measured {
    measure(
        pid,
        load(
            clients,
            100_000 / scale,
            None,
            get(format!("{base}/healthz"), None),
        ),
    )
    .await
}

/// Prints `/healthz`, create and task read as measured.
fn tell(who: &str, [healthz, create, read]: [&Measured; 3]) {
    for (name, m) in [
        ("healthz", healthz),
        ("create", create),
        ("task read", read),
    ] {
        eprintln!(
            "  {who}{name}: {:.0}/s, p50 {:.2} ms, CPU {:.1} µs ({:.1} in the kernel), Postgres CPU {:.1} µs each ({} errors)",
            m.run.per_second,
            m.run.p50.as_secs_f64() * 1e3,
            m.cpu * 1e6,
            m.kernel * 1e6,
            m.postgres_cpu * 1e6,
            m.run.errors
        );
    }
}

pub async fn run(clients: usize, quick: bool) -> Result<Cost, String> {
    let scale = if quick { 10 } else { 1 };
    let sim = start_sim_with(600_000, &[]).await?;
    let db = PostgresDatabase::create("emgw_bench_").await?;
    let (gateway, key) = start_gateway_plain(&sim.api_url, &db.url).await?;
    let (base, pid) = (gateway.base.clone(), gateway.process.pid());
    // Warm up every path measured.
    gateway_creates(&base, &key, 8, 200, "warm-c", Sending::default()).await;
    load(8, 2_000, None, get(format!("{base}/healthz"), None)).await;

    let healthz = healthz(pid, &base, clients, scale).await;
    let creates = measure(
        pid,
        gateway_creates(
            &base,
            &key,
            clients,
            20_000 / scale,
            "cost-",
            Sending::default(),
        ),
    )
    .await;
    let tasks: Value = http()
        .get(format!("{base}/v1/tasks?limit=1"))
        .bearer_auth(&key)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let task = tasks["items"][0]["id"].as_str().ok_or("no task to read")?;
    let url = format!("{base}/v1/tasks/{task}");
    load(8, 2_000, None, get(url.clone(), Some(key.clone()))).await;
    let reads = measure(
        pid,
        load(clients, 100_000 / scale, None, get(url, Some(key))),
    )
    .await;
    tell("", [&healthz, &creates, &reads]);
    gateway.kill().await;
    if let Err(e) = db.drop().await {
        eprintln!("em-bench: {e}");
    }
    let floor = floor(&sim.api_url, clients, scale).await;
    sim.process.kill().await;
    Ok(Cost {
        healthz,
        creates,
        reads,
        floor: floor?,
    })
}

/// The same three requests on `em-floor`, on a database of its own, in front of the same em-sim.
async fn floor(sim_api: &str, clients: usize, scale: usize) -> Result<Floor, String> {
    let db = PostgresDatabase::create("emgw_bench_").await?;
    let floor = match FloorProcess::start(sim_api, &db.url, 4).await {
        Ok(floor) => floor,
        Err(e) => {
            db.drop().await.ok();
            return Err(e);
        }
    };
    let (base, pid) = (floor.base.clone(), floor.process.pid());
    floor_creates(&base, 8, 200, "warm-fc").await;
    load(8, 2_000, None, get(format!("{base}/healthz"), None)).await;
    let healthz = healthz(pid, &base, clients, scale).await;
    let creates = measure(
        pid,
        floor_creates(&base, clients, 20_000 / scale, "cost-floor-"),
    )
    .await;
    let url = format!("{base}/tasks/1");
    load(8, 2_000, None, get(url.clone(), None)).await;
    let reads = measure(pid, load(clients, 100_000 / scale, None, get(url, None))).await;
    tell("floor ", [&healthz, &creates, &reads]);
    floor.process.kill().await;
    if let Err(e) = db.drop().await {
        eprintln!("em-bench: {e}");
    }
    Ok(Floor {
        healthz,
        creates,
        reads,
    })
}

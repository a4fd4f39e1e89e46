//! Phase "front": what a user sees in front of a real EM. em-sim answers every request after
//! `latency_ms` (a real EM answers a create in tens of milliseconds); the same creates go
//! direct and through the gateway, side by side in one run.

use std::time::Duration;

use crate::sched::Machine;
use crate::{
    FloorProcess, Run, Sending, direct_creates, floor_creates, gateway_creates,
    start_gateway_plain_with, start_sim_with,
};
use emgw_test_support::PostgresDatabase;

pub struct FrontRow {
    pub clients: usize,
    /// Of the gateway's own creates and of its EM create calls, the shares slower than 25 and
    /// than 50 ms (its histograms): whether the tail is in the EM call or around it.
    pub tail: Option<Tail>,
    /// The gateway's EM logon sessions (`EMGW_EM_SESSIONS`).
    pub sessions: usize,
    pub direct: Run,
    pub through: Run,
    /// The same creates through the gateway, each under an `Idempotency-Key` of its own, on
    /// the same gateway right after.
    pub keyed: Run,
    /// The same creates through `em-floor`: the least the same I/O costs, written plainly.
    pub floor: Run,
    /// The machine's run and run-queue time over each side, and each side's wall time.
    pub direct_sched: (Machine, Duration),
    pub through_sched: (Machine, Duration),
    pub floor_sched: (Machine, Duration),
}

impl FrontRow {
    pub fn ratio(&self) -> f64 {
        self.through.per_second / self.direct.per_second.max(1.0)
    }
    pub fn added_p50(&self) -> Duration {
        self.through.p50.saturating_sub(self.direct.p50)
    }
    pub fn added_p99(&self) -> Duration {
        self.through.p99.saturating_sub(self.direct.p99)
    }
    /// The targets of issue 15 for this row.
    pub fn met(&self) -> bool {
        meets(&self.direct, &self.through)
    }
    /// Whether em-floor, doing only the same I/O, meets them.
    pub fn floor_meets(&self) -> bool {
        meets(&self.direct, &self.floor)
    }
}

fn meets(direct: &Run, through: &Run) -> bool {
    through.per_second / direct.per_second.max(1.0) >= 0.95
        && through.p50.saturating_sub(direct.p50) <= Duration::from_millis(2)
        && through.p99.saturating_sub(direct.p99) <= Duration::from_millis(5)
}

pub struct Front {
    pub latency_ms: u64,
    pub rows: Vec<FrontRow>,
}

pub async fn run(latency_ms: u64, clients: &[usize], quick: bool) -> Result<Front, String> {
    // Tasks that outlast the phase: the poller's work is the same on both sides of the ratio.
    let sim = start_sim_with(600_000, &["--latency-ms", &latency_ms.to_string()]).await?;
    direct_creates(&sim.api_url, 8, 200, "warm-d").await?;
    let mut rows = Vec::new();
    for &clients in clients {
        // The gateway lets 16 EM calls per logon session be in flight (EM's protection): a
        // gateway for this many clients has a session per 16 of them, 4 at least (the default).
        let sessions = clients.div_ceil(16).max(4).to_string();
        let db = PostgresDatabase::create("emgw_bench_").await?;
        let (gateway, key) = start_gateway_plain_with(
            &sim.api_url,
            &db.url,
            &[("EMGW_EM_SESSIONS", sessions.as_str())],
        )
        .await?;
        let base = gateway.base.clone();
        gateway_creates(&base, &key, 8, 200, "warm-g", Sending::default()).await;
        // Long enough that start and end effects, and a passing stall of the shared machine,
        // are a small share: ~8 s per side at 32 clients; the cap keeps 256 clients' to ~4 s
        // direct and ~10 s through the gateway.
        let per_second = clients as f64 * 1000.0 / latency_ms.max(1) as f64;
        let total = ((per_second * 8.0) as usize).clamp(2_000, 40_000) / if quick { 10 } else { 1 };
        let (sim_pid, gateway_pid) = (sim.process.pid(), gateway.process.pid());
        let (before, started) = (Machine::now(sim_pid, None), std::time::Instant::now());
        let direct = direct_creates(&sim.api_url, clients, total, &format!("fd{clients}-")).await?;
        let direct_sched = (Machine::now(sim_pid, None).since(before), started.elapsed());
        let (before, started) = (
            Machine::now(sim_pid, Some(gateway_pid)),
            std::time::Instant::now(),
        );
        let through = gateway_creates(
            &base,
            &key,
            clients,
            total,
            &format!("fg{clients}-"),
            Sending::default(),
        )
        .await;
        let through_sched = (
            Machine::now(sim_pid, Some(gateway_pid)).since(before),
            started.elapsed(),
        );
        eprintln!(
            "  {clients:>3} clients, EM {latency_ms} ms: direct {}; gateway {} ({} / {} errors)",
            direct.brief(),
            through.brief(),
            direct.errors,
            through.errors,
        );
        let tail = tail(&base).await;
        if let Some(t) = &tail {
            eprintln!(
                "      means: create {:.2} ms, its EM call {:.2} ms; {}",
                t.create_ms,
                t.em_call_ms,
                t.writes
                    .iter()
                    .map(Write::brief)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        // The same creates as a portal that retries sends them, each under an
        // Idempotency-Key: the key is claimed before EM is called and the answer kept under it.
        let keyed = gateway_creates(
            &base,
            &key,
            clients,
            total,
            &format!("fk{clients}-"),
            Sending {
                keyed: true,
                ..Sending::default()
            },
        )
        .await;
        eprintln!(
            "      keyed: gateway {} ({} errors)",
            keyed.brief(),
            keyed.errors
        );
        gateway.kill().await;
        if let Err(e) = db.drop().await {
            eprintln!("em-bench: {e}");
        }
        // The floor: the same creates through em-floor, with as many EM sessions.
        let db = PostgresDatabase::create("emgw_bench_").await?;
        let floor =
            match FloorProcess::start(&sim.api_url, &db.url, clients.div_ceil(16).max(4)).await {
                Ok(floor) => floor,
                Err(e) => {
                    db.drop().await.ok();
                    return Err(e);
                }
            };
        floor_creates(&floor.base, 8, 200, &format!("wf{clients}-")).await;
        let floor_pid = floor.process.pid();
        let (before, started) = (
            Machine::now(sim_pid, Some(floor_pid)),
            std::time::Instant::now(),
        );
        let floor_run = floor_creates(&floor.base, clients, total, &format!("ff{clients}-")).await;
        let floor_sched = (
            Machine::now(sim_pid, Some(floor_pid)).since(before),
            started.elapsed(),
        );
        eprintln!(
            "      em-floor {} ({} errors)",
            floor_run.brief(),
            floor_run.errors
        );
        floor.process.kill().await;
        if let Err(e) = db.drop().await {
            eprintln!("em-bench: {e}");
        }
        rows.push(FrontRow {
            tail,
            clients,
            sessions: clients.div_ceil(16).max(4),
            direct,
            through,
            keyed,
            floor: floor_run,
            direct_sched,
            through_sched,
            floor_sched,
        });
    }
    sim.process.kill().await;
    Ok(Front { latency_ms, rows })
}

#[derive(Debug, Clone)]
pub struct Tail {
    /// Share of `POST /v1/cloud-gateways` answers slower than 25 ms and than 50 ms.
    pub creates: (f64, f64),
    /// Share of the gateway's EM `POST /cloud/gateways` calls slower than 25 ms and than 50 ms.
    pub em_calls: (f64, f64),
    /// Means, ms: a create, its EM call, and for each group-committed write (intent, attach,
    /// attach written behind the answer) the wait for its transaction, the transaction, and the
    /// writes sharing one.
    pub create_ms: f64,
    pub em_call_ms: f64,
    pub writes: Vec<Write>,
}

#[derive(Debug, Clone, Copy)]
pub struct Write {
    pub name: &'static str,
    pub wait_ms: f64,
    pub transaction_ms: f64,
    /// From queued to the request having the answer: the wait, the transaction and the
    /// hand-back. None for the records written behind their answers.
    pub answered_ms: Option<f64>,
    pub batch: f64,
}

impl Write {
    /// `intent 0.42 + 0.75 (2.1) → 1.60`: wait + transaction (writes per transaction) →
    /// answered, ms.
    pub fn brief(&self) -> String {
        let name = match self.name {
            "attach_behind" => "attach behind the answer",
            name => name,
        };
        let answered = self
            .answered_ms
            .map(|a| format!(" → {a:.2}"))
            .unwrap_or_default();
        format!(
            "{name} {:.2} + {:.2} ({:.1}){answered}",
            self.wait_ms, self.transaction_ms, self.batch
        )
    }
}

/// Reads the two histograms off the gateway's `/metrics`.
async fn tail(base: &str) -> Option<Tail> {
    let text = crate::http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    // (le, cumulative count) of one series' buckets, and its count.
    let shares = |name: &str, labels: &str| -> Option<(f64, f64)> {
        let bucket = |le: &str| -> Option<f64> {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!("{name}_bucket{{"))
                        && l.contains(labels)
                        && l.contains(&format!("le=\"{le}\""))
                })?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        };
        let total = bucket("+Inf")?.max(1.0);
        Some((
            1.0 - bucket("0.025")? / total,
            1.0 - bucket("0.05")? / total,
        ))
    };
    // A histogram's mean: its `_sum` over its `_count`.
    let mean = |name: &str, labels: &str| -> Option<f64> {
        let value = |suffix: &str| -> Option<f64> {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}_{suffix}{{")) && l.contains(labels))?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        };
        Some(value("sum")? / value("count")?.max(1.0))
    };
    let write = |name: &'static str| -> Option<Write> {
        let label = format!("write=\"{name}\"");
        Some(Write {
            name,
            wait_ms: mean("emgw_store_write_wait_seconds", &label)? * 1e3,
            transaction_ms: mean("emgw_store_write_transaction_seconds", &label)? * 1e3,
            answered_ms: mean("emgw_store_write_answered_seconds", &label).map(|a| a * 1e3),
            batch: mean("emgw_store_write_batch_size", &label)?,
        })
    };
    let create_labels = "route=\"/v1/cloud-gateways\",method=\"POST\"";
    let em_labels = "operation=\"POST /cloud/gateways\"";
    Some(Tail {
        create_ms: mean("emgw_http_request_duration_seconds", create_labels)? * 1e3,
        em_call_ms: mean("emgw_em_call_duration_seconds", em_labels)? * 1e3,
        writes: ["intent", "attach", "attach_behind"]
            .into_iter()
            .filter_map(write)
            .collect(),
        creates: shares("emgw_http_request_duration_seconds", create_labels)?,
        em_calls: shares("emgw_em_call_duration_seconds", em_labels)?,
    })
}

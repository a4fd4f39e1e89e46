//! Phase `sim-scale`: em-sim's create cost must not grow with what it holds. Direct creates at
//! 32 clients against a fresh, empty em-sim, then against a fresh one filled with 100,000
//! gateways (`POST /_sim/gateways/fill`) before the run.

use serde_json::json;

use crate::{Run, direct_creates, http, ms, start_sim, verdict};

async fn fill(api: &str, count: usize) -> Result<(), String> {
    let base = api.trim_end_matches("/api");
    let resp = http()
        .post(format!("{base}/_sim/gateways/fill"))
        .json(&json!({ "count": count }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("/_sim/gateways/fill: {}", resp.status()));
    }
    Ok(())
}

/// Direct creates on a fresh em-sim holding `gateways` gateways first.
async fn creates_on(gateways: usize, total: usize) -> Result<Run, String> {
    let sim = start_sim(60_000).await?;
    if gateways > 0 {
        fill(&sim.api_url, gateways).await?;
    }
    direct_creates(&sim.api_url, 4, 200, "warm-").await?;
    let run = direct_creates(&sim.api_url, 32, total, "c-").await;
    sim.process.kill().await;
    run
}

/// Answers the targets table's row and the report's section.
pub async fn run(gateways: usize, total: usize) -> Result<(String, String), String> {
    eprintln!("em-bench: phase sim-scale: direct creates, empty em-sim vs {gateways} gateways");
    let empty = creates_on(0, total).await?;
    let full = creates_on(gateways, total).await?;
    let ratio = full.per_second / empty.per_second.max(1.0);
    eprintln!(
        "  empty {:.0}/s, full {:.0}/s (×{ratio:.2})",
        empty.per_second, full.per_second
    );
    let row = format!(
        "| em-sim O(1) per create: direct creates (32 clients) with {gateways} gateways ≥ 0.8 × empty | {:.0} vs {:.0} creates/s (×{ratio:.2}) | {} |\n",
        full.per_second,
        empty.per_second,
        verdict(ratio >= 0.8)
    );
    let mut section = format!(
        "\n## em-sim with many gateways (phase `sim-scale`)\n\nDirect `POST /api/cloud/gateways`, 32 clients, {total} creates, each on a fresh em-sim.\n\n| em-sim holds | creates/s | p50 / p99 ms | errors |\n|---|---|---|---|\n"
    );
    for (what, r) in [
        ("nothing", &empty),
        (&*format!("{gateways} gateways"), &full),
    ] {
        section.push_str(&format!(
            "| {what} | {:.0} | {} / {} | {} |\n",
            r.per_second,
            ms(r.p50),
            ms(r.p99),
            r.errors
        ));
    }
    Ok((row, section))
}

//! Fairness phase: one webhook consumer hangs past the timeout, one answers at once; the healthy
//! one's settle → received delay must not suffer (target p95 ≤ 250 ms).

use std::time::Duration;

use emgw_test_support::{Answer, GatewayProcess, PostgresDatabase, Receiver};
use serde_json::json;

use super::{SIM_PASSWORD, SIM_USER, VBR01, api_key, bin, http, ms, percentile, start_sim};

/// What the phase measured.
pub struct Fairness {
    pub tasks: usize,
    pub received: usize,
    pub p50: Duration,
    pub p95: Duration,
}

impl Fairness {
    /// Its line of the targets table.
    pub fn target_row(&self) -> String {
        let ok = self.received == self.tasks && self.p95 <= Duration::from_millis(250);
        format!(
            "| fairness: one webhook consumer hanging past the timeout, the healthy one's settle → received p95 ≤ 250 ms | p50 {} / p95 {} ms ({} of {} received) | {} |\n",
            ms(self.p50),
            ms(self.p95),
            self.received,
            self.tasks,
            super::verdict(ok)
        )
    }
}

pub async fn run(tasks: usize) -> Result<Fairness, String> {
    let sim = start_sim(200).await?;
    let db = PostgresDatabase::create("emgw_bench_").await?;
    // The URL as a user writes it, as in the other phases.
    let url = db.url.replace("?sslmode=disable", "");
    let key = api_key(&url).await?;
    let vars: Vec<(String, String)> = [
        ("DATABASE_URL", url.as_str()),
        ("EMGW_SECRET_KEY", emgw_test_support::TEST_SECRET_KEY),
        ("EMGW_EM_URL", sim.api_url.as_str()),
        ("EMGW_EM_USERNAME", SIM_USER),
        ("EMGW_EM_PASSWORD", SIM_PASSWORD),
        ("EMGW_WEBHOOK_ALLOW_PRIVATE", "true"),
        // The hung consumer's attempts time out and are retried throughout the phase.
        ("EMGW_WEBHOOK_TIMEOUT_MS", "2000"),
        ("EMGW_WEBHOOK_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s,1s"),
        ("RUST_LOG", "warn,em_gateway=info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let gateway = GatewayProcess::start(&bin("em-gateway")?, &vars).await;
    let hung = Receiver::start(Answer::Hang(Duration::from_secs(3600)));
    let healthy = Receiver::start(Answer::Ok);
    for url in [&hung.url, &healthy.url] {
        let resp = http()
            .post(format!("{}/v1/webhooks", gateway.base))
            .bearer_auth(&key)
            .json(&json!({"url": url}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 201 {
            return Err(format!("subscribing: {}", resp.status()));
        }
    }
    for i in 0..tasks {
        http()
            .post(format!("{}/v1/cloud-gateways", gateway.base))
            .bearer_auth(&key)
            .json(&json!({"backup_server_uid": VBR01,
                "server_host_name": format!("fair-{i}.example"), "network_type": "direct"}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while healthy.count() < tasks && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut delays: Vec<Duration> = healthy
        .received()
        .iter()
        .filter_map(|r| {
            let body = r.json();
            let settled = body["data"]["finished_at"].as_str()?;
            let settled = chrono::DateTime::parse_from_rfc3339(settled).ok()?;
            (r.at_wall - settled.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .collect();
    delays.sort_unstable();
    gateway.kill().await;
    sim.process.kill().await;
    if let Err(e) = db.drop().await {
        eprintln!("em-bench: {e}");
    }
    Ok(Fairness {
        tasks,
        received: delays.len(),
        p50: percentile(&delays, 0.5),
        p95: percentile(&delays, 0.95),
    })
}

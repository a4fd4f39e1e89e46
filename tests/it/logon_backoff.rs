//! EM refusing the gateway's credentials: the gateway backs off instead of locking the EM
//! account out, says so (503 with `Retry-After`, `/readyz`, `/metrics`), and serves again once
//! the password is right.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

/// The password the gateway has, which em-sim does not take until the test says so.
const WRONG: &str = "Wr0ng-Pa55-5e1f07";

/// When em-sim refused a logon, by polling its counter every few ms: each refusal falls between
/// the last poll that did not see it and the first that did.
struct RefusedLogons {
    seen: Arc<Mutex<Vec<(Duration, Duration)>>>,
    poller: tokio::task::JoinHandle<()>,
}

impl RefusedLogons {
    fn watch(api_url: String, since: Instant) -> Self {
        let seen: Arc<Mutex<Vec<(Duration, Duration)>>> = Arc::default();
        let log = seen.clone();
        let state = format!("{}/_sim/state", api_url.trim_end_matches("/api"));
        let poller = tokio::spawn(async move {
            let (mut last, mut unseen_since) = (0, Duration::ZERO);
            loop {
                let sent = since.elapsed();
                let got = async { http().get(&state).send().await?.json::<Value>().await };
                if let Ok(state) = got.await {
                    let n = state["counters"]["logons_refused"].as_u64().unwrap_or(0);
                    let window = (unseen_since, since.elapsed());
                    log.lock()
                        .unwrap()
                        .extend(std::iter::repeat_n(window, n.saturating_sub(last) as usize));
                    last = n;
                    unseen_since = sent;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        RefusedLogons { seen, poller }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Each refusal: not before the first moment, not after the second.
    fn times(&self) -> Vec<(Duration, Duration)> {
        self.seen.lock().unwrap().clone()
    }
}

/// A read that needs an EM session answers 503, says when to come back, and why.
fn assert_refused(status: u16, retry_after: Option<u64>, problem: &Value) {
    assert_eq!(status, 503, "{problem}");
    let retry_after = retry_after.expect("Retry-After in whole seconds");
    assert!(
        (1..=2).contains(&retry_after),
        "Retry-After {retry_after}: the seconds to the next logon (at most the 2 s cap), at least 1"
    );
    assert_eq!(
        problem["type"],
        "https://em-gateway.dev/problems/em-logon-refused"
    );
    assert_eq!(
        problem["title"],
        "Enterprise Manager refused the gateway's credentials"
    );
    assert_eq!(
        problem["em"],
        json!({"status": 401, "message": "Invalid user name or password."})
    );
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("refused the gateway's credentials (401)"),
        "{detail}"
    );
    assert!(
        !problem.to_string().contains(WRONG),
        "the password never shows"
    );
}

async fn read(app: &TestApp) -> (u16, Option<u64>, Value) {
    let resp = app.get("/v1/cloud-gateways", &app.read_key).await;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry_after, resp.json().await.unwrap())
}

async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = http()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_backs_off_for_the_pool_and_recovers_when_fixed() {
    let sim = spawn_sim(|_| {});
    let started = Instant::now();
    let refused = RefusedLogons::watch(sim.api_url.clone(), started);
    let settings = test_settings_with(
        &sim,
        &fresh_database(Db::Sqlite).await,
        &[
            ("EMGW_EM_PASSWORD", WRONG),
            // Four slots: they must not make four logons per window.
            ("EMGW_EM_SESSIONS", "4"),
            ("EMGW_EM_LOGON_BACKOFF_MS", "1000"),
            ("EMGW_EM_LOGON_BACKOFF_MAX_MS", "2000"),
        ],
    );
    // It logs on at start: the first refusal.
    let app = spawn_app(&settings).await;

    // 25 reads at once, then 25 one after the other.
    let at_once = futures_util::future::join_all((0..25).map(|_| read(&app))).await;
    for (status, retry_after, problem) in &at_once {
        assert_refused(*status, *retry_after, problem);
    }
    for _ in 0..25 {
        let (status, retry_after, problem) = read(&app).await;
        assert_refused(status, retry_after, &problem);
    }
    // Reads go on, one after another, while the back-off lets a logon through after 1 s, then
    // 2 s: three refusals in all.
    let reads = AtomicUsize::new(50);
    eventually("three refused logons", Duration::from_secs(20), || async {
        let (status, retry_after, problem) = read(&app).await;
        assert_refused(status, retry_after, &problem);
        reads.fetch_add(1, Ordering::Relaxed);
        (refused.count() >= 3).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    let times = refused.times();
    let middle = |(from, to): &(Duration, Duration)| (*from + *to) / 2;
    let busiest = times
        .iter()
        .map(|t| {
            let start = middle(t);
            times
                .iter()
                .filter(|u| middle(u) >= start && middle(u) < start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    eprintln!(
        "{} reads in {elapsed:?}: refused logons at {:?}, at most {busiest} in any second",
        reads.into_inner(),
        times.iter().map(middle).collect::<Vec<_>>()
    );
    assert_eq!(times.len(), 3, "no logon while backing off: {times:?}");
    assert!(busiest <= 2, "at most 2 logons a second: {times:?}");
    for pair in times.windows(2) {
        // 1 s, then 2 s (the cap) apart. Measured as generously as the polling allows, so that
        // a slow poll cannot fail it; a logon inside the wait still does.
        let widest = pair[1].1 - pair[0].0;
        assert!(
            widest > Duration::from_millis(900),
            "logons 1 s and more apart: {times:?}"
        );
    }

    // Readiness names the refusal although EM answers its anonymous entry point.
    let ready = http().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    let em = body["enterprise_manager"].as_str().unwrap_or_default();
    assert!(
        em.starts_with(
            "Enterprise Manager refused the gateway's credentials (401): Invalid user name or password."
        ),
        "{em}"
    );

    // Refusals are counted as such (the recorder is shared by the tests in this process).
    let counted = metric(&app, r#"emgw_em_logons_total{outcome="refused"}"#)
        .await
        .expect("refused logons in /metrics");
    assert!(counted >= 3.0, "{counted}");

    // The administrator sets EM's password to the one the gateway has.
    sim_control(
        &sim,
        Method::PUT,
        "/_sim/account",
        Some(json!({"password": WRONG})),
    )
    .await;
    // The back-off's next attempt may come between the reads above and the fix: what counts
    // is that none is refused once the fix is in.
    let refused_at_fix = sim_state(&sim).await["counters"]["logons_refused"].clone();
    let fixed = Instant::now();
    eventually(
        "the gateway to serve again",
        Duration::from_secs(10),
        || async {
            let resp = app.get("/v1/cloud-gateways", &app.read_key).await;
            (resp.status() == 200).then_some(())
        },
    )
    .await;
    let recovered_in = fixed.elapsed();
    eprintln!("serving again {recovered_in:?} after the password was fixed");
    assert!(
        recovered_in < Duration::from_secs(2 + 3),
        "within the capped wait: {recovered_in:?}"
    );
    let ready = http().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["enterprise_manager"], "ok");
    for _ in 0..8 {
        assert_eq!(
            app.get("/v1/cloud-gateways", &app.read_key).await.status(),
            200
        );
    }
    let state = sim_state(&sim).await;
    assert_eq!(
        state["counters"]["logons_refused"], refused_at_fix,
        "none after the fix"
    );
    assert_eq!(state["counters"]["logons"], 4, "every slot logged on, once");
    assert!(
        metric(&app, r#"emgw_em_logons_total{outcome="ok"}"#)
            .await
            .is_some()
    );

    refused.poller.abort();
    app.stop().await;
    sim.stop().await;
}

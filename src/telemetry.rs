//! Metrics in the Prometheus text format, served at `/metrics`. Labels are route patterns,
//! operations and outcomes — never ids, keys or anything secret.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static LAST_POLL_MS: AtomicI64 = AtomicI64::new(0);

const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Installs the process's metrics recorder (once; later calls share it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("emgw_store_write_batch_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                )
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "emgw_http_requests_total",
        "HTTP requests by route, method and status"
    );
    describe_histogram!(
        "emgw_http_request_duration_seconds",
        "HTTP request latency by route and method"
    );
    describe_counter!(
        "emgw_em_calls_total",
        "Enterprise Manager calls by operation and outcome"
    );
    describe_histogram!(
        "emgw_em_call_duration_seconds",
        "Enterprise Manager call latency by operation"
    );
    describe_counter!(
        "emgw_em_logons_total",
        "Enterprise Manager logons by outcome: ok, refused (EM refused the credentials), failed"
    );
    describe_gauge!(
        "emgw_tasks_in_flight",
        "Tasks this replica follows on EM, not yet settled (its in-memory set)"
    );
    describe_counter!(
        "emgw_tasks_settled_total",
        "Tasks settled, by final state and how (em, objects)"
    );
    describe_histogram!(
        "emgw_poller_tick_duration_seconds",
        "Time one poller tick takes"
    );
    describe_histogram!(
        "emgw_poller_database_seconds",
        "Database time one poller tick spends, summed over its statements"
    );
    describe_counter!(
        "emgw_poller_running_task_rows_read_total",
        "Running tasks' rows the poller's statements read (its in-flight set's resync, orphan claims): the database work that could grow with tasks in flight"
    );
    describe_gauge!(
        "emgw_poller_lag_seconds",
        "Time since the poller last finished a tick"
    );
    describe_histogram!(
        "emgw_store_write_wait_seconds",
        "From a write being queued to its group-committed transaction starting, by write (intent: a task before EM is called; attach: EM's task id)"
    );
    describe_histogram!(
        "emgw_store_write_transaction_seconds",
        "One group-committed transaction, by write"
    );
    describe_histogram!(
        "emgw_store_write_answered_seconds",
        "From a write being queued to its request having the answer, by write: its wait and its transaction, and the hand-back of the answer to the request's task"
    );
    describe_histogram!(
        "emgw_store_write_batch_size",
        "Writes sharing one group-committed transaction, by write"
    );
    describe_counter!(
        "emgw_webhook_attempts_total",
        "Webhook delivery attempts by outcome"
    );
    describe_histogram!(
        "emgw_webhook_delay_seconds",
        "From a task settling to its webhook's first attempt"
    );
}

/// Poller lag is about the real world, whatever clock the poller is given.
fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How often recorded samples are folded into their histograms.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds the samples recorded since into their histograms, every [`UPKEEP_EVERY`]; runs until
/// aborted. The recorder keeps each sample until it is folded, and only a scrape folds them
/// otherwise: a gateway nobody scrapes grew without end (heaptrack: 5.7 MB of samples after
/// 70,000 creates).
pub async fn fold_samples() {
    let Some(handle) = install() else {
        return;
    };
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// The metrics, rendered for a scrape.
pub fn render() -> String {
    let last = LAST_POLL_MS.load(Ordering::Relaxed);
    if last > 0 {
        let lag = (wall_ms() - last).max(0) as f64 / 1000.0;
        gauge!("emgw_poller_lag_seconds").set(lag);
    }
    install().map(|h| h.render()).unwrap_or_default()
}

/// A request's method as a label: the standard methods by name, anything else `other` (a client
/// chooses the method, and every label value is a series kept for ever).
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Records one request. `route` is a pattern of the router's (or `unmatched`), `method` one of
/// [`method_label`]'s, `status` a three-digit code: every label comes from a closed set.
pub fn http_request(route: &str, method: &'static str, status: u16, took: Duration) {
    counter!("emgw_http_requests_total", "route" => route.to_string(), "method" => method, "status" => status.to_string()).increment(1);
    histogram!("emgw_http_request_duration_seconds", "route" => route.to_string(), "method" => method).record(took.as_secs_f64());
}

pub fn em_call(operation: &str, outcome: &str, took: Duration) {
    counter!("emgw_em_calls_total", "operation" => operation.to_string(), "outcome" => outcome.to_string()).increment(1);
    histogram!("emgw_em_call_duration_seconds", "operation" => operation.to_string())
        .record(took.as_secs_f64());
}

/// How a logon to EM ended: the `outcome` label of `emgw_em_logons_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmLogon {
    Ok,
    /// EM refused the credentials (401/403): what locks the account out.
    Refused,
    /// No session for another reason: EM unreachable, a 5xx, an unreadable answer.
    Failed,
}

impl EmLogon {
    pub fn label(self) -> &'static str {
        match self {
            EmLogon::Ok => "ok",
            EmLogon::Refused => "refused",
            EmLogon::Failed => "failed",
        }
    }
}

pub fn em_logon(outcome: EmLogon) {
    counter!("emgw_em_logons_total", "outcome" => outcome.label()).increment(1);
}

pub fn poller_tick(took: Duration, database: Duration, in_flight: i64) {
    histogram!("emgw_poller_tick_duration_seconds").record(took.as_secs_f64());
    histogram!("emgw_poller_database_seconds").record(database.as_secs_f64());
    gauge!("emgw_tasks_in_flight").set(in_flight as f64);
    LAST_POLL_MS.store(wall_ms(), Ordering::Relaxed);
}

pub fn store_write_queued(write: &'static str, waited: Duration) {
    histogram!("emgw_store_write_wait_seconds", "write" => write).record(waited.as_secs_f64());
}

pub fn store_write_answered(write: &'static str, took: Duration) {
    histogram!("emgw_store_write_answered_seconds", "write" => write).record(took.as_secs_f64());
}

pub fn store_write_batch(write: &'static str, size: usize, took: Duration) {
    histogram!("emgw_store_write_transaction_seconds", "write" => write).record(took.as_secs_f64());
    histogram!("emgw_store_write_batch_size", "write" => write).record(size as f64);
}

pub fn running_task_rows_read(rows: u64) {
    counter!("emgw_poller_running_task_rows_read_total").increment(rows);
}

pub fn task_settled(state: &'static str, how: &'static str) {
    counter!("emgw_tasks_settled_total", "state" => state, "how" => how).increment(1);
}

pub fn webhook_attempt(outcome: &'static str, first_attempt_delay: Option<Duration>) {
    counter!("emgw_webhook_attempts_total", "outcome" => outcome).increment(1);
    if let Some(d) = first_attempt_delay {
        histogram!("emgw_webhook_delay_seconds").record(d.as_secs_f64());
    }
}

/// `GET /cloud/gateways/{id}`: an EM path with its ids folded, for a bounded label.
pub fn em_operation(method: &str, path: &str) -> String {
    let folded: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "api")
        .map(|s| {
            if uuid::Uuid::parse_str(s).is_ok() || s.starts_with("task-") {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} /{}", folded.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn methods_outside_the_standard_ones_are_other() {
        use actix_web::http::Method;
        assert_eq!(super::method_label(&Method::PATCH), "PATCH");
        for odd in ["FOO", "get", "BREW", &"X".repeat(2000)] {
            let m = Method::from_bytes(odd.as_bytes()).unwrap();
            assert_eq!(
                super::method_label(&m),
                "other",
                "{}",
                &odd[..odd.len().min(10)]
            );
        }
    }

    #[test]
    fn em_operations_fold_ids() {
        assert_eq!(
            super::em_operation(
                "GET",
                "/api/cloud/gateways/3f2a1c10-0000-4000-8000-00000000c701"
            ),
            "GET /cloud/gateways/{id}"
        );
        assert_eq!(
            super::em_operation("GET", "/api/tasks/task-12"),
            "GET /tasks/{id}"
        );
    }
}

#[cfg(test)]
mod install_tests {
    #[test]
    fn the_recorder_installs_and_renders() {
        let handle = super::install();
        assert!(handle.is_some(), "the recorder installs");
        super::em_logon(super::EmLogon::Ok);
        assert!(
            super::render().contains("emgw_em_logons_total"),
            "{}",
            super::render()
        );
    }
}

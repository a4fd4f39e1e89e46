//! Sends due deliveries: leased (one replica per delivery), concurrent (a slow consumer delays
//! nobody else), retried on a schedule with jitter, every attempt logged.
//!
//! The deliverer sleeps until the next delivery is due or until it is woken: the poller wakes it
//! the moment it settles a task, so the first attempt starts at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::Url;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use super::signature;
use super::target;
use crate::store::{AttemptRecord, AttemptResult, DeliveryJob, RecordedAttempt, Store, now_ms};

#[derive(Debug, Clone)]
pub struct DelivererConfig {
    /// Delays before each retry; the first attempt goes at once.
    pub schedule: Vec<Duration>,
    /// For one attempt, connection to last byte.
    pub timeout: Duration,
    pub allow_private: bool,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

/// How much of a consumer's answer is read (and kept in the log on failure).
const BODY_LIMIT: usize = 4 * 1024;
/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Even with nothing due, look again this often (a crashed replica's leases lapse).
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// Deliveries claimed together once the deliverer is busy.
const CLAIM_BATCH: usize = 32;
/// Attempts recorded in one transaction, at most.
const RECORD_BATCH: usize = 256;

pub struct Deliverer {
    store: Store,
    owner: String,
    config: DelivererConfig,
    client: reqwest::Client,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
    /// Finished attempts, on their way to the store: a slot is free again once its attempt is
    /// handed over, and the recorder writes many attempts per transaction. The delivery's lease
    /// keeps it from being sent again meanwhile.
    records: mpsc::Sender<RecordedAttempt>,
    /// Taken by `run`.
    recorder: std::sync::Mutex<Option<mpsc::Receiver<RecordedAttempt>>>,
}

impl Deliverer {
    pub fn new(
        store: Store,
        owner: String,
        config: DelivererConfig,
        wake: Arc<Notify>,
    ) -> Result<Self, String> {
        let client = target::client(config.allow_private, config.timeout)?;
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let (records, recorder) = mpsc::channel(RECORD_BATCH * 4);
        Ok(Deliverer {
            store,
            owner,
            config,
            client,
            wake,
            slots,
            records,
            recorder: std::sync::Mutex::new(Some(recorder)),
        })
    }

    /// Sends deliveries until stopped; then lets the attempts in flight end and records them.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let taken = self.recorder.lock().ok().and_then(|mut r| r.take());
        let Some(records) = taken else {
            return;
        };
        let (finish, finished) = oneshot::channel();
        let recorder = tokio::spawn(self.clone().record(records, finished));
        self.clone().send_due(stop).await;
        let all = u32::try_from(self.config.concurrency.max(1)).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            self.config.timeout + Duration::from_secs(1),
            self.slots.acquire_many(all),
        )
        .await;
        let _ = finish.send(());
        let _ = recorder.await;
    }

    /// Writes finished attempts in batches until told to finish, then writes what is left.
    async fn record(
        self: Arc<Self>,
        mut records: mpsc::Receiver<RecordedAttempt>,
        mut finish: oneshot::Receiver<()>,
    ) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        let mut closing = false;
        loop {
            tokio::select! {
                biased;
                n = records.recv_many(&mut batch, RECORD_BATCH) => if n == 0 { break },
                _ = &mut finish, if !closing => {
                    records.close();
                    closing = true;
                    continue;
                }
            }
            if let Err(e) = self.store.record_attempts(&self.owner, &batch).await {
                // The leases lapse and the deliveries are tried again: at least once, never lost.
                tracing::warn!(error = %e, attempts = batch.len(), "could not record webhook attempts");
            }
            batch.clear();
        }
    }

    async fn send_due(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let lease_ms = i64::try_from((self.config.timeout * 3).as_millis())
            .unwrap_or(60_000)
            .max(30_000);
        loop {
            if *stop.borrow() {
                break;
            }
            let free = self.slots.available_permits();
            let busy = self.config.concurrency.max(1) - free.min(self.config.concurrency.max(1));
            // Claim in batches: one claim per freed slot would cost a round trip per delivery.
            let batch = CLAIM_BATCH.min(self.config.concurrency.max(1));
            let mut claimed = 0;
            if free >= batch || (busy == 0 && free > 0) {
                match self
                    .store
                    .claim_deliveries(&self.owner, lease_ms, free as u32)
                    .await
                {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        for job in jobs {
                            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                                return;
                            };
                            let me = self.clone();
                            tokio::spawn(async move {
                                me.deliver(job).await;
                                drop(permit);
                                // A freed slot may let a waiting delivery go.
                                me.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim webhook deliveries"),
                }
            }
            let wait = if claimed > 0 && claimed == free {
                // The queue may hold more: look again as soon as a batch of slots frees up.
                IDLE_CHECK
            } else if free < batch && busy > 0 {
                IDLE_CHECK
            } else {
                match self.store.next_delivery_due().await {
                    Ok(Some(due)) => {
                        Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0))
                            .min(IDLE_CHECK)
                    }
                    Ok(None) => IDLE_CHECK,
                    Err(_) => Duration::from_secs(1),
                }
            };
            if wait.is_zero() && self.slots.available_permits() >= batch {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn deliver(&self, job: DeliveryJob) {
        if job.disabled {
            if let Err(e) = self
                .store
                .abandon_delivery(&self.owner, &job, "the subscription is disabled")
                .await
            {
                tracing::warn!(error = %e, "could not record an abandoned delivery");
            }
            return;
        }
        let attempt_no = job.attempts + 1;
        let started_at = Utc::now();
        let clock = Instant::now();
        let outcome = self.send(&job).await;
        let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, error, retry_after) = match &outcome {
            Ok((status, body, retry_after)) if (200..300).contains(status) => {
                (Some(*status), None, *retry_after)
            }
            Ok((status, body, retry_after)) => {
                (Some(*status), Some(snippet(*status, body)), *retry_after)
            }
            Err(e) => (None, Some(e.clone()), None),
        };
        let result = match status {
            Some(s) if (200..300).contains(&s) => AttemptResult::Delivered,
            Some(410) => AttemptResult::Gone,
            _ => match self.config.schedule.get(job.attempts as usize) {
                None => AttemptResult::Failed,
                Some(delay) => {
                    let delay = match retry_after {
                        Some(asked) => asked.clamp(Duration::from_secs(1), MAX_RETRY_AFTER),
                        None => jitter(*delay),
                    };
                    AttemptResult::RetryAt(
                        now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2),
                    )
                }
            },
        };
        let outcome = match &result {
            AttemptResult::Delivered => "delivered",
            AttemptResult::RetryAt(_) => "retry",
            AttemptResult::Failed => "failed",
            AttemptResult::Gone => "gone",
        };
        let delay = (attempt_no == 1).then(|| {
            Duration::from_millis(
                u64::try_from(started_at.timestamp_millis() - job.created_at).unwrap_or(0),
            )
        });
        crate::telemetry::webhook_attempt(outcome, delay);
        tracing::info!(
            webhook_id = %job.webhook_id, event_id = %job.event_id, attempt = attempt_no,
            status = ?status, ?result, duration_ms, "webhook attempt"
        );
        let recorded = RecordedAttempt {
            delivery_id: job.delivery_id,
            webhook_id: job.webhook_id,
            attempt: AttemptRecord {
                attempt: attempt_no,
                status_code: status,
                error,
                duration_ms,
                started_at,
                finished_at: Utc::now(),
            },
            result,
        };
        if self.records.send(recorded).await.is_err() {
            // Only once stopped; the lease lapses and the delivery is tried again.
            tracing::warn!("a webhook attempt was made while stopping and is not recorded");
        }
    }

    /// One HTTP POST: status, the start of the body, and `Retry-After`.
    async fn send(&self, job: &DeliveryJob) -> Result<(u16, String, Option<Duration>), String> {
        let url = Url::parse(&job.url).map_err(|e| format!("bad URL: {e}"))?;
        if !target::literal_allowed(&url, self.config.allow_private) {
            return Err("the target address is not public (refused)".into());
        }
        let timestamp = Utc::now().timestamp();
        let signature = signature::header(&job.secrets, &job.event_id, timestamp, &job.payload)
            .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", job.event_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(job.payload.clone())
            .send()
            .await
            .map_err(|e| crate::outbound::describe(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        let mut resp = resp;
        while body.len() < BODY_LIMIT {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk[..chunk.len().min(BODY_LIMIT - body.len())])
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok((
            status,
            String::from_utf8_lossy(&body).into_owned(),
            retry_after,
        ))
    }
}

fn snippet(status: u16, body: &str) -> String {
    let body: String = body.chars().take(200).collect();
    if body.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", body.trim())
    }
}

/// ±20%, so retries from many deliveries do not arrive in lockstep.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.8 + fastrand::f64() * 0.4)
}

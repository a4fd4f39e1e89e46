//! Webhook subscriptions and the outbox: events, deliveries (one per subscription and event)
//! and attempts (one per HTTP try).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};
use uuid::Uuid;

use super::{Backend, Store, StoreError, now_ms, parameters, placeholders, to_time};
use crate::domain::{TaskState, TaskView};

const WEBHOOK_COLUMNS: &str = "id, url, event_types, description, secret, previous_secret, \
     previous_secret_until, disabled_at, disabled_reason, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// Empty: every event.
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub secret: SecretString,
    /// Still signed with during a rotation's overlap.
    pub previous_secret: Option<SecretString>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookRecord {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub secret: String,
    pub api_key_id: Option<String>,
}

/// One delivery to send now, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: String,
    pub webhook_id: String,
    /// The `webhook-id` header: the same on every retry of one event.
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub url: String,
    pub secrets: Vec<SecretString>,
    /// Attempts made before this one.
    pub attempts: u32,
    pub disabled: bool,
    /// When the delivery was queued (the task settled), ms.
    pub created_at: i64,
}

/// One HTTP try of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// An attempt made under a lease, to be logged with its delivery moved on.
#[derive(Debug, Clone)]
pub struct RecordedAttempt {
    pub delivery_id: String,
    pub webhook_id: String,
    pub attempt: AttemptRecord,
    pub result: AttemptResult,
}

/// Attempts per statement when recording a batch (9 parameters each).
const RECORD_CHUNK: usize = 200;

/// A delivery with its attempts, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub task_id: String,
    pub state: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<AttemptRecord>,
}

/// How an attempt ended, and what happens to the delivery next.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    Delivered,
    RetryAt(i64),
    Failed,
    /// 410 Gone: the delivery fails and the subscription is disabled.
    Gone,
}

fn decode_webhook(row: &AnyRow) -> Result<WebhookRecord, StoreError> {
    let types: String = row.try_get("event_types")?;
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        event_types: serde_json::from_str(&types)
            .map_err(|_| StoreError::Corrupt("webhook event types".into()))?,
        description: row.try_get("description")?,
        secret: SecretString::from(row.try_get::<String, _>("secret")?),
        previous_secret: row
            .try_get::<Option<String>, _>("previous_secret")?
            .map(SecretString::from),
        previous_secret_until: row
            .try_get::<Option<i64>, _>("previous_secret_until")?
            .map(to_time),
        disabled_at: row.try_get::<Option<i64>, _>("disabled_at")?.map(to_time),
        disabled_reason: row.try_get("disabled_reason")?,
        created_at: to_time(row.try_get("created_at")?),
        updated_at: to_time(row.try_get("updated_at")?),
    })
}

/// Writes each settled task's event and a delivery per matching, enabled subscription, inside
/// the transaction that settles the tasks: a settled task always has its webhooks queued.
pub(super) async fn enqueue_task_events(
    tx: &mut Transaction<'static, Any>,
    tasks: &[TaskView],
) -> Result<usize, StoreError> {
    if tasks.is_empty() {
        return Ok(0);
    }
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE disabled_at IS NULL"
    )))
    .fetch_all(&mut **tx)
    .await?;
    let hooks: Vec<WebhookRecord> = rows.iter().map(decode_webhook).collect::<Result<_, _>>()?;
    if hooks.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let timestamp = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut events: Vec<(String, &'static str, String, String)> = Vec::new();
    let mut deliveries: Vec<(String, String, String)> = Vec::new();
    for task in tasks {
        let event_type = match task.state {
            TaskState::Succeeded => "task.succeeded",
            TaskState::Failed => "task.failed",
            TaskState::Running => continue,
        };
        let targets: Vec<&WebhookRecord> = hooks.iter().filter(|h| h.wants(event_type)).collect();
        if targets.is_empty() {
            continue;
        }
        let event_id = format!("msg_{}", Uuid::now_v7().simple());
        let payload = serde_json::json!({"type": event_type, "timestamp": timestamp, "data": task});
        for hook in targets {
            deliveries.push((
                Uuid::now_v7().to_string(),
                hook.id.clone(),
                event_id.clone(),
            ));
        }
        events.push((
            event_id,
            event_type,
            task.id.to_string(),
            payload.to_string(),
        ));
    }
    for chunk in events.chunks(200) {
        let sql = format!(
            "INSERT INTO webhook_events (id, type, task_id, payload, created_at) VALUES {}",
            placeholders(chunk.len(), 5, 0)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (id, kind, task_id, payload) in chunk {
            query = query
                .bind(id.as_str())
                .bind(*kind)
                .bind(task_id.as_str())
                .bind(payload.as_str())
                .bind(now);
        }
        query.execute(&mut **tx).await?;
    }
    for chunk in deliveries.chunks(200) {
        // Pending, no attempts yet, due at once.
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, state, attempts, \
             next_attempt_at, created_at, updated_at) VALUES {}",
            placeholders(chunk.len(), 8, 0)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (id, hook, event) in chunk {
            query = query
                .bind(id.as_str())
                .bind(hook.as_str())
                .bind(event.as_str())
                .bind("pending")
                .bind(0_i64)
                .bind(now)
                .bind(now)
                .bind(now);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(deliveries.len())
}

impl Store {
    pub async fn insert_webhook(&self, hook: &NewWebhook) -> Result<WebhookRecord, StoreError> {
        let now = now_ms();
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO webhooks (id, url, event_types, description, secret, api_key_id, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {WEBHOOK_COLUMNS}"
        )))
        .bind(Uuid::now_v7().to_string())
        .bind(hook.url.as_str())
        .bind(serde_json::to_string(&hook.event_types).unwrap_or_else(|_| "[]".into()))
        .bind(hook.description.clone())
        .bind(hook.secret.as_str())
        .bind(hook.api_key_id.clone())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        decode_webhook(&row)
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_webhook).transpose()
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_webhook).collect()
    }

    /// Deletes a subscription with its pending deliveries and log.
    pub async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A new secret; the old one keeps signing until `previous_until` (ms).
    pub async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: &str,
        previous_until: i64,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = $3, \
             secret = $2, updated_at = $4 WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}"
        )))
        .bind(id)
        .bind(secret)
        .bind(previous_until)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_webhook).transpose()
    }

    /// Leases due deliveries for `lease_ms`; each is sent by one replica only.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        let now = now_ms();
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE OF d SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let ids: Vec<String> = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN ( \
               SELECT d.id FROM webhook_deliveries d WHERE d.state = 'pending' \
               AND d.next_attempt_at <= $3 AND (d.lease_until IS NULL OR d.lease_until < $3) \
               ORDER BY d.next_attempt_at LIMIT $4 {lock}) RETURNING id"
        )))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One query for all of them: only placeholders are formatted into the SQL.
        let sql = format!(
            "SELECT d.id, d.webhook_id, d.event_id, d.attempts, d.created_at, e.type, e.payload, \
             w.url, w.secret, w.previous_secret, w.previous_secret_until, w.disabled_at \
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             JOIN webhooks w ON w.id = d.webhook_id WHERE d.id IN ({})",
            parameters(ids.len(), 0)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in &ids {
            query = query.bind(id.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut secrets = vec![SecretString::from(row.try_get::<String, _>("secret")?)];
            let previous: Option<String> = row.try_get("previous_secret")?;
            let until: Option<i64> = row.try_get("previous_secret_until")?;
            if let (Some(previous), Some(until)) = (previous, until)
                && until > now
            {
                secrets.push(SecretString::from(previous));
            }
            jobs.push(DeliveryJob {
                delivery_id: row.try_get("id")?,
                webhook_id: row.try_get("webhook_id")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("type")?,
                payload: row.try_get("payload")?,
                url: row.try_get("url")?,
                secrets,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
                created_at: row.try_get("created_at")?,
            });
        }
        Ok(jobs)
    }

    /// When the next pending delivery is due (ms), if any.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS due FROM webhook_deliveries WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("due")?)
    }

    /// Logs attempts and moves their deliveries on, all in one transaction (a burst of
    /// settled tasks means thousands of attempts a second; one transaction each would not keep
    /// up). Only a delivery's lease holder may: a replica whose lease lapsed mid-attempt cannot
    /// overwrite another's result, and its attempt is not logged. Returns how many were
    /// recorded.
    pub async fn record_attempts(
        &self,
        owner: &str,
        batch: &[RecordedAttempt],
    ) -> Result<usize, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // Losing this in a database crash only means the deliveries are sent again.
        self.relax_durability(&mut tx).await?;
        let mut held = std::collections::HashSet::new();
        for chunk in batch.chunks(RECORD_CHUNK) {
            let sql = format!(
                "WITH v (id, state, attempts, next_attempt_at, last_status, last_error, \
                 finished_at) AS (VALUES {}) \
                 UPDATE webhook_deliveries SET state = v.state, attempts = v.attempts, \
                 next_attempt_at = v.next_attempt_at, last_status = v.last_status, \
                 last_error = v.last_error, finished_at = v.finished_at, lease_owner = NULL, \
                 lease_until = NULL, updated_at = $1 FROM v \
                 WHERE webhook_deliveries.id = v.id AND webhook_deliveries.lease_owner = $2 \
                 RETURNING webhook_deliveries.id",
                placeholders(chunk.len(), 7, 2)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now).bind(owner);
            for r in chunk {
                let (state, next, finished) = match r.result {
                    AttemptResult::Delivered => ("delivered", now, Some(now)),
                    AttemptResult::RetryAt(at) => ("pending", at, None),
                    AttemptResult::Failed | AttemptResult::Gone => ("failed", now, Some(now)),
                };
                query = query
                    .bind(r.delivery_id.as_str())
                    .bind(state)
                    .bind(i64::from(r.attempt.attempt))
                    .bind(next)
                    .bind(r.attempt.status_code.map(i64::from))
                    .bind(r.attempt.error.clone())
                    .bind(finished);
            }
            for row in query.fetch_all(&mut *tx).await? {
                held.insert(row.try_get::<String, _>(0)?);
            }
        }
        let recorded: Vec<&RecordedAttempt> = batch
            .iter()
            .filter(|r| held.contains(&r.delivery_id))
            .collect();
        for chunk in recorded.chunks(RECORD_CHUNK) {
            let sql = format!(
                "INSERT INTO webhook_attempts (id, delivery_id, webhook_id, attempt, status_code, \
                 error, duration_ms, started_at, finished_at) VALUES {}",
                placeholders(chunk.len(), 9, 0)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                query = query
                    .bind(Uuid::now_v7().to_string())
                    .bind(r.delivery_id.as_str())
                    .bind(r.webhook_id.as_str())
                    .bind(i64::from(r.attempt.attempt))
                    .bind(r.attempt.status_code.map(i64::from))
                    .bind(r.attempt.error.clone())
                    .bind(i64::try_from(r.attempt.duration_ms).unwrap_or(i64::MAX))
                    .bind(r.attempt.started_at.timestamp_millis())
                    .bind(r.attempt.finished_at.timestamp_millis());
            }
            query.execute(&mut *tx).await?;
        }
        for gone in recorded.iter().filter(|r| r.result == AttemptResult::Gone) {
            sqlx::query(
                "UPDATE webhooks SET disabled_at = $2, disabled_reason = $3, updated_at = $2 \
                 WHERE id = $1 AND disabled_at IS NULL",
            )
            .bind(gone.webhook_id.as_str())
            .bind(now)
            .bind("the endpoint answered 410 Gone")
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(recorded.len())
    }

    /// Fails a delivery without sending it (its subscription is disabled).
    pub async fn abandon_delivery(
        &self,
        owner: &str,
        job: &DeliveryJob,
        reason: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE webhook_deliveries SET state = 'failed', last_error = $3, lease_owner = NULL, \
             lease_until = NULL, updated_at = $4, finished_at = $4 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(job.delivery_id.as_str())
        .bind(owner)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes a delivery due now again, whatever its state. `false`: no such delivery.
    pub async fn retry_delivery(
        &self,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $3, \
             finished_at = NULL, updated_at = $3 WHERE id = $1 AND webhook_id = $2",
        )
        .bind(delivery_id)
        .bind(webhook_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A subscription's deliveries, newest first, each with its attempts.
    pub async fn list_deliveries(
        &self,
        webhook_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.event_id, d.state, d.next_attempt_at, d.created_at, e.type, e.task_id \
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.webhook_id = $1 AND ($2 IS NULL OR d.id < $2) ORDER BY d.id DESC LIMIT $3",
        )
        .bind(webhook_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let state: String = row.try_get("state")?;
            let attempts = sqlx::query(
                "SELECT attempt, status_code, error, duration_ms, started_at, finished_at \
                 FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt, id",
            )
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|a| {
                Ok(AttemptRecord {
                    attempt: u32::try_from(a.try_get::<i64, _>("attempt")?).unwrap_or(0),
                    status_code: a
                        .try_get::<Option<i64>, _>("status_code")?
                        .and_then(|s| u16::try_from(s).ok()),
                    error: a.try_get("error")?,
                    duration_ms: u64::try_from(a.try_get::<i64, _>("duration_ms")?).unwrap_or(0),
                    started_at: to_time(a.try_get("started_at")?),
                    finished_at: to_time(a.try_get("finished_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            out.push(DeliveryRecord {
                next_attempt_at: (state == "pending")
                    .then(|| row.try_get::<i64, _>("next_attempt_at"))
                    .transpose()?
                    .map(to_time),
                id,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("type")?,
                task_id: row.try_get("task_id")?,
                state,
                created_at: to_time(row.try_get("created_at")?),
                attempts,
            });
        }
        Ok(out)
    }
}

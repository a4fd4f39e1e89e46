//! Webhook subscriptions and the outbox: events, deliveries (one per subscription and event)
//! and attempts (one per HTTP try).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::{
    Backend, Store, StoreError, Tx, id, owner, parameters, placeholders, sized_query, time,
};
use crate::clock::Timestamp;
use crate::domain::{
    ApiKeyId, DeliveryId, DeliveryState, EventId, EventType, Owner, ReplicaId, TaskId, WebhookId,
};
use crate::secrets::Keyring;

const WEBHOOK_COLUMNS: &str = "id, url, event_types, description, secret, previous_secret, \
     previous_secret_until, disabled_at, disabled_reason, owner, created_at, updated_at";

/// Attempts per statement when recording a batch (9 parameters each).
const RECORD_CHUNK: usize = 200;
/// Events and deliveries per insert statement.
const OUTBOX_CHUNK: usize = 200;

#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub url: String,
    /// Empty: every event.
    pub event_types: Vec<EventType>,
    pub description: Option<String>,
    pub secret: SecretString,
    /// Still signed with during a rotation's overlap.
    pub previous_secret: Option<SecretString>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Whose tasks' events it receives.
    pub owner: Owner,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookRecord {
    /// What its deliveries are signed with at `now`.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<SecretString> {
        signing_secrets(self, now)
    }

    pub fn wants(&self, event: EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&event)
    }
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<EventType>,
    pub description: Option<String>,
    pub secret: String,
    pub api_key_id: Option<ApiKeyId>,
    pub owner: Owner,
}

/// A settled task's event, with its payload as it will be sent.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub type_: EventType,
    pub task_id: TaskId,
    /// The task's owner: only that owner's subscriptions receive it.
    pub owner: Owner,
    pub payload: String,
}

/// One delivery to send now, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    /// The `webhook-id` header: the same on every retry of one event.
    pub event_id: EventId,
    pub event_type: EventType,
    pub payload: String,
    pub url: String,
    pub secrets: Vec<SecretString>,
    /// Attempts made before this one.
    pub attempts: u32,
    pub disabled: bool,
    /// When the delivery was queued (the task settled).
    pub created_at: Timestamp,
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
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub attempt: AttemptRecord,
    pub result: AttemptResult,
}

/// What [`Store::record_attempts`] made of a batch.
#[derive(Debug)]
pub struct Recorded {
    /// Attempts logged, their deliveries moved on.
    pub recorded: usize,
    /// Attempts the database refused even when written alone, with its reason: not logged,
    /// their deliveries' leases left to lapse.
    pub refused: Vec<(DeliveryId, StoreError)>,
}

impl Recorded {
    fn all(recorded: usize) -> Self {
        Recorded {
            recorded,
            refused: Vec::new(),
        }
    }
}

/// Why a transaction of attempts was not written.
enum RecordFailure {
    /// The database refused a statement (a value it does not take, a constraint): the data's
    /// fault, perhaps of one record only.
    Refused(StoreError),
    /// Anything else: the database is unreachable, the connection broke, a row is unreadable.
    Other(StoreError),
}

impl From<sqlx::Error> for RecordFailure {
    fn from(e: sqlx::Error) -> Self {
        if matches!(e, sqlx::Error::Database(_)) {
            RecordFailure::Refused(e.into())
        } else {
            RecordFailure::Other(e.into())
        }
    }
}

/// How an attempt ended, and what happens to the delivery next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttemptResult {
    Delivered,
    RetryAt(Timestamp),
    Failed,
    /// 410 Gone: the delivery fails and the subscription is disabled.
    Gone,
}

/// A delivery with its attempts, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub event_type: EventType,
    pub task_id: TaskId,
    pub state: DeliveryState,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<AttemptRecord>,
}

fn event_type(text: &str) -> Result<EventType, StoreError> {
    id(text, EventType::parse, "event type")
}

/// Where a webhook's signing secrets are sealed for: the current one and the previous one share
/// it, since a rotation moves the current one over in SQL (either signs for this webhook alone).
pub(super) fn secret_place(webhook: &str) -> String {
    format!("webhooks.secret:{webhook}")
}

/// A stored signing secret, opened.
/// What sending a claimed delivery needs, read from `from` (its deliveries named `d`): the
/// delivery, its event and its subscription.
fn job_read(from: &str, d: &str) -> String {
    format!(
        "SELECT {d}.id, {d}.webhook_id, {d}.event_id, {d}.attempts, {d}.created_at, e.type, \
         e.payload, w.url, w.secret, w.previous_secret, w.previous_secret_until, w.disabled_at \
         FROM {from} JOIN webhook_events e ON e.id = {d}.event_id \
         JOIN webhooks w ON w.id = {d}.webhook_id"
    )
}

fn open_secret(keys: &Keyring, stored: &str, webhook: &str) -> Result<SecretString, StoreError> {
    Ok(SecretString::from(
        keys.open_stored(stored, &secret_place(webhook))?,
    ))
}

fn decode_webhook(row: &AnyRow, keys: &Keyring) -> Result<WebhookRecord, StoreError> {
    let types: String = row.try_get("event_types")?;
    let types: Vec<String> = serde_json::from_str(&types)
        .map_err(|_| StoreError::Corrupt("webhook event types".into()))?;
    let webhook: String = row.try_get("id")?;
    Ok(WebhookRecord {
        id: id(&webhook, WebhookId::parse, "webhook id")?,
        url: row.try_get("url")?,
        event_types: types
            .iter()
            .map(|t| event_type(t))
            .collect::<Result<_, _>>()?,
        description: row.try_get("description")?,
        secret: open_secret(keys, &row.try_get::<String, _>("secret")?, &webhook)?,
        previous_secret: row
            .try_get::<Option<String>, _>("previous_secret")?
            .map(|p| open_secret(keys, &p, &webhook))
            .transpose()?,
        previous_secret_until: row
            .try_get::<Option<i64>, _>("previous_secret_until")?
            .map(time),
        disabled_at: row.try_get::<Option<i64>, _>("disabled_at")?.map(time),
        disabled_reason: row.try_get("disabled_reason")?,
        owner: owner(&row.try_get::<String, _>("owner")?)?,
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

/// Deliveries queued already leased to a replica (its deliverer is handed them in memory).
#[derive(Debug, Clone, Copy)]
pub struct DeliveryLease {
    pub owner: ReplicaId,
    pub until: Timestamp,
}

impl Tx {
    /// Writes each settled task's event and a delivery per matching, enabled subscription,
    /// inside the transaction that settles the tasks: a settled task always has its webhooks
    /// queued. Queued under `lease`, the deliveries are returned ready to send (no claim needs
    /// to read them back); without one, none are returned and any replica's claim takes them.
    pub async fn enqueue_events(
        &mut self,
        events: &[NewEvent],
        now: Timestamp,
        lease: Option<DeliveryLease>,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            // Oldest subscription first: each event's deliveries are queued (and handed) in
            // one order.
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE disabled_at IS NULL \
             ORDER BY created_at, id"
        )))
        .fetch_all(&mut *self.tx)
        .await?;
        let keys = self.keys()?;
        let hooks: Vec<WebhookRecord> = rows
            .iter()
            .map(|r| decode_webhook(r, keys))
            .collect::<Result<_, _>>()?;
        let mut wanted: Vec<&NewEvent> = Vec::new();
        let mut deliveries: Vec<(DeliveryId, &WebhookRecord, &NewEvent)> = Vec::new();
        for event in events {
            let targets: Vec<&WebhookRecord> = hooks
                .iter()
                .filter(|h| h.owner == event.owner && h.wants(event.type_))
                .collect();
            if targets.is_empty() {
                continue;
            }
            wanted.push(event);
            deliveries.extend(targets.iter().map(|h| (DeliveryId::new(), *h, event)));
        }
        for chunk in wanted.chunks(OUTBOX_CHUNK) {
            let sql = format!(
                "INSERT INTO webhook_events (id, type, task_id, payload, created_at) VALUES {}",
                placeholders(chunk.len(), 5, 0)
            );
            let mut query = sized_query(sql, chunk.len(), OUTBOX_CHUNK);
            for event in chunk {
                query = query
                    .bind(event.id.as_str())
                    .bind(event.type_.as_str())
                    .bind(event.task_id.to_string())
                    .bind(event.payload.as_str())
                    .bind(now.as_millis());
            }
            query.execute(&mut *self.tx).await?;
        }
        let (lease_owner, lease_until) = match lease {
            Some(l) => (Some(l.owner.to_string()), Some(l.until.as_millis())),
            None => (None, None),
        };
        for chunk in deliveries.chunks(OUTBOX_CHUNK) {
            // Pending, no attempts yet, due at once.
            let sql = format!(
                "INSERT INTO webhook_deliveries (id, webhook_id, event_id, state, attempts, \
                 next_attempt_at, created_at, updated_at, lease_owner, lease_until) VALUES {}",
                placeholders(chunk.len(), 10, 0)
            );
            let mut query = sized_query(sql, chunk.len(), OUTBOX_CHUNK);
            for (delivery, hook, event) in chunk {
                query = query
                    .bind(delivery.to_string())
                    .bind(hook.id.to_string())
                    .bind(event.id.as_str())
                    .bind(DeliveryState::Pending.as_str())
                    .bind(0_i64)
                    .bind(now.as_millis())
                    .bind(now.as_millis())
                    .bind(now.as_millis())
                    .bind(lease_owner.clone())
                    .bind(lease_until);
            }
            query.execute(&mut *self.tx).await?;
        }
        if lease.is_none() {
            return Ok(Vec::new());
        }
        Ok(deliveries
            .into_iter()
            .map(|(delivery_id, hook, event)| DeliveryJob {
                delivery_id,
                webhook_id: hook.id,
                event_id: event.id.clone(),
                event_type: event.type_,
                payload: event.payload.clone(),
                url: hook.url.clone(),
                secrets: signing_secrets(hook, now),
                attempts: 0,
                disabled: false,
                created_at: now,
            })
            .collect())
    }
}

/// What a delivery of `hook` is signed with at `now`: its secret, and the previous one while a
/// rotation's overlap lasts.
fn signing_secrets(hook: &WebhookRecord, now: Timestamp) -> Vec<SecretString> {
    let overlap = hook
        .previous_secret_until
        .is_some_and(|until| until.timestamp_millis() > now.as_millis());
    std::iter::once(hook.secret.clone())
        .chain(hook.previous_secret.clone().filter(|_| overlap))
        .collect()
}

impl Store {
    /// Subscribes, unless the owner already has `most` subscriptions (then `None`): the count
    /// and the insert are one statement.
    pub async fn insert_webhook(
        &self,
        hook: &NewWebhook,
        most: u32,
        now: Timestamp,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let types: Vec<&str> = hook.event_types.iter().map(|t| t.as_str()).collect();
        let keys = self.keys()?;
        let webhook = WebhookId::new().to_string();
        let secret = keys.seal(hook.secret.as_bytes(), &secret_place(&webhook))?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO webhooks (id, url, event_types, description, secret, api_key_id, \
             created_at, updated_at, owner) SELECT $1, $2, $3, $4, $5, $6, $7, $7, $8 \
             WHERE (SELECT COUNT(*) FROM webhooks WHERE owner = $8) < $9 \
             RETURNING {WEBHOOK_COLUMNS}"
        )))
        .bind(webhook.as_str())
        .bind(hook.url.as_str())
        .bind(serde_json::to_string(&types).unwrap_or_else(|_| "[]".into()))
        .bind(hook.description.clone())
        .bind(secret)
        .bind(hook.api_key_id.map(|k| k.to_string()))
        .bind(now.as_millis())
        .bind(hook.owner.as_str())
        .bind(i64::from(most))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| decode_webhook(r, self.keys()?))
            .transpose()
    }

    pub async fn webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| decode_webhook(r, self.keys()?))
            .transpose()
    }

    /// Every subscription, or one owner's.
    pub async fn list_webhooks(
        &self,
        owner: Option<&Owner>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE ($1 IS NULL OR owner = $1) ORDER BY id"
        )))
        .bind(owner.map(Owner::as_str))
        .fetch_all(&self.pool)
        .await?;
        let keys = self.keys()?;
        rows.iter().map(|r| decode_webhook(r, keys)).collect()
    }

    /// Deletes a subscription with its pending deliveries and log.
    pub async fn delete_webhook(&self, id: WebhookId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A new secret; the old one keeps signing until `previous_until`.
    pub async fn rotate_webhook_secret(
        &self,
        id: WebhookId,
        secret: &str,
        previous_until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let secret = self
            .keys()?
            .seal(secret.as_bytes(), &secret_place(&id.to_string()))?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_until = $3, \
             secret = $2, updated_at = $4 WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}"
        )))
        .bind(id.to_string())
        .bind(secret)
        .bind(previous_until.as_millis())
        .bind(now.as_millis())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| decode_webhook(r, self.keys()?))
            .transpose()
    }

    /// Leases due deliveries for `lease`; each is sent by one replica only.
    pub async fn claim_deliveries(
        &self,
        owner: ReplicaId,
        now: Timestamp,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        self.claim_deliveries_except(owner, now, lease, limit, &[])
            .await
    }

    /// The same, passing over the deliveries of the subscriptions in `skip` (those with as
    /// many attempts in flight as they may have).
    pub async fn claim_deliveries_except(
        &self,
        owner: ReplicaId,
        now: Timestamp,
        lease: Duration,
        limit: u32,
        skip: &[WebhookId],
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE OF d SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let except = except("d.webhook_id", skip, 3);
        let claim = format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN ( \
               SELECT d.id FROM webhook_deliveries d WHERE d.state = 'pending' \
               AND d.next_attempt_at <= $3 AND (d.lease_until IS NULL OR d.lease_until < $3){except} \
               ORDER BY d.next_attempt_at LIMIT ${} {lock})",
            skip.len() + 4
        );
        let bind = |sql: String| {
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .bind(owner.to_string())
                .bind((now + lease).as_millis())
                .bind(now.as_millis());
            for webhook in skip {
                query = query.bind(webhook.to_string());
            }
            query.bind(i64::from(limit))
        };
        let rows = match self.backend {
            // One round trip: the claim, and what sending each needs. Claims follow each other
            // while a tick's deliveries drain, so each round trip saved is one less wait.
            Backend::Postgres => {
                let returning = "RETURNING id, webhook_id, event_id, attempts, created_at";
                let sql = format!("WITH c AS ({claim} {returning}) {}", job_read("c", "c"));
                bind(sql).fetch_all(&self.pool).await?
            }
            // SQLite has no writes inside WITH: the claim, then one read of them all.
            Backend::Sqlite => {
                let ids: Vec<String> = bind(format!("{claim} RETURNING id"))
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>("id"))
                    .collect::<Result<_, _>>()?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                // Only placeholders are formatted into the SQL.
                let read = job_read("webhook_deliveries d", "d");
                let sql = format!("{read} WHERE d.id IN ({})", parameters(ids.len(), 0));
                let most = usize::try_from(limit).unwrap_or(usize::MAX);
                let mut query = sized_query(sql, ids.len(), most);
                for id in &ids {
                    query = query.bind(id.as_str());
                }
                query.fetch_all(&self.pool).await?
            }
        };
        let mut jobs = Vec::with_capacity(rows.len());
        let keys = self.keys()?;
        for row in &rows {
            let webhook: String = row.try_get("webhook_id")?;
            let mut secrets = vec![open_secret(
                keys,
                &row.try_get::<String, _>("secret")?,
                &webhook,
            )?];
            let previous: Option<String> = row.try_get("previous_secret")?;
            let until: Option<i64> = row.try_get("previous_secret_until")?;
            if let (Some(previous), Some(until)) = (previous, until)
                && until > now.as_millis()
            {
                secrets.push(open_secret(keys, &previous, &webhook)?);
            }
            jobs.push(DeliveryJob {
                delivery_id: id(
                    &row.try_get::<String, _>("id")?,
                    DeliveryId::parse,
                    "delivery id",
                )?,
                webhook_id: id(&webhook, WebhookId::parse, "webhook id")?,
                event_id: EventId::from_stored(row.try_get("event_id")?),
                event_type: event_type(&row.try_get::<String, _>("type")?)?,
                payload: row.try_get("payload")?,
                url: row.try_get("url")?,
                secrets,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
                created_at: Timestamp::from_millis(row.try_get("created_at")?),
            });
        }
        Ok(jobs)
    }

    /// Gives claimed deliveries back as they were (attempts, schedule), for any replica's next
    /// claim: held back because their subscription has its share in flight.
    pub async fn unclaim_deliveries(
        &self,
        owner: ReplicaId,
        ids: &[DeliveryId],
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(OUTBOX_CHUNK) {
            let sql = format!(
                "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL \
                 WHERE lease_owner = $1 AND state = 'pending' AND id IN ({})",
                parameters(chunk.len(), 1)
            );
            let mut query = sized_query(sql, chunk.len(), OUTBOX_CHUNK).bind(owner.to_string());
            for id in chunk {
                query = query.bind(id.to_string());
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// When the next pending delivery may be claimed (due, and its lease over), passing over
    /// the subscriptions in `skip`; `None` if there is none.
    pub async fn next_delivery_due(
        &self,
        skip: &[WebhookId],
    ) -> Result<Option<Timestamp>, StoreError> {
        let sql = format!(
            "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until \
             ELSE next_attempt_at END) AS due FROM webhook_deliveries \
             WHERE state = 'pending'{}",
            except("webhook_id", skip, 0)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for webhook in skip {
            query = query.bind(webhook.to_string());
        }
        let row = query.fetch_one(&self.pool).await?;
        Ok(row
            .try_get::<Option<i64>, _>("due")?
            .map(Timestamp::from_millis))
    }

    /// Logs attempts and moves their deliveries on, all in one transaction (a burst of
    /// settled tasks means thousands of attempts a second; one transaction each would not keep
    /// up). Only a delivery's lease holder may: a replica whose lease lapsed mid-attempt cannot
    /// overwrite another's result, and its attempt is not logged.
    ///
    /// If the database refuses the batch, each attempt is written alone, so that one record it
    /// refuses takes no other down; the refused ones are returned and their leases left to
    /// lapse. An unreachable database is an error: every lease lapses.
    pub async fn record_attempts(
        &self,
        owner: ReplicaId,
        batch: &[RecordedAttempt],
        now: Timestamp,
    ) -> Result<Recorded, StoreError> {
        let alone = match self.record_together(owner, batch, now).await {
            Ok(recorded) => return Ok(Recorded::all(recorded)),
            Err(RecordFailure::Other(e)) => return Err(e),
            Err(RecordFailure::Refused(e)) => match batch {
                [one] => {
                    return Ok(Recorded {
                        recorded: 0,
                        refused: vec![(one.delivery_id, e)],
                    });
                }
                many => many,
            },
        };
        let mut out = Recorded::all(0);
        for one in alone {
            match self
                .record_together(owner, std::slice::from_ref(one), now)
                .await
            {
                Ok(n) => out.recorded += n,
                Err(RecordFailure::Refused(e)) => out.refused.push((one.delivery_id, e)),
                Err(RecordFailure::Other(e)) => return Err(e),
            }
        }
        Ok(out)
    }

    /// [`Store::record_attempts`] in one transaction. Returns how many were recorded.
    async fn record_together(
        &self,
        owner: ReplicaId,
        batch: &[RecordedAttempt],
        now: Timestamp,
    ) -> Result<usize, RecordFailure> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await.map_err(RecordFailure::Other)?;
        // Losing this in a database crash only means the deliveries are sent again.
        tx.relax_durability().await.map_err(RecordFailure::Other)?;
        let mut held = HashSet::new();
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
            let mut query = sized_query(sql, chunk.len(), RECORD_CHUNK)
                .bind(now.as_millis())
                .bind(owner.to_string());
            for r in chunk {
                let (state, next, finished) = match r.result {
                    AttemptResult::Delivered => (DeliveryState::Delivered, now, Some(now)),
                    AttemptResult::RetryAt(at) => (DeliveryState::Pending, at, None),
                    AttemptResult::Failed | AttemptResult::Gone => {
                        (DeliveryState::Failed, now, Some(now))
                    }
                };
                query = query
                    .bind(r.delivery_id.to_string())
                    .bind(state.as_str())
                    .bind(i64::from(r.attempt.attempt))
                    .bind(next.as_millis())
                    .bind(r.attempt.status_code.map(i64::from))
                    .bind(r.attempt.error.clone())
                    .bind(finished.map(Timestamp::as_millis));
            }
            for row in query.fetch_all(&mut *tx.tx).await? {
                held.insert(row.try_get::<String, _>(0)?);
            }
        }
        let recorded: Vec<&RecordedAttempt> = batch
            .iter()
            .filter(|r| held.contains(&r.delivery_id.to_string()))
            .collect();
        for chunk in recorded.chunks(RECORD_CHUNK) {
            let sql = format!(
                "INSERT INTO webhook_attempts (id, delivery_id, webhook_id, attempt, status_code, \
                 error, duration_ms, started_at, finished_at) VALUES {}",
                placeholders(chunk.len(), 9, 0)
            );
            let mut query = sized_query(sql, chunk.len(), RECORD_CHUNK);
            for r in chunk {
                query = query
                    .bind(Uuid::now_v7().to_string())
                    .bind(r.delivery_id.to_string())
                    .bind(r.webhook_id.to_string())
                    .bind(i64::from(r.attempt.attempt))
                    .bind(r.attempt.status_code.map(i64::from))
                    .bind(r.attempt.error.clone())
                    .bind(i64::try_from(r.attempt.duration_ms).unwrap_or(i64::MAX))
                    .bind(r.attempt.started_at.timestamp_millis())
                    .bind(r.attempt.finished_at.timestamp_millis());
            }
            query.execute(&mut *tx.tx).await?;
        }
        for gone in recorded.iter().filter(|r| r.result == AttemptResult::Gone) {
            sqlx::query(
                "UPDATE webhooks SET disabled_at = $2, disabled_reason = $3, updated_at = $2 \
                 WHERE id = $1 AND disabled_at IS NULL",
            )
            .bind(gone.webhook_id.to_string())
            .bind(now.as_millis())
            .bind("the endpoint answered 410 Gone")
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await.map_err(RecordFailure::Other)?;
        Ok(recorded.len())
    }

    /// Fails a delivery without sending it (its subscription is disabled).
    pub async fn abandon_delivery(
        &self,
        owner: ReplicaId,
        delivery: DeliveryId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET state = 'failed', last_error = $3, lease_owner = NULL, \
             lease_until = NULL, updated_at = $4, finished_at = $4 WHERE id = $1 AND lease_owner = $2",
        )
        .bind(delivery.to_string())
        .bind(owner.to_string())
        .bind(reason)
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes a delivery due now again, whatever its state. `false`: no such delivery.
    pub async fn retry_delivery(
        &self,
        webhook: WebhookId,
        delivery: DeliveryId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $3, \
             finished_at = NULL, updated_at = $3 WHERE id = $1 AND webhook_id = $2",
        )
        .bind(delivery.to_string())
        .bind(webhook.to_string())
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A subscription's deliveries, newest first, each with its attempts.
    pub async fn list_deliveries(
        &self,
        webhook: WebhookId,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.event_id, d.state, d.next_attempt_at, d.created_at, e.type, e.task_id \
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.webhook_id = $1 AND ($2 IS NULL OR d.id < $2) ORDER BY d.id DESC LIMIT $3",
        )
        .bind(webhook.to_string())
        .bind(before.map(|b| b.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let delivery: String = row.try_get("id")?;
            let attempts = sqlx::query(
                "SELECT attempt, status_code, error, duration_ms, started_at, finished_at \
                 FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt, id",
            )
            .bind(delivery.as_str())
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
                    started_at: time(a.try_get("started_at")?),
                    finished_at: time(a.try_get("finished_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let state = id(
                &row.try_get::<String, _>("state")?,
                DeliveryState::parse,
                "delivery state",
            )?;
            out.push(DeliveryRecord {
                next_attempt_at: (state == DeliveryState::Pending)
                    .then(|| row.try_get::<i64, _>("next_attempt_at"))
                    .transpose()?
                    .map(time),
                id: id(&delivery, DeliveryId::parse, "delivery id")?,
                event_id: EventId::from_stored(row.try_get("event_id")?),
                event_type: event_type(&row.try_get::<String, _>("type")?)?,
                task_id: id(
                    &row.try_get::<String, _>("task_id")?,
                    TaskId::parse,
                    "task id",
                )?,
                state,
                created_at: time(row.try_get("created_at")?),
                attempts,
            });
        }
        Ok(out)
    }
}

/// ` AND column NOT IN ($n, …)` for `skip`, its parameters after the first `before`.
fn except(column: &str, skip: &[WebhookId], before: usize) -> String {
    if skip.is_empty() {
        String::new()
    } else {
        format!(" AND {column} NOT IN ({})", parameters(skip.len(), before))
    }
}

//! Idempotency-Key claims: the first request under a key does the work; repeats get its answer,
//! kept as the bytes the caller handed over — sealed, since an answer may carry a secret (a new
//! API key, a webhook's signing secret). Requests are told apart by a keyed fingerprint, never
//! a plain hash of a body that may hold a password.

use std::time::Duration;

use sqlx::Row;

use super::{Store, StoreError, id, placeholders, sized_query};
use crate::clock::Timestamp;
use crate::domain::{ApiKeyId, TaskId};

/// How long an answer is kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

/// A key, scoped to the API key that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub api_key_id: ApiKeyId,
    pub key: String,
}

/// A stored answer: status, body and `Location`, as first sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First time: do the work.
    Fresh,
    /// Done before: answer the same.
    Replay(StoredAnswer),
    /// The same key with another request.
    Mismatch,
    /// Still being worked on, since `started_at`; `task_id` once the task is recorded.
    InProgress {
        task_id: Option<TaskId>,
        started_at: Timestamp,
    },
}

/// Where a kept answer is sealed for: its key, so it cannot be moved to another.
pub(super) fn answer_place(api_key_id: &str, key: &str) -> String {
    format!("idempotency_keys.body:{api_key_id}:{key}")
}

impl IdempotencyKey {
    fn place(&self) -> String {
        answer_place(&self.api_key_id.to_string(), &self.key)
    }
}

impl Store {
    /// Claims a key for a request with these fingerprints (the request's keyed hash under each
    /// server key, the current one first: one taken before a key rotation still matches). A
    /// claim older than `stale` whose task was never recorded is taken over: its request cannot
    /// have reached EM.
    pub async fn claim_idempotency(
        &self,
        key: &IdempotencyKey,
        fingerprints: &[String],
        now: Timestamp,
        stale: Duration,
    ) -> Result<Claim, StoreError> {
        // On a connection given back without a round trip (see `super::local`): a keyed
        // create makes this claim and keeps its answer, each a statement of its own.
        let mut held = self.connection().await?;
        let claim = self
            .claim_on(held.connection(), key, fingerprints, now, stale)
            .await;
        // Every other error comes after the statements ran to their end.
        if !matches!(claim, Err(StoreError::Unavailable(_))) {
            held.give_back();
        }
        match claim? {
            Some(claim) => Ok(claim),
            // Purged between the insert and the read: try once more.
            None => Box::pin(self.claim_idempotency(key, fingerprints, now, stale)).await,
        }
    }

    /// Stores the answer (once: a later call does not overwrite it). One statement, atomic on
    /// its own, on a connection given back without a round trip: a keyed create waits for it
    /// before its answer is sent.
    pub async fn finish_idempotency(
        &self,
        key: &IdempotencyKey,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        let body = self.keys()?.seal(answer.body.as_bytes(), &key.place())?;
        let mut held = self.connection().await?;
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', status = $3, body = $4, location = $5 \
             WHERE api_key_id = $1 AND key = $2 AND state = 'in_progress'",
        )
        .bind(key.api_key_id.to_string())
        .bind(key.key.as_str())
        .bind(i64::from(answer.status))
        .bind(body)
        .bind(answer.location.clone())
        .execute(held.connection())
        .await?;
        held.give_back();
        Ok(())
    }

    /// Gives the key up (the work failed in a way worth retrying).
    pub async fn release_idempotency(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE api_key_id = $1 AND key = $2 AND state = 'in_progress'")
            .bind(key.api_key_id.to_string())
            .bind(key.key.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Drops answers kept past their 24 hours.
    pub async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < $1")
            .bind(now.as_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// [`Store::claim_idempotency`] on `connection`; none when the key was purged between the
    /// insert and the read.
    async fn claim_on(
        &self,
        connection: &mut sqlx::AnyConnection,
        key: &IdempotencyKey,
        fingerprints: &[String],
        now: Timestamp,
        stale: Duration,
    ) -> Result<Option<Claim>, StoreError> {
        let Some(fingerprint) = fingerprints.first() else {
            return Ok(Some(Claim::Mismatch));
        };
        // A new key, or one whose 24 hours are over (purged or not yet), is claimed afresh.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (api_key_id, key, fingerprint, state, created_at, expires_at) \
             VALUES ($1, $2, $3, 'in_progress', $4, $5) ON CONFLICT (api_key_id, key) DO UPDATE \
             SET fingerprint = excluded.fingerprint, state = 'in_progress', task_id = NULL, \
             status = NULL, body = NULL, location = NULL, created_at = excluded.created_at, \
             expires_at = excluded.expires_at WHERE idempotency_keys.expires_at < $4",
        )
        .bind(key.api_key_id.to_string())
        .bind(key.key.as_str())
        .bind(fingerprint.as_str())
        .bind(now.as_millis())
        .bind((now + KEEP).as_millis())
        .execute(&mut *connection)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Some(Claim::Fresh));
        }
        let row = sqlx::query(
            "SELECT fingerprint, state, task_id, status, body, location, created_at \
             FROM idempotency_keys WHERE api_key_id = $1 AND key = $2",
        )
        .bind(key.api_key_id.to_string())
        .bind(key.key.as_str())
        .fetch_optional(&mut *connection)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: String = row.try_get("fingerprint")?;
        if !fingerprints.contains(&stored) {
            return Ok(Some(Claim::Mismatch));
        }
        let state: String = row.try_get("state")?;
        if state == "done" {
            return Ok(Some(Claim::Replay(StoredAnswer {
                status: u16::try_from(row.try_get::<Option<i64>, _>("status")?.unwrap_or(500))
                    .unwrap_or(500),
                body: match row.try_get::<Option<String>, _>("body")? {
                    Some(body) => self.keys()?.open_stored(&body, &key.place())?,
                    None => String::new(),
                },
                location: row.try_get("location")?,
            })));
        }
        let task_id = row
            .try_get::<Option<String>, _>("task_id")?
            .map(|t| id(&t, TaskId::parse, "task id"))
            .transpose()?;
        let started_at = Timestamp::from_millis(row.try_get("created_at")?);
        if task_id.is_none() && started_at < now - stale {
            let taken = sqlx::query(
                "UPDATE idempotency_keys SET created_at = $3 WHERE api_key_id = $1 AND key = $2 \
                 AND state = 'in_progress' AND task_id IS NULL AND created_at = $4",
            )
            .bind(key.api_key_id.to_string())
            .bind(key.key.as_str())
            .bind(now.as_millis())
            .bind(started_at.as_millis())
            .execute(&mut *connection)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Some(Claim::Fresh));
            }
        }
        Ok(Some(Claim::InProgress {
            task_id,
            started_at,
        }))
    }
}

/// Links keys' requests to the tasks they became, from the rows of a `WITH` item `v` (see
/// [`link_values`]).
pub(super) const LINK: &str = "UPDATE idempotency_keys SET task_id = v_task FROM v \
     WHERE api_key_id = v_api_key_id AND key = v_key";

/// The `WITH` item `v` of [`LINK`]: `links` rows, numbered after the first `skip` parameters,
/// bound by [`bind_links`].
pub(super) fn link_values(links: usize, skip: usize) -> String {
    format!(
        "v (v_api_key_id, v_key, v_task) AS (VALUES {})",
        placeholders(links, 3, skip)
    )
}

pub(super) fn bind_links<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    links: &[(&IdempotencyKey, TaskId)],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for (key, task) in links {
        query = query
            .bind(key.api_key_id.to_string())
            .bind(key.key.clone())
            .bind(task.to_string());
    }
    query
}

/// Links each key's request to the task it became: one statement for up to
/// [`super::tasks::INSERT_CHUNK`] keys, on the intents' transaction.
pub(super) fn link_query(
    links: &[(&IdempotencyKey, TaskId)],
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let sql = format!("WITH {} {LINK}", link_values(links.len(), 0));
    bind_links(
        sized_query(sql, links.len(), super::tasks::INSERT_CHUNK),
        links,
    )
}

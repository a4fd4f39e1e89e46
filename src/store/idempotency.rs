//! Idempotency-Key claims: the first request under a key does the work; repeats get its answer,
//! kept as the bytes the caller handed over — sealed, since an answer may carry a secret (a new
//! API key, a webhook's signing secret). Requests are told apart by a keyed fingerprint, never
//! a plain hash of a body that may hold a password.

use std::time::Duration;

use sqlx::Row;

use super::{Store, StoreError, Tx, id};
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
        let Some(fingerprint) = fingerprints.first() else {
            return Ok(Claim::Mismatch);
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
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Fresh);
        }
        let row = sqlx::query(
            "SELECT fingerprint, state, task_id, status, body, location, created_at \
             FROM idempotency_keys WHERE api_key_id = $1 AND key = $2",
        )
        .bind(key.api_key_id.to_string())
        .bind(key.key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Purged between the insert and the read: try once more.
            return Box::pin(self.claim_idempotency(key, fingerprints, now, stale)).await;
        };
        let stored: String = row.try_get("fingerprint")?;
        if !fingerprints.contains(&stored) {
            return Ok(Claim::Mismatch);
        }
        let state: String = row.try_get("state")?;
        if state == "done" {
            return Ok(Claim::Replay(StoredAnswer {
                status: u16::try_from(row.try_get::<Option<i64>, _>("status")?.unwrap_or(500))
                    .unwrap_or(500),
                body: match row.try_get::<Option<String>, _>("body")? {
                    Some(body) => self.keys()?.open_stored(&body, &key.place())?,
                    None => String::new(),
                },
                location: row.try_get("location")?,
            }));
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
            .execute(&self.pool)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Claim::Fresh);
            }
        }
        Ok(Claim::InProgress {
            task_id,
            started_at,
        })
    }

    /// Stores the answer (once: a later call does not overwrite it).
    pub async fn finish_idempotency(
        &self,
        key: &IdempotencyKey,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.finish_idempotency(key, answer).await?;
        tx.commit().await
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
}

impl Tx {
    /// Stores the answer (once: a later call does not overwrite it).
    pub async fn finish_idempotency(
        &mut self,
        key: &IdempotencyKey,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        let body = self.keys()?.seal(answer.body.as_bytes(), &key.place())?;
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', status = $3, body = $4, location = $5 \
             WHERE api_key_id = $1 AND key = $2 AND state = 'in_progress'",
        )
        .bind(key.api_key_id.to_string())
        .bind(key.key.as_str())
        .bind(i64::from(answer.status))
        .bind(body)
        .bind(answer.location.clone())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The key's request became this task.
    pub async fn link_idempotency(
        &mut self,
        key: &IdempotencyKey,
        task: TaskId,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE idempotency_keys SET task_id = $3 WHERE api_key_id = $1 AND key = $2")
            .bind(key.api_key_id.to_string())
            .bind(key.key.as_str())
            .bind(task.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

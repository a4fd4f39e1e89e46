//! The start-up pass: every stored secret ends sealed with the current server key. Rows written
//! in clear before secrets were sealed are sealed, and values sealed with a previous key are
//! sealed again with the current one (after which the previous key may be dropped). Each row is
//! rewritten only if it still holds what was read, so replicas starting together do no harm.

use sqlx::{AssertSqlSafe, Row};

use super::idempotency::answer_place;
use super::webhooks::secret_place;
use super::{Store, StoreError};

/// Rows read per round: the pass holds no more than this in memory.
const ROUND: i64 = 500;

/// What the pass sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Webhook signing secrets (current and previous).
    pub webhook_secrets: u64,
    /// Answers kept for `Idempotency-Key`.
    pub answers: u64,
}

impl Resealed {
    pub fn total(&self) -> u64 {
        self.webhook_secrets + self.answers
    }
}

impl Store {
    /// Seals whatever is not yet sealed with the current key. Fails, naming the key id, when a
    /// value was sealed with a key the gateway was not given.
    pub async fn seal_stored_secrets(&self) -> Result<Resealed, StoreError> {
        let mut done = Resealed::default();
        for column in ["secret", "previous_secret"] {
            done.webhook_secrets += self.reseal_webhooks(column).await?;
        }
        done.answers = self.reseal_answers().await?;
        Ok(done)
    }

    async fn reseal_webhooks(&self, column: &'static str) -> Result<u64, StoreError> {
        let keys = self.keys()?;
        let current = format!("{}%", keys.current_prefix());
        let mut done = 0;
        loop {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT id, {column} AS value FROM webhooks \
                 WHERE {column} IS NOT NULL AND {column} NOT LIKE $1 ORDER BY id LIMIT $2"
            )))
            .bind(current.as_str())
            .bind(ROUND)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(done);
            }
            let before = done;
            for row in &rows {
                let id: String = row.try_get("id")?;
                let value: String = row.try_get("value")?;
                let place = secret_place(&id);
                let sealed = keys.seal(keys.open_stored(&value, &place)?.as_bytes(), &place)?;
                done += sqlx::query(AssertSqlSafe(format!(
                    "UPDATE webhooks SET {column} = $1 WHERE id = $2 AND {column} = $3"
                )))
                .bind(sealed)
                .bind(id.as_str())
                .bind(value.as_str())
                .execute(&self.pool)
                .await?
                .rows_affected();
            }
            // Nothing rewritten: another replica is at it (or an old one writes in clear);
            // what is left is sealed at the next start.
            if done == before {
                return Ok(done);
            }
        }
    }

    async fn reseal_answers(&self) -> Result<u64, StoreError> {
        let keys = self.keys()?;
        let current = format!("{}%", keys.current_prefix());
        let mut done = 0;
        loop {
            let rows = sqlx::query(
                "SELECT api_key_id, key, body FROM idempotency_keys \
                 WHERE body IS NOT NULL AND body NOT LIKE $1 ORDER BY api_key_id, key LIMIT $2",
            )
            .bind(current.as_str())
            .bind(ROUND)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(done);
            }
            let before = done;
            for row in &rows {
                let api_key_id: String = row.try_get("api_key_id")?;
                let key: String = row.try_get("key")?;
                let body: String = row.try_get("body")?;
                let place = answer_place(&api_key_id, &key);
                let sealed = keys.seal(keys.open_stored(&body, &place)?.as_bytes(), &place)?;
                done += sqlx::query(
                    "UPDATE idempotency_keys SET body = $1 \
                     WHERE api_key_id = $2 AND key = $3 AND body = $4",
                )
                .bind(sealed)
                .bind(api_key_id.as_str())
                .bind(key.as_str())
                .bind(body.as_str())
                .execute(&self.pool)
                .await?
                .rows_affected();
            }
            // Nothing rewritten: another replica is at it (or an old one writes in clear);
            // what is left is sealed at the next start.
            if done == before {
                return Ok(done);
            }
        }
    }
}

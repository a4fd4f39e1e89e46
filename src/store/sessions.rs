//! Which replica holds which EM logon session, and whether it is still alive.

use sqlx::AssertSqlSafe;

use super::{Store, StoreError, now_ms, parameters};

impl Store {
    /// This replica's live sessions are alive now; any other session it registered is lost
    /// (EM expired it, or the pool logged on again), so its tasks become orphans at once.
    pub async fn heartbeat_sessions(
        &self,
        owner: &str,
        live: &[(usize, String)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for (slot, session_id) in live {
            sqlx::query(
                "INSERT INTO em_sessions (session_id, owner, slot, heartbeat_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (session_id) DO UPDATE SET heartbeat_at = $4, lost_at = NULL",
            )
            .bind(session_id.as_str())
            .bind(owner)
            .bind(i64::try_from(*slot).unwrap_or(0))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // Every other session of this replica is gone (by name, not by heartbeat time: a slot
        // may log on again within the millisecond of its last heartbeat).
        let others = if live.is_empty() {
            String::new()
        } else {
            format!(" AND session_id NOT IN ({})", parameters(live.len(), 2))
        };
        let sql = format!(
            "UPDATE em_sessions SET lost_at = $2 WHERE owner = $1 AND lost_at IS NULL{others}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(owner).bind(now);
        for (_, session_id) in live {
            query = query.bind(session_id.as_str());
        }
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// On shutdown: every session of this replica is gone.
    pub async fn release_sessions(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE em_sessions SET lost_at = $2 WHERE owner = $1 AND lost_at IS NULL")
            .bind(owner)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// On shutdown: the tasks and deliveries this replica leased are free for others at once.
    pub async fn release_leases(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets sessions lost long ago.
    pub async fn prune_sessions(&self, lost_before: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM em_sessions WHERE lost_at IS NOT NULL AND lost_at < $1")
                .bind(lost_before)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}

//! Which replica holds which EM logon session, whether it is still alive, and which running
//! tasks are therefore orphans.

use std::time::Duration;

use sqlx::AssertSqlSafe;

use super::{Store, StoreError, parameters};
use crate::clock::Timestamp;
use crate::domain::ReplicaId;

/// When a running task can no longer be followed on EM, and for how long a replica that takes
/// it over keeps the others off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanRules {
    pub now: Timestamp,
    /// The lease taken lasts until then.
    pub lease_until: Timestamp,
    /// An intent older than this with no EM task id was not answered: the submit is over.
    pub unsent_before: Timestamp,
    /// A session whose replica has not heartbeaten since is gone with its replica.
    pub heartbeat_after: Timestamp,
}

impl OrphanRules {
    /// The rules at `now` for a poller ticking every `interval`, whose EM calls time out after
    /// `unsent_after`: a replica that missed ten heartbeats is gone; a lease lasts five ticks.
    pub fn at(now: Timestamp, interval: Duration, unsent_after: Duration) -> Self {
        OrphanRules {
            now,
            lease_until: now + (interval * 5).max(Duration::from_secs(1)),
            unsent_before: now - unsent_after,
            heartbeat_after: now - (interval * 10).max(Duration::from_secs(1)),
        }
    }
}

impl Store {
    /// This replica's live sessions are alive now; any other session it registered is lost
    /// (EM expired it, or the pool logged on again), so its tasks become orphans at once.
    pub async fn heartbeat_sessions(
        &self,
        owner: ReplicaId,
        live: &[(usize, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for (slot, session_id) in live {
            sqlx::query(
                "INSERT INTO em_sessions (session_id, owner, slot, heartbeat_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (session_id) DO UPDATE SET heartbeat_at = $4, lost_at = NULL",
            )
            .bind(session_id.as_str())
            .bind(owner.to_string())
            .bind(i64::try_from(*slot).unwrap_or(0))
            .bind(now.as_millis())
            .execute(&mut *tx.tx)
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
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(owner.to_string())
            .bind(now.as_millis());
        for (_, session_id) in live {
            query = query.bind(session_id.as_str());
        }
        query.execute(&mut *tx.tx).await?;
        tx.commit().await
    }

    /// On shutdown: every session of this replica is gone.
    pub async fn release_sessions(
        &self,
        owner: ReplicaId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE em_sessions SET lost_at = $2 WHERE owner = $1 AND lost_at IS NULL")
            .bind(owner.to_string())
            .bind(now.as_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// On shutdown: the tasks and deliveries this replica leased are free for others at once.
    pub async fn release_leases(&self, owner: ReplicaId) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner.to_string())
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
        )
        .bind(owner.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets sessions lost before `lost_before`.
    pub async fn prune_sessions(&self, lost_before: Timestamp) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM em_sessions WHERE lost_at IS NOT NULL AND lost_at < $1")
                .bind(lost_before.as_millis())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}

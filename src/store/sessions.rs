//! Which replica holds which EM logon session, whether it is still alive, and which running
//! tasks are therefore orphans.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, Tx, parameters};
use crate::clock::Timestamp;
use crate::domain::ReplicaId;

/// When a running task can no longer be followed on EM, and for how long a replica that takes
/// it over keeps the others off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanRules {
    pub now: Timestamp,
    /// The lease taken lasts until then.
    pub lease_until: Timestamp,
    /// Which intents EM's answer never came for this claim looks for.
    pub unsent: UnsentLook,
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
            unsent: UnsentLook::All {
                before: now - unsent_after,
            },
            heartbeat_after: now - (interval * 10).max(Duration::from_secs(1)),
        }
    }
}

/// Intents EM's answer never came for: an intent written longer than `unsent_after` ago that
/// still has no EM task id. Its submit is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsentLook {
    /// Every intent written before `before` whose lease is free. On Postgres this steps over an
    /// index entry for every intent written since the table was last vacuumed, answered or not.
    All { before: Timestamp },
    /// The intents written in `[from, before)` that no replica has looked at, and those looked
    /// at before whose lease is free: the entries of the intents written since the last look,
    /// and of the few looked at.
    Since { from: Timestamp, before: Timestamp },
    /// Only those looked at before whose lease is free: nothing tells of an intent left behind
    /// since the last look (see [`crate::tasks::Unanswered`] and [`replica_gone_lately`]).
    LookedAt { before: Timestamp },
}

impl UnsentLook {
    /// Intents written from this time on are not due yet.
    pub fn before(&self) -> Timestamp {
        match *self {
            UnsentLook::All { before }
            | UnsentLook::Since { before, .. }
            | UnsentLook::LookedAt { before } => before,
        }
    }
}

/// A row of the sessions table: a handful per replica, so it is read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub session_id: String,
    pub heartbeat_at: Timestamp,
    pub lost_at: Option<Timestamp>,
}

/// The sessions whose tasks are orphans: lost (EM expired it, the pool logged on again, or its
/// replica released it on shutdown), or whose replica stopped heartbeating. Orphans are looked
/// for among these sessions' tasks only, never by walking every running task.
pub fn dead_sessions(sessions: &[SessionRow], rules: &OrphanRules) -> Vec<String> {
    sessions
        .iter()
        .filter(|s| s.is_dead(rules))
        .map(|s| s.session_id.clone())
        .collect()
}

impl SessionRow {
    /// Lost, or its replica stopped heartbeating.
    fn is_dead(&self, rules: &OrphanRules) -> bool {
        self.lost_at.is_some() || self.heartbeat_at <= rules.heartbeat_after
    }
}

/// Whether a replica may have gone lately, leaving intents not due yet: a session of the
/// dead (see [`dead_sessions`]) whose replica was last heard of (its last heartbeat, or when it
/// gave the session up) no longer than a heartbeat span before `before`. What it wrote until
/// then comes due after `before`; a replica alive knows its own intents.
pub fn replica_gone_lately(
    sessions: &[SessionRow],
    rules: &OrphanRules,
    before: Timestamp,
) -> bool {
    let span = rules.now.since(rules.heartbeat_after);
    sessions.iter().any(|s| {
        let last_heard = s
            .lost_at
            .map_or(s.heartbeat_at, |lost| lost.max(s.heartbeat_at));
        s.is_dead(rules) && last_heard + span >= before
    })
}

impl Store {
    /// Every session any replica registered (lost ones are kept a day, or while they still have
    /// running tasks).
    pub async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        let rows = sqlx::query("SELECT session_id, heartbeat_at, lost_at FROM em_sessions")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SessionRow {
                    session_id: row.try_get("session_id")?,
                    heartbeat_at: Timestamp::from_millis(row.try_get("heartbeat_at")?),
                    lost_at: row
                        .try_get::<Option<i64>, _>("lost_at")?
                        .map(Timestamp::from_millis),
                })
            })
            .collect()
    }

    /// This replica's live sessions are alive now; any other session it registered is lost
    /// (EM expired it, or the pool logged on again), so its tasks become orphans at once.
    pub async fn heartbeat_sessions(
        &self,
        owner: ReplicaId,
        live: &[(usize, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // Every tick writes this again from the pool's state: one lost in a database crash is
        // redone a tick later, so the tick need not wait for the disk.
        tx.relax_durability().await?;
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

    /// Forgets sessions lost before `lost_before`, but for those that still have running
    /// tasks: orphans are found from this table, so a task whose session is forgotten would
    /// never be settled.
    pub async fn prune_sessions(&self, lost_before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM em_sessions WHERE lost_at IS NOT NULL AND lost_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.state = 'running' \
             AND t.em_session_id = em_sessions.session_id)",
        )
        .bind(lost_before.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

impl Tx {
    /// Registers sessions of this replica before the first task on them is recorded, alive as
    /// of `now`: orphans are found from the sessions table, so a task's session must be there
    /// even if the replica dies before its next heartbeat. A session already known is left as
    /// it is (a lost one stays lost).
    pub async fn register_sessions(
        &mut self,
        owner: ReplicaId,
        sessions: &[(usize, String)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        for (slot, session_id) in sessions {
            sqlx::query(
                "INSERT INTO em_sessions (session_id, owner, slot, heartbeat_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
            )
            .bind(session_id.as_str())
            .bind(owner.to_string())
            .bind(i64::try_from(*slot).unwrap_or(0))
            .bind(now.as_millis())
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_gone_lately_may_have_left_intents_not_due_yet() {
        let now = Timestamp::from_millis(1_000_000);
        // Heartbeats every 1 s (gone after 10 s of silence); intents due 30 s after written.
        let rules = OrphanRules::at(now, Duration::from_secs(1), Duration::from_secs(30));
        let before = rules.unsent.before();
        let at = |ago_ms: i64| Timestamp::from_millis(now.as_millis() - ago_ms);
        // (heartbeat ms ago, lost ms ago, gone lately)
        let cases = [
            // Alive: it knows its own intents.
            (0, None, false),
            (9_999, None, false),
            // Silent ten heartbeats: what it wrote until then is due within the next 30 s.
            (10_000, None, true),
            // Silent long enough that all it could have written is due and looked at.
            (40_000, None, true),
            (40_001, None, false),
            (3_600_000, None, false),
            // Given up (released at its stop, or EM lost it) lately, or long ago.
            (0, Some(0), true),
            (50_000, Some(40_000), true),
            (50_000, Some(40_001), false),
        ];
        for (heartbeat, lost, gone) in cases {
            let row = SessionRow {
                session_id: "s".into(),
                heartbeat_at: at(heartbeat),
                lost_at: lost.map(at),
            };
            assert_eq!(
                replica_gone_lately(&[row], &rules, before),
                gone,
                "heartbeat {heartbeat} ms ago, lost {lost:?}"
            );
        }
        assert!(!replica_gone_lately(&[], &rules, before));
    }

    #[test]
    fn dead_sessions_are_lost_or_silent() {
        let now = Timestamp::from_millis(1_000_000);
        let rules = OrphanRules::at(now, Duration::from_secs(1), Duration::from_secs(30));
        let at = |ago_ms: i64| Timestamp::from_millis(now.as_millis() - ago_ms);
        // (heartbeat ms ago, lost ms ago, dead)
        let cases = [
            (0, None, false),
            // Ten missed heartbeats of a 1 s interval: the replica is gone.
            (9_999, None, false),
            (10_000, None, true),
            (60_000, None, true),
            // Lost (the pool logged on again, EM expired it, or released at shutdown).
            (0, Some(0), true),
            (100, Some(50), true),
            (60_000, Some(60_000), true),
        ];
        for (heartbeat, lost, dead) in cases {
            let row = SessionRow {
                session_id: "s".into(),
                heartbeat_at: at(heartbeat),
                lost_at: lost.map(at),
            };
            assert_eq!(
                dead_sessions(&[row], &rules).len() == 1,
                dead,
                "heartbeat {heartbeat} ms ago, lost {lost:?}"
            );
        }
    }
}

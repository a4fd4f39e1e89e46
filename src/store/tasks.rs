//! Tasks: recorded before EM is called (the intent), given EM's task id when EM accepts, settled
//! exactly once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, ColumnIndex, Connection, Decode, PgConnection, Row, Type};
use uuid::Uuid;

use super::idempotency::{IdempotencyKey, LINK, bind_links, link_query, link_values};
use super::sessions::{OrphanRules, SessionRow, UnsentLook, dead_sessions};
use super::{
    Backend, Store, StoreError, Tx, id, keep_prepared, owner, parameters, placeholders,
    sized_query, time,
};
use crate::clock::Timestamp;
use crate::domain::{
    ApiKeyId, Metadata, Operation, Owner, ReplicaId, Resource, ResourceType, TaskId, TaskState,
};

const COLUMNS: &str = "id, operation, state, target_id, request, metadata, em_task_id, \
     em_session_id, em_owner, resource_type, resource_id, message, api_key_id, owner, \
     warnings, created_at, updated_at, finished_at";

/// Tasks settled per statement (5 parameters each).
const SETTLE_CHUNK: usize = 200;
/// Rows per statement when inserting or attaching in a batch.
pub(super) const INSERT_CHUNK: usize = 100;
/// Dead sessions whose tasks one orphan claim looks up.
const SESSIONS_PER_CLAIM: usize = 100;

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: TaskId,
    pub operation: Operation,
    pub state: TaskState,
    /// The EM object an update or delete is about.
    pub target_id: Option<Uuid>,
    /// The validated request, as JSON text (what settling by EM's objects compares against;
    /// parsed only then, not on every read).
    pub request: String,
    pub metadata: Metadata,
    pub em_task_id: Option<String>,
    pub em_session_id: Option<String>,
    /// The replica whose EM session owns the task.
    pub em_owner: Option<ReplicaId>,
    pub resource: Option<Resource>,
    pub message: Option<String>,
    pub api_key_id: Option<ApiKeyId>,
    /// The owner of the key that asked for it: who sees it and gets its webhooks.
    pub owner: Owner,
    /// What the gateway noticed but sent on anyway.
    pub warnings: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A task about to be sent to EM.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: TaskId,
    pub operation: Operation,
    pub target_id: Option<Uuid>,
    /// The validated request, as JSON text.
    pub request: String,
    pub metadata: Metadata,
    pub api_key_id: Option<ApiKeyId>,
    pub owner: Owner,
    pub warnings: Vec<String>,
}

/// EM accepted a task: its id, the session that can see it, and when (the task's
/// `updated_at`).
#[derive(Debug, Clone)]
pub struct EmAttach {
    pub id: TaskId,
    pub em_task_id: String,
    pub em_session_id: String,
    pub at: Timestamp,
}

/// A running task as the poller matches it against EM's task list.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    pub id: TaskId,
    pub operation: Operation,
    pub target_id: Option<Uuid>,
    pub em_task_id: String,
    pub em_session_id: String,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub state: TaskState,
    pub message: Option<String>,
    pub resource: Option<Resource>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub operation: Option<Operation>,
    /// Only this owner's tasks; `None`: everyone's.
    pub owner: Option<Owner>,
    /// Only tasks older than this one (the list runs newest first).
    pub before: Option<TaskId>,
    pub limit: u32,
}

/// A stored task's id and operation, read back: the two every reading of a task starts with.
fn id_and_operation<'r, R>(row: &'r R) -> Result<(TaskId, Operation), StoreError>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok((
        id(row.try_get::<&str, _>("id")?, TaskId::parse, "task id")?,
        id(
            row.try_get::<&str, _>("operation")?,
            Operation::parse,
            "task operation",
        )?,
    ))
}

/// A task row, from `Any` or from a typed Postgres connection (the hot read). What is only
/// parsed is read as a borrowed `&str`, not copied first.
fn decode<'r, R>(row: &'r R) -> Result<TaskRecord, StoreError>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let corrupt = |what: &str| StoreError::Corrupt(format!("task {what}"));
    let resource_type: Option<&str> = row.try_get("resource_type")?;
    let resource_id: Option<&str> = row.try_get("resource_id")?;
    let resource = match (resource_type, resource_id) {
        (Some(t), Some(r)) => Some(Resource {
            type_: ResourceType::parse(t).ok_or_else(|| corrupt("resource type"))?,
            id: Uuid::parse_str(r).map_err(|_| corrupt("resource id"))?,
        }),
        _ => None,
    };
    let metadata: &str = row.try_get("metadata")?;
    let (task_id, operation) = id_and_operation(row)?;
    Ok(TaskRecord {
        id: task_id,
        operation,
        state: id(
            row.try_get::<&str, _>("state")?,
            TaskState::parse,
            "task state",
        )?,
        target_id: row
            .try_get::<Option<&str>, _>("target_id")?
            .map(|t| Uuid::parse_str(t).map_err(|_| corrupt("target")))
            .transpose()?,
        request: row.try_get("request")?,
        metadata: serde_json::from_str(metadata).map_err(|_| corrupt("metadata"))?,
        em_task_id: row.try_get("em_task_id")?,
        em_session_id: row.try_get("em_session_id")?,
        em_owner: row
            .try_get::<Option<&str>, _>("em_owner")?
            .map(|o| id(o, ReplicaId::parse, "replica id"))
            .transpose()?,
        resource,
        message: row.try_get("message")?,
        api_key_id: row
            .try_get::<Option<&str>, _>("api_key_id")?
            .map(|k| id(k, ApiKeyId::parse, "api key id"))
            .transpose()?,
        owner: owner(row.try_get::<&str, _>("owner")?)?,
        warnings: match row.try_get::<Option<&str>, _>("warnings")? {
            Some(text) => serde_json::from_str(text).map_err(|_| corrupt("warnings"))?,
            None => Vec::new(),
        },
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(time),
    })
}

/// The tasks a statement returned, by id: `RETURNING` promises no order.
fn by_id(rows: &[AnyRow]) -> Result<HashMap<TaskId, TaskRecord>, StoreError> {
    rows.iter()
        .map(|row| decode(row).map(|task| (task.id, task)))
        .collect()
}

/// The tasks `rows` returned, in the order of `ids`; every one must be there.
fn in_order(
    ids: impl Iterator<Item = TaskId>,
    rows: &[AnyRow],
) -> Result<Vec<TaskRecord>, StoreError> {
    let mut tasks = by_id(rows)?;
    ids.map(|id| {
        tasks
            .remove(&id)
            .ok_or_else(|| StoreError::Corrupt(format!("task {id} was not returned")))
    })
    .collect()
}

/// The read of one task, built once: the hot read (a `format!` per read was 1.4 % of its
/// instructions).
static READ_TASK: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {COLUMNS} FROM tasks WHERE id = $1"));

async fn read_task(
    connection: &mut sqlx::AnyConnection,
    id: TaskId,
) -> Result<Option<AnyRow>, sqlx::Error> {
    sqlx::query(AssertSqlSafe(READ_TASK.as_str()))
        .bind(id.to_string())
        .fetch_optional(connection)
        .await
}

/// [`read_task`] on a typed Postgres connection: the same SQL, its row decoded where it lies
/// rather than copied into an `AnyRow` first.
async fn read_task_typed(
    connection: &mut PgConnection,
    id: TaskId,
) -> Result<Option<PgRow>, sqlx::Error> {
    sqlx::query(AssertSqlSafe(READ_TASK.as_str()))
        .bind(id.to_string())
        .fetch_optional(connection)
        .await
}

impl Store {
    /// Records intents durably (many at once: see [`super::Batcher`]), each linked to its
    /// request's Idempotency-Key in the same statement (Postgres) or transaction (SQLite, or
    /// more than one statement's worth of intents), so that a repeat of a request whose
    /// answer was lost finds the task instead of starting another. A crash after EM accepted
    /// still leaves the row, which the poller settles by looking at EM's objects. Answers in
    /// the order given.
    pub async fn insert_tasks(
        &self,
        batch: &[(NewTask, Option<IdempotencyKey>)],
        now: Timestamp,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let postgres = self.backend == Backend::Postgres;
        // The keys linked by statements of their own, after the inserts.
        let mut apart: Vec<(&IdempotencyKey, TaskId)> = Vec::new();
        let statements: Vec<_> = batch
            .chunks(INSERT_CHUNK)
            .map(|chunk| {
                let links: Vec<(&IdempotencyKey, TaskId)> = chunk
                    .iter()
                    .filter_map(|(task, key)| key.as_ref().map(|k| (k, task.id)))
                    .collect();
                let insert = format!(
                    "INSERT INTO tasks (id, operation, state, target_id, request, metadata, \
                     api_key_id, created_at, updated_at, resource_type, resource_id, owner, \
                     warnings) VALUES {} RETURNING {COLUMNS}",
                    placeholders(chunk.len(), 13, 0)
                );
                // On Postgres the chunk's keys are linked by the insert's own statement (a
                // data-modifying `WITH`): a keyed create's intent is one round trip, as a
                // keyless one's. SQLite has no such `WITH`: there they go apart.
                let linked_here = postgres && !links.is_empty();
                let sql = if linked_here {
                    format!(
                        "WITH inserted AS ({insert}), {}, linked AS ({LINK}) \
                         SELECT {COLUMNS} FROM inserted",
                        link_values(links.len(), 13 * chunk.len())
                    )
                } else {
                    insert
                };
                // Kept prepared for the usual sizes only, keyed or not (see `sized_query`): a
                // chunk with some of its intents keyed is a statement of its own each time.
                let usual = links.is_empty() || links.len() == chunk.len();
                let mut query = sqlx::query(AssertSqlSafe(sql))
                    .persistent(usual && keep_prepared(chunk.len(), INSERT_CHUNK));
                for (task, _) in chunk {
                    // An update or delete names its object from the start; a create learns it
                    // from EM.
                    let target = task.target_id.map(|t| t.to_string());
                    let resource_type = task
                        .target_id
                        .map(|_| task.operation.resource_type().as_str());
                    query = query
                        .bind(task.id.to_string())
                        .bind(task.operation.as_str())
                        .bind(TaskState::Running.as_str())
                        .bind(target.clone())
                        .bind(task.request.as_str())
                        .bind(serde_json::to_string(&task.metadata).unwrap_or_else(|_| "{}".into()))
                        .bind(task.api_key_id.map(|k| k.to_string()))
                        .bind(now.as_millis())
                        .bind(now.as_millis())
                        .bind(resource_type)
                        .bind(target)
                        .bind(task.owner.as_str())
                        .bind(
                            (!task.warnings.is_empty())
                                .then(|| serde_json::to_string(&task.warnings).ok())
                                .flatten(),
                        );
                }
                if linked_here {
                    bind_links(query, &links)
                } else {
                    apart.extend(links);
                    query
                }
            })
            .collect();
        let mut rows = Vec::with_capacity(batch.len());
        let mut held = self.connection().await?;
        if statements.len() == 1 && apart.is_empty() {
            // One statement is atomic on its own: no transaction round trips.
            for query in statements {
                rows.extend(query.fetch_all(held.connection()).await?);
            }
        } else {
            let mut tx = held.connection().begin().await?;
            for query in statements {
                rows.extend(query.fetch_all(&mut *tx).await?);
            }
            for chunk in apart.chunks(INSERT_CHUNK) {
                link_query(chunk).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        held.give_back();
        in_order(batch.iter().map(|(t, _)| t.id), &rows)
    }

    /// EM refused synchronously, or was never reached: nothing was accepted, so no task.
    pub async fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM tasks WHERE id = $1 AND em_task_id IS NULL")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        // A kept connection can have died idle unnoticed (Postgres restarted and left it
        // "terminating connection"): a read is safe to try again, on a new connection.
        if let Some(reads) = &self.reads
            && let Some(mut held) = reads.acquire(true).await?
        {
            let row = match read_task_typed(held.connection(), id).await {
                Ok(row) => {
                    held.give_back();
                    Some(row)
                }
                Err(_) if held.reused() => {
                    drop(held);
                    match reads.acquire(false).await? {
                        Some(mut fresh) => {
                            let row = read_task_typed(fresh.connection(), id).await?;
                            fresh.give_back();
                            Some(row)
                        }
                        // All taken since: the pool's below.
                        None => None,
                    }
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(row) = row {
                return row.as_ref().map(decode).transpose();
            }
        }
        // SQLite, or every typed connection in use.
        let mut held = self.connection().await?;
        let row = match read_task(held.connection(), id).await {
            Ok(row) => {
                held.give_back();
                row
            }
            Err(_) if held.reused() => {
                drop(held);
                let mut fresh = self.new_connection().await?;
                let row = read_task(fresh.connection(), id).await?;
                fresh.give_back();
                row
            }
            Err(e) => return Err(e.into()),
        };
        row.as_ref().map(decode).transpose()
    }

    /// Newest first; `before` continues a previous page.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks WHERE ($1 IS NULL OR state = $1) \
             AND ($2 IS NULL OR operation = $2) AND ($3 IS NULL OR id < $3) \
             AND ($5 IS NULL OR owner = $5) ORDER BY id DESC LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.operation.map(|o| o.as_str()))
            .bind(filter.before.map(|b| b.to_string()))
            .bind(i64::from(filter.limit))
            .bind(filter.owner.as_ref().map(Owner::as_str))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The running tasks whose EM session this replica holds: just what matching them against
    /// EM's task list needs. The poller keeps them in memory and reads this only to resync.
    pub async fn running_tasks_of(&self, owner: ReplicaId) -> Result<Vec<InFlight>, StoreError> {
        // Each row is decoded as it arrives: holding every row first, beside the tasks made of
        // them, was a ~20 MiB spike at 30,000 running tasks.
        let mut rows = sqlx::query(
            "SELECT id, operation, target_id, em_task_id, em_session_id FROM tasks \
             WHERE state = 'running' AND em_owner = $1 AND em_session_id IS NOT NULL",
        )
        .bind(owner.to_string())
        .fetch(&self.pool);
        let mut tasks = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let target: Option<String> = row.try_get("target_id")?;
            let (id, operation) = id_and_operation(&row)?;
            tasks.push(InFlight {
                id,
                operation,
                target_id: target.and_then(|t| Uuid::parse_str(&t).ok()),
                em_task_id: row
                    .try_get::<Option<String>, _>("em_task_id")?
                    .unwrap_or_default(),
                em_session_id: row
                    .try_get::<Option<String>, _>("em_session_id")?
                    .unwrap_or_default(),
            });
        }
        self.count_task_rows(tasks.len());
        Ok(tasks)
    }

    /// Has PostgreSQL read the `tasks` table's statistics again now (`ANALYZE`; nothing on
    /// SQLite, whose planner looks tasks up by key without them). Until autovacuum first
    /// analyzes a new table (up to a minute, longer when it is busy), or when the tasks running
    /// have grown far past what it last saw, PostgreSQL believes few tasks run and records
    /// EM's task ids by reading every running task: each create's attach then costs as much as
    /// the tasks in flight.
    pub async fn refresh_task_statistics(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("ANALYZE tasks").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// How many tasks are still running.
    pub async fn count_running(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tasks WHERE state = 'running'")
            .fetch_one(&self.pool)
            .await?;
        let n = row.try_get::<i64, _>("n")?;
        self.count_task_rows(usize::try_from(n).unwrap_or(0));
        Ok(n)
    }

    /// Leases running tasks that can no longer be followed on EM (see [`OrphanRules`]). A
    /// lease keeps other replicas off the task until it lapses; an inconclusive look at EM's
    /// objects simply lets it lapse.
    ///
    /// `sessions` is the small sessions table ([`Store::sessions`]), read first; only the
    /// running tasks of dead sessions, and intents never answered, are then looked up (each
    /// through its own index), so the work grows with the orphans, not with the tasks in flight.
    pub async fn claim_orphans(
        &self,
        owner: ReplicaId,
        rules: &OrphanRules,
        sessions: &[SessionRow],
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let dead = dead_sessions(sessions, rules);
        let mut claimed = Vec::new();
        for sessions in dead.chunks(SESSIONS_PER_CLAIM) {
            let left = limit.saturating_sub(u32::try_from(claimed.len()).unwrap_or(u32::MAX));
            if left == 0 {
                break;
            }
            claimed.extend(
                self.claim(owner, rules, Orphans::OfSessions(sessions), left)
                    .await?,
            );
        }
        let unsent: &[Orphans] = match rules.unsent {
            UnsentLook::All { before } => &[Orphans::Unsent { before }],
            UnsentLook::Since { from, before } => &[
                Orphans::UnsentWritten { from, before },
                Orphans::UnsentLookedAt,
            ],
            UnsentLook::LookedAt { .. } => &[Orphans::UnsentLookedAt],
        };
        for which in unsent {
            let left = limit.saturating_sub(u32::try_from(claimed.len()).unwrap_or(u32::MAX));
            if left == 0 {
                break;
            }
            claimed.extend(self.claim(owner, rules, *which, left).await?);
        }
        self.count_task_rows(claimed.len());
        Ok(claimed)
    }

    async fn claim(
        &self,
        owner: ReplicaId,
        rules: &OrphanRules,
        which: Orphans<'_>,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE OF t SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // Each condition implies a partial index's predicate, so that Postgres reads only that
        // index's entries (for a window of `created_at`, only that range of them).
        let which_sql = match which {
            Orphans::Unsent { .. } => "t.em_session_id IS NULL AND t.created_at < $5".to_string(),
            Orphans::UnsentWritten { .. } => "t.em_session_id IS NULL \
                 AND t.unsent_looked_at IS NULL AND t.created_at >= $5 AND t.created_at < $6"
                .to_string(),
            Orphans::UnsentLookedAt => {
                "t.em_session_id IS NULL AND t.unsent_looked_at IS NOT NULL".to_string()
            }
            Orphans::OfSessions(sessions) => {
                format!("t.em_session_id IN ({})", parameters(sessions.len(), 4))
            }
        };
        // An intent is marked looked at once, by its first claim: later ones leave the column
        // as it is, so they stay HOT updates.
        let looked_at = match which {
            Orphans::OfSessions(_) => "",
            _ => ", unsent_looked_at = COALESCE(unsent_looked_at, $3)",
        };
        let sql = format!(
            "UPDATE tasks SET lease_owner = $1, lease_until = $2{looked_at} WHERE id IN ( \
               SELECT t.id FROM tasks t WHERE t.state = 'running' AND {which_sql} \
               AND (t.lease_until IS NULL OR t.lease_until < $3) \
               ORDER BY COALESCE(t.lease_until, 0), t.id LIMIT $4 {lock}) \
             RETURNING {COLUMNS}"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(owner.to_string())
            .bind(rules.lease_until.as_millis())
            .bind(rules.now.as_millis())
            .bind(i64::from(limit));
        match which {
            Orphans::Unsent { before } => query = query.bind(before.as_millis()),
            Orphans::UnsentWritten { from, before } => {
                query = query.bind(from.as_millis()).bind(before.as_millis());
            }
            Orphans::UnsentLookedAt => {}
            Orphans::OfSessions(sessions) => {
                for session in sessions {
                    query = query.bind(session.as_str());
                }
            }
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// Orphans looked at whose effect does not show yet: free for any replica's next tick (EM
    /// may finish at any moment; a lease kept would hold them back for its length), and put
    /// after the orphans looked at less recently (`lease_until` says when they were looked at).
    pub async fn unlease_orphans(
        &self,
        owner: ReplicaId,
        ids: &[TaskId],
        looked_at: Timestamp,
    ) -> Result<(), StoreError> {
        for chunk in ids.chunks(SETTLE_CHUNK) {
            let sql = format!(
                "UPDATE tasks SET lease_owner = NULL, lease_until = $2 \
                 WHERE lease_owner = $1 AND state = 'running' AND id IN ({})",
                parameters(chunk.len(), 2)
            );
            let mut query = sized_query(sql, chunk.len(), SETTLE_CHUNK)
                .bind(owner.to_string())
                .bind(looked_at.as_millis());
            for id in chunk {
                query = query.bind(id.to_string());
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }
}

/// One chunk of attaches as one `UPDATE`. `relaxed` (Postgres only) turns
/// `synchronous_commit` off for the statement's own transaction, as `SET LOCAL` does in one
/// that is opened for it: the intent is already on disk, and were a crash to lose EM's task id
/// the task would be an orphan the poller settles from EM's objects.
fn attach_query(
    owner: ReplicaId,
    chunk: &[EmAttach],
    relaxed: bool,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let (relax, relaxed_from) = match relaxed {
        true => (
            "relaxed AS (SELECT set_config('synchronous_commit', 'off', true)), ",
            ", relaxed",
        ),
        false => ("", ""),
    };
    let sql = format!(
        "WITH {relax}v (v_id, v_task, v_session, v_at) AS (VALUES {}) \
         UPDATE tasks SET em_task_id = v_task, em_session_id = v_session, em_owner = $1, \
         updated_at = v_at FROM v{relaxed_from} WHERE id = v_id AND state = 'running' \
         RETURNING {COLUMNS}",
        placeholders(chunk.len(), 4, 1)
    );
    let mut query = sized_query(sql, chunk.len(), INSERT_CHUNK).bind(owner.to_string());
    for attach in chunk {
        query = query
            .bind(attach.id.to_string())
            .bind(attach.em_task_id.clone())
            .bind(attach.em_session_id.clone())
            .bind(attach.at.as_millis());
    }
    query
}

/// The attached tasks, in the order of `batch`.
fn attached(batch: &[EmAttach], rows: &[AnyRow]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
    let mut tasks = by_id(rows)?;
    Ok(batch.iter().map(|a| tasks.remove(&a.id)).collect())
}

/// Which orphans one claim statement looks for.
#[derive(Debug, Clone, Copy)]
enum Orphans<'a> {
    /// Intents EM's answer never came for, written before this time.
    Unsent { before: Timestamp },
    /// Such intents written in `[from, before)` that no replica has looked at yet.
    UnsentWritten { from: Timestamp, before: Timestamp },
    /// Such intents a replica has looked at before (`unsent_looked_at` is set).
    UnsentLookedAt,
    /// The running tasks of these dead sessions.
    OfSessions(&'a [String]),
}

impl Store {
    /// [`Tx::attach_em_tasks`] on its own, one statement a chunk (no transaction round trips),
    /// and on Postgres without waiting for the disk, as the attach does in a transaction.
    pub async fn attach_em_tasks(
        &self,
        owner: ReplicaId,
        batch: &[EmAttach],
    ) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let relaxed = self.backend == Backend::Postgres;
        let mut rows = Vec::with_capacity(batch.len());
        let mut held = self.connection().await?;
        for chunk in batch.chunks(INSERT_CHUNK) {
            rows.extend(
                attach_query(owner, chunk, relaxed)
                    .fetch_all(held.connection())
                    .await?,
            );
        }
        held.give_back();
        attached(batch, &rows)
    }
}

impl Tx {
    /// EM accepted: remembers its task id and the session (and replica) that can see it.
    /// `None` for a task that no longer exists or is no longer running (settled meanwhile:
    /// its end stays as it is). Answers in the order given.
    pub async fn attach_em_tasks(
        &mut self,
        owner: ReplicaId,
        batch: &[EmAttach],
    ) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let mut rows = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(INSERT_CHUNK) {
            rows.extend(
                attach_query(owner, chunk, false)
                    .fetch_all(&mut *self.tx)
                    .await?,
            );
        }
        attached(batch, &rows)
    }

    /// Ends tasks, each at most once: returns those this call settled (not those settled
    /// elsewhere before), in the order given.
    pub async fn settle_tasks(
        &mut self,
        batch: &[(TaskId, Settlement)],
        now: Timestamp,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut rows = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(SETTLE_CHUNK) {
            // One statement per chunk; `v`'s columns are named apart from the table's.
            let sql = format!(
                "WITH v (v_id, v_state, v_message, v_type, v_resource) AS (VALUES {}) \
                 UPDATE tasks SET state = v_state, message = v_message, resource_type = v_type, \
                 resource_id = v_resource, finished_at = $1, updated_at = $1, \
                 lease_owner = NULL, lease_until = NULL \
                 FROM v WHERE id = v_id AND state = 'running' RETURNING {COLUMNS}",
                placeholders(chunk.len(), 5, 1)
            );
            let mut query = sized_query(sql, chunk.len(), SETTLE_CHUNK).bind(now.as_millis());
            for (id, settlement) in chunk {
                query = query
                    .bind(id.to_string())
                    .bind(settlement.state.as_str())
                    .bind(settlement.message.clone())
                    .bind(settlement.resource.map(|r| r.type_.as_str()))
                    .bind(settlement.resource.map(|r| r.id.to_string()));
            }
            rows.extend(query.fetch_all(&mut *self.tx).await?);
        }
        let mut returned = by_id(&rows)?;
        Ok(batch
            .iter()
            .filter_map(|(id, _)| returned.remove(id))
            .collect())
    }
}

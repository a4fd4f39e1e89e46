//! Tasks: recorded before EM is called (the intent), given EM's task id when EM accepts, settled
//! exactly once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::idempotency::{IdempotencyKey, StoredAnswer};
use super::{Backend, Store, StoreError, now_ms, placeholders, to_time};
use crate::domain::{
    Metadata, Operation, Resource, ResourceType, ResourceView, TaskId, TaskState, TaskView,
};

const COLUMNS: &str = "id, operation, state, target_id, request, metadata, em_task_id, \
     em_session_id, em_owner, resource_type, resource_id, message, api_key_id, created_at, \
     updated_at, finished_at";

/// Tasks settled per statement (5 parameters each).
const SETTLE_CHUNK: usize = 200;

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
    pub em_owner: Option<String>,
    pub resource: Option<Resource>,
    pub message: Option<String>,
    pub api_key_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl TaskRecord {
    /// The task as callers see it, in the API and in webhooks.
    pub fn view(&self) -> TaskView {
        TaskView {
            id: self.id.uuid(),
            operation: self.operation,
            state: self.state,
            em_task_id: self.em_task_id.clone(),
            message: self.message.clone(),
            resource: self.resource.map(|r| ResourceView {
                type_: r.type_,
                id: r.id,
                uid: r.uid(),
            }),
            metadata: self.metadata.as_map().clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
        }
    }
}

/// The 202 a write answers with: the task, and where to follow it.
pub fn accepted_answer(task: &TaskRecord) -> StoredAnswer {
    StoredAnswer {
        status: 202,
        body: serde_json::to_string(&task.view()).unwrap_or_default(),
        location: Some(format!("/v1/tasks/{}", task.id)),
    }
}

/// A task about to be sent to EM.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: TaskId,
    pub operation: Operation,
    pub target_id: Option<Uuid>,
    pub request: serde_json::Value,
    pub metadata: Metadata,
    pub api_key_id: Option<String>,
}

/// EM accepted a task: its id, and the session that can see it.
#[derive(Debug, Clone)]
pub struct EmAttach {
    pub id: TaskId,
    pub em_task_id: String,
    pub em_session_id: String,
    /// The request's Idempotency-Key: the 202 answer is stored under it.
    pub key: Option<IdempotencyKey>,
}

/// Rows per statement when inserting or attaching in a batch.
const INSERT_CHUNK: usize = 100;

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
    /// Only tasks older than this one (the list runs newest first).
    pub before: Option<TaskId>,
    pub limit: u32,
}

fn decode(row: &AnyRow) -> Result<TaskRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("task {what}"));
    let id: String = row.try_get("id")?;
    let operation: String = row.try_get("operation")?;
    let state: String = row.try_get("state")?;
    let target: Option<String> = row.try_get("target_id")?;
    let request: String = row.try_get("request")?;
    let metadata: String = row.try_get("metadata")?;
    let resource_type: Option<String> = row.try_get("resource_type")?;
    let resource_id: Option<String> = row.try_get("resource_id")?;
    let resource = match (resource_type, resource_id) {
        (Some(t), Some(id)) => Some(Resource {
            type_: ResourceType::parse(&t).ok_or_else(|| corrupt("resource type"))?,
            id: Uuid::parse_str(&id).map_err(|_| corrupt("resource id"))?,
        }),
        _ => None,
    };
    Ok(TaskRecord {
        id: TaskId::parse(&id).ok_or_else(|| corrupt("id"))?,
        operation: Operation::parse(&operation).ok_or_else(|| corrupt("operation"))?,
        state: TaskState::parse(&state).ok_or_else(|| corrupt("state"))?,
        target_id: target
            .map(|t| Uuid::parse_str(&t).map_err(|_| corrupt("target")))
            .transpose()?,
        request,
        metadata: serde_json::from_str(&metadata).map_err(|_| corrupt("metadata"))?,
        em_task_id: row.try_get("em_task_id")?,
        em_session_id: row.try_get("em_session_id")?,
        em_owner: row.try_get("em_owner")?,
        resource,
        message: row.try_get("message")?,
        api_key_id: row.try_get("api_key_id")?,
        created_at: to_time(row.try_get("created_at")?),
        updated_at: to_time(row.try_get("updated_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(to_time),
    })
}

impl Store {
    /// Records the intent before EM is called: a crash after EM accepted still leaves a row,
    /// which the poller settles by looking at EM's objects.
    pub async fn insert_task(&self, task: &NewTask) -> Result<TaskRecord, StoreError> {
        self.insert_task_for(task, None).await
    }

    /// The same, linking the task to the request's Idempotency-Key in the same transaction, so
    /// a repeat of a request whose answer was lost finds the task instead of starting another.
    pub async fn insert_task_for(
        &self,
        task: &NewTask,
        key: Option<&IdempotencyKey>,
    ) -> Result<TaskRecord, StoreError> {
        let mut inserted = self.insert_tasks(&[(task.clone(), key.cloned())]).await?;
        inserted
            .pop()
            .ok_or_else(|| StoreError::Corrupt("an inserted task was not returned".into()))
    }

    /// Records many intents durably at once (see [`super::Batcher`]), each linked to its
    /// Idempotency-Key, if any. Answers in the order given.
    pub async fn insert_tasks(
        &self,
        batch: &[(NewTask, Option<IdempotencyKey>)],
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let now = now_ms();
        let statements: Vec<_> = batch
            .chunks(INSERT_CHUNK)
            .map(|chunk| {
                let sql = format!(
                    "INSERT INTO tasks (id, operation, state, target_id, request, metadata, \
                     api_key_id, created_at, updated_at, resource_type, resource_id) \
                     VALUES {} RETURNING {COLUMNS}",
                    placeholders(chunk.len(), 11, 0)
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
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
                        .bind(task.request.to_string())
                        .bind(serde_json::to_string(&task.metadata).unwrap_or_else(|_| "{}".into()))
                        .bind(task.api_key_id.clone())
                        .bind(now)
                        .bind(now)
                        .bind(resource_type)
                        .bind(target);
                }
                query
            })
            .collect();
        let keys: Vec<(&IdempotencyKey, TaskId)> = batch
            .iter()
            .filter_map(|(task, key)| key.as_ref().map(|k| (k, task.id)))
            .collect();
        let mut rows = Vec::with_capacity(batch.len());
        if statements.len() == 1 && keys.is_empty() {
            // One statement is atomic on its own: no transaction round trips.
            for query in statements {
                rows.extend(query.fetch_all(&self.pool).await?);
            }
        } else {
            let mut tx = self.pool.begin().await?;
            for query in statements {
                rows.extend(query.fetch_all(&mut *tx).await?);
            }
            for (key, id) in keys {
                super::idempotency::link_task_in(&mut tx, key, id).await?;
            }
            tx.commit().await?;
        }
        in_order(batch.iter().map(|(t, _)| t.id), &rows)
    }

    /// EM accepted: remember its task id and the session (and replica) that can see it.
    pub async fn attach_em_task(
        &self,
        id: TaskId,
        em_task_id: &str,
        em_session_id: &str,
        owner: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let attach = EmAttach {
            id,
            em_task_id: em_task_id.to_string(),
            em_session_id: em_session_id.to_string(),
            key: None,
        };
        Ok(self
            .attach_em_tasks(owner, &[attach])
            .await?
            .pop()
            .flatten())
    }

    /// Many at once, each storing the 202 answer under its request's Idempotency-Key in the
    /// same transaction. `None` for a task that no longer exists. Answers in the order given.
    pub async fn attach_em_tasks(
        &self,
        owner: &str,
        batch: &[EmAttach],
    ) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // The intent was committed durably before EM was called; this only adds EM's task id,
        // so it need not wait for the disk. Were a database crash to lose it, the task would be
        // an orphan the poller settles from EM's objects.
        self.relax_durability(&mut tx).await?;
        let mut rows = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(INSERT_CHUNK) {
            let sql = format!(
                "WITH v (v_id, v_task, v_session) AS (VALUES {}) \
                 UPDATE tasks SET em_task_id = v_task, em_session_id = v_session, em_owner = $2, \
                 updated_at = $1 FROM v WHERE id = v_id RETURNING {COLUMNS}",
                placeholders(chunk.len(), 3, 2)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now).bind(owner);
            for attach in chunk {
                query = query
                    .bind(attach.id.to_string())
                    .bind(attach.em_task_id.as_str())
                    .bind(attach.em_session_id.as_str());
            }
            rows.extend(query.fetch_all(&mut *tx).await?);
        }
        let mut tasks = by_id(&rows)?;
        for attach in batch {
            if let (Some(key), Some(task)) = (&attach.key, tasks.get(&attach.id)) {
                super::idempotency::finish_in(&mut tx, key, &accepted_answer(task)).await?;
            }
        }
        tx.commit().await?;
        Ok(batch.iter().map(|a| tasks.remove(&a.id)).collect())
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
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Newest first; `before` continues a previous page.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tasks WHERE ($1 IS NULL OR state = $1) \
             AND ($2 IS NULL OR operation = $2) AND ($3 IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.operation.map(|o| o.as_str()))
            .bind(filter.before.map(|b| b.to_string()))
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The running tasks whose EM session this replica holds: just what matching them against
    /// EM's task list needs (the poller reads this every tick, for thousands of tasks).
    pub async fn running_tasks_of(&self, owner: &str) -> Result<Vec<InFlight>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, operation, target_id, em_task_id, em_session_id FROM tasks \
             WHERE state = 'running' AND em_owner = $1 AND em_session_id IS NOT NULL",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("task {what}"));
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let operation: String = row.try_get("operation")?;
                let target: Option<String> = row.try_get("target_id")?;
                Ok(InFlight {
                    id: TaskId::parse(&id).ok_or_else(|| corrupt("id"))?,
                    operation: Operation::parse(&operation).ok_or_else(|| corrupt("operation"))?,
                    target_id: target.and_then(|t| Uuid::parse_str(&t).ok()),
                    em_task_id: row
                        .try_get::<Option<String>, _>("em_task_id")?
                        .unwrap_or_default(),
                    em_session_id: row
                        .try_get::<Option<String>, _>("em_session_id")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// How many tasks are still running.
    pub async fn count_running(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tasks WHERE state = 'running'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// Ends a task, once: `None` when it was already settled (by another replica, say). The
    /// task's webhook event and deliveries are written in the same transaction.
    pub async fn settle_task(
        &self,
        id: TaskId,
        settlement: &Settlement,
    ) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.settle_tasks(&[(id, settlement.clone())]).await?.pop())
    }

    /// Ends many tasks in one transaction, each at most once, with their webhook events and
    /// deliveries: a tick can finish thousands, and a commit per task would not keep up. Returns
    /// the tasks this call settled (not those already settled elsewhere).
    pub async fn settle_tasks(
        &self,
        batch: &[(TaskId, Settlement)],
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // A settle lost in a database crash puts the task back to running: the poller settles
        // it again (from EM, or from EM's objects) and its webhook is sent again, which
        // at-least-once delivery allows. Not waiting for the disk lets thousands settle a second.
        self.relax_durability(&mut tx).await?;
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
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for (id, settlement) in chunk {
                query = query
                    .bind(id.to_string())
                    .bind(settlement.state.as_str())
                    .bind(settlement.message.clone())
                    .bind(settlement.resource.map(|r| r.type_.as_str()))
                    .bind(settlement.resource.map(|r| r.id.to_string()));
            }
            rows.extend(query.fetch_all(&mut *tx).await?);
        }
        // In the order given (the poller's oldest first); those settled before are left out.
        let mut returned = by_id(&rows)?;
        let settled: Vec<TaskRecord> = batch
            .iter()
            .filter_map(|(id, _)| returned.remove(id))
            .collect();
        let views: Vec<TaskView> = settled.iter().map(TaskRecord::view).collect();
        super::webhooks::enqueue_task_events(&mut tx, &views).await?;
        tx.commit().await?;
        Ok(settled)
    }

    /// Leases running tasks that can no longer be followed on EM: sent but unanswered for
    /// longer than `unsent_before`, or whose EM session is lost or whose replica stopped
    /// heartbeating before `heartbeat_before`. A lease keeps other replicas off the task until
    /// `lease_ms` passes; an inconclusive look at EM's objects simply lets it lapse.
    pub async fn claim_orphans(
        &self,
        owner: &str,
        lease_ms: i64,
        unsent_before: i64,
        heartbeat_before: i64,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let now = now_ms();
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE OF t SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE tasks SET lease_owner = $1, lease_until = $2 WHERE id IN ( \
               SELECT t.id FROM tasks t WHERE t.state = 'running' \
               AND (t.lease_until IS NULL OR t.lease_until < $3) \
               AND ((t.em_session_id IS NULL AND t.created_at < $4) \
                 OR (t.em_session_id IS NOT NULL AND NOT EXISTS ( \
                   SELECT 1 FROM em_sessions s WHERE s.session_id = t.em_session_id \
                   AND s.lost_at IS NULL AND s.heartbeat_at > $5))) \
               ORDER BY t.id LIMIT $6 {lock}) \
             RETURNING {COLUMNS}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(unsent_before)
            .bind(heartbeat_before)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }
}

//! Submit: a command becomes a task. Order matters for "nothing accepted is ever lost": the
//! task is recorded *before* EM is called. If EM accepts, the task gets EM's task id and session
//! ([`super::attach`]: written behind the answer, but for a session's first task); if EM
//! refuses or was never reached, the task is removed and the caller gets the error; if EM's
//! answer is lost (timeout, dropped connection) or the process dies after EM accepted, the task
//! stays `running` and the poller settles it by looking at EM's objects.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::OwnTasks;
use super::attach::{Attach, Attacher, Read};
use super::command::Command;
use super::precheck::{self, Inventory, Need};
use super::unanswered::Unanswered;
use crate::clock::{Clock, Timestamp};
use crate::domain::{ApiKeyId, BackupServerUid, FieldError, Metadata, Owner, TaskId};
use crate::em::xml;
use crate::em::{EmClient, EmError};
use crate::store::{Batcher, EmAttach, IdempotencyKey, NewTask, Store, StoreError, TaskRecord};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Em(#[from] EmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object to change does not exist on EM.
    #[error("{0}")]
    NotFound(String),
    /// The request names EM objects that EM does not have (checked before anything is
    /// recorded or sent): one entry per field.
    #[error("the request conflicts with Enterprise Manager's objects")]
    Conflicts(Vec<FieldError>),
}

/// Who asked, for the task's record.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    pub api_key_id: Option<ApiKeyId>,
    /// The key's owner, who will see the task and get its webhooks.
    pub owner: Owner,
    pub metadata: Metadata,
    /// The request's Idempotency-Key: the task is linked to it (the HTTP layer keeps the answer).
    pub idempotency: Option<IdempotencyKey>,
    /// The caller asked (`?strict_capacity=true`) that a storage quota larger than its
    /// repository's free space be refused rather than sent on with a warning.
    pub strict_capacity: bool,
}

/// Writes gathered into one transaction, at most.
const WRITE_BATCH: usize = 64;

pub struct Submitter {
    store: Store,
    em: Arc<EmClient>,
    clock: Clock,
    backup_servers: KnownBackupServers,
    /// Intents, committed durably, many requests to a commit under load.
    intents: Batcher<(NewTask, Option<IdempotencyKey>), TaskRecord>,
    /// EM's task ids that a request waits for (a new session's first task, registering it),
    /// recorded the same way.
    attaches: Batcher<Attach, Option<TaskRecord>>,
    /// Where EM's task ids are recorded, the others written behind their answers.
    attacher: Arc<Attacher>,
    /// The intents whose fate is not recorded yet, which the poller reads.
    unanswered: Arc<Unanswered>,
}

impl Submitter {
    /// Intents whose fate is not recorded yet stay in `own`'s `unanswered`, which the poller
    /// reads; EM's task ids are recorded by its `attacher`, which adds their tasks to its
    /// in-flight set. The intents go through `writes`, a pool only the group-committed writes
    /// use (see [`crate::store::PoolFor::Writes`]), and a request's own statements through
    /// `store`.
    pub fn new(
        store: Store,
        writes: Store,
        em: Arc<EmClient>,
        clock: Clock,
        own: OwnTasks,
    ) -> Self {
        let attacher = own.attacher;
        let intents = {
            let (store, clock) = (writes.clone(), clock.clone());
            Batcher::new(
                "intent",
                WRITE_BATCH,
                writes.intent_writers(),
                move |batch: Vec<(NewTask, Option<IdempotencyKey>)>| {
                    let (store, now) = (store.clone(), clock.now());
                    async move { store.insert_tasks(&batch, now).await }
                },
            )
        };
        let attaches = {
            let (clock, attacher) = (clock.clone(), attacher.clone());
            Batcher::new("attach", WRITE_BATCH, 1, move |batch: Vec<Attach>| {
                let (attacher, now) = (attacher.clone(), clock.now());
                async move { attacher.attach(batch, now).await }
            })
        };
        Submitter {
            store,
            em,
            clock,
            backup_servers: KnownBackupServers::default(),
            intents,
            attaches,
            attacher,
            unanswered: own.unanswered,
        }
    }

    /// `task` as this replica answered it (see [`Attacher::as_answered`]).
    pub fn as_answered(&self, task: &mut TaskRecord) -> Read {
        self.attacher.as_answered(task)
    }

    /// Checks the command against what EM has, records it, sends it, and answers with its task.
    pub async fn submit(&self, command: Command, by: Requester) -> Result<TaskRecord, SubmitError> {
        let warnings = self.check(&command, by.strict_capacity).await?;
        let request = command
            .prepare(&self.em)
            .await?
            .ok_or_else(|| SubmitError::NotFound(command.missing()))?;
        let intent = NewTask {
            id: TaskId::new(),
            operation: command.operation(),
            target_id: command.target(),
            request: command.record(),
            metadata: by.metadata,
            api_key_id: by.api_key_id,
            owner: by.owner,
            warnings,
        };
        // Entered before it is written: a write that fails may still have been committed.
        let mut pending = self.unanswered.entering(intent.id, &self.clock);
        // Linked to the request's Idempotency-Key: a repeat after this request died is answered
        // with the task.
        let task = match self.intents.write((intent, by.idempotency)).await {
            Ok(task) => {
                pending.written_at(Timestamp::from_millis(task.created_at.timestamp_millis()));
                task
            }
            Err(e) => {
                pending.written_at(self.clock.now());
                return Err(e.into());
            }
        };
        match request.send(&self.em).await {
            Ok(submitted) => {
                let attach = Attach {
                    em: EmAttach {
                        id: task.id,
                        em_task_id: submitted.task.task_id,
                        em_session_id: submitted.session.session_id,
                        at: self.clock.now(),
                    },
                    slot: submitted.session.slot,
                };
                if self.attacher.may_write_behind(&attach) {
                    return Ok(self.attacher.write_behind(task, attach.em, pending));
                }
                match self.attaches.write(attach).await {
                    // `None`: the task no longer exists, or was settled meanwhile.
                    Ok(attached) => {
                        pending.answered();
                        Ok(attached.unwrap_or(task))
                    }
                    Err(e) => {
                        // EM accepted and the intent is recorded: the poller settles it.
                        tracing::error!(task_id = %task.id, error = %e, "could not record EM's task id");
                        Ok(task)
                    }
                }
            }
            // The 202 is kept under the request's Idempotency-Key by the HTTP layer, as any.
            Err(EmError::OutcomeUnknown { reason, .. }) => {
                tracing::warn!(task_id = %task.id, %reason, "EM's answer was lost; the task will be settled from EM's objects");
                Ok(task)
            }
            Err(e) => {
                match self.store.delete_task(task.id).await {
                    Ok(()) => pending.answered(),
                    Err(store) => {
                        tracing::error!(task_id = %task.id, error = %store, "could not drop a refused task");
                    }
                }
                Err(e.into())
            }
        }
    }

    /// Refuses, before anything is recorded, what EM would refuse for the objects it names;
    /// answers what to warn of.
    async fn check(&self, command: &Command, strict: bool) -> Result<Vec<String>, SubmitError> {
        match command {
            Command::CreateCloudGateway(c) => self.check_backup_server(c.backup_server).await?,
            Command::CreateCloudGatewayPool(c) => self.check_backup_server(c.backup_server).await?,
            Command::CreateCloudTenant(c) => self.check_backup_server(c.backup_server).await?,
            _ => {}
        }
        let needs = precheck::needs(command);
        if needs.is_empty() {
            return Ok(Vec::new());
        }
        let inventory = self.read(&needs).await?;
        let verdict = precheck::check(command, &inventory, strict);
        if let Some(missing) = verdict.missing {
            return Err(SubmitError::NotFound(missing));
        }
        if !verdict.conflicts.is_empty() {
            return Err(SubmitError::Conflicts(verdict.conflicts));
        }
        Ok(verdict.warnings)
    }

    /// Reads what the pre-check needs, all at once. A read that fails fails the request: a
    /// tenant write is judged against EM's objects or not sent.
    async fn read(&self, needs: &[Need]) -> Result<Inventory, EmError> {
        let em = &self.em;
        let wants = |n: Need| needs.contains(&n);
        let tenant = needs.iter().find_map(|n| match n {
            Need::Tenant(id) => Some(*id),
            _ => None,
        });
        let (tenants, tenant, repositories, pools) = tokio::try_join!(
            async {
                match wants(Need::Tenants) {
                    true => em.cloud_tenants().await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match tenant {
                    Some(id) => em.cloud_tenant(id).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                match wants(Need::Repositories) {
                    true => em.repositories().await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match wants(Need::Pools) {
                    true => em.cloud_gateway_pools().await.map(Some),
                    false => Ok(None),
                }
            },
        )?;
        Ok(Inventory {
            tenants,
            tenant,
            repositories,
            pools,
        })
    }

    /// A backup server EM does not manage: EM would answer 400 for it anyway, but this way the
    /// caller learns which field is at fault. When EM's list cannot be read, EM judges the
    /// request itself: the check must not make a create depend on one more EM call succeeding.
    async fn check_backup_server(&self, uid: BackupServerUid) -> Result<(), SubmitError> {
        match self.backup_servers.has(&self.em, uid.id()).await {
            Ok(false) => Err(SubmitError::Conflicts(vec![FieldError {
                field: "backup_server_uid".into(),
                message: format!("Enterprise Manager manages no backup server {}", uid.urn()),
            }])),
            Ok(true) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "could not read EM's backup servers; EM will judge");
                Ok(())
            }
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

/// The ids of EM's backup servers, read again when an id is not among them (at most once a
/// second): backup servers are added rarely and almost never removed, so creates do not pay an
/// EM round trip for the check.
#[derive(Default)]
struct KnownBackupServers {
    known: Mutex<(HashSet<Uuid>, Option<Instant>)>,
}

impl KnownBackupServers {
    const REREAD_AFTER: Duration = Duration::from_secs(1);

    async fn has(&self, em: &EmClient, id: Uuid) -> Result<bool, EmError> {
        let stale = {
            let known = self.lock();
            if known.0.contains(&id) {
                return Ok(true);
            }
            known.1.is_none_or(|at| at.elapsed() >= Self::REREAD_AFTER)
        };
        if !stale {
            return Ok(false);
        }
        let servers = em.backup_servers().await?;
        let ids: HashSet<Uuid> = servers
            .iter()
            .filter_map(|b| Uuid::parse_str(xml::id_of(&b.uid)).ok())
            .collect();
        let found = ids.contains(&id);
        *self.lock() = (ids, Some(Instant::now()));
        Ok(found)
    }

    fn lock(&self) -> MutexGuard<'_, (HashSet<Uuid>, Option<Instant>)> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

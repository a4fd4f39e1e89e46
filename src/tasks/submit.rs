//! Submit: a command becomes a task. Order matters for "nothing accepted is ever lost": the
//! task is recorded *before* EM is called. If EM accepts, the task gets EM's task id and session
//! (and the 202 is kept under the request's Idempotency-Key in the same transaction); if EM
//! refuses or was never reached, the task is removed and the caller gets the error; if EM's
//! answer is lost (timeout, dropped connection) or the process dies after EM accepted, the task
//! stays `running` and the poller settles it by looking at EM's objects.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::OwnTasks;
use super::answer;
use super::command::Command;
use super::in_flight::InFlightSet;
use super::precheck::{self, Inventory, Need};
use super::unanswered::Unanswered;
use crate::clock::{Clock, Timestamp};
use crate::domain::{ApiKeyId, BackupServerUid, FieldError, Metadata, Owner, ReplicaId, TaskId};
use crate::em::xml;
use crate::em::{EmClient, EmError};
use crate::store::{
    Batcher, EmAttach, IdempotencyKey, InFlight, NewTask, Store, StoreError, TaskRecord,
};

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
    /// The request's Idempotency-Key: the task and the answer are recorded under it.
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
    /// EM's task ids (with the answers kept under Idempotency-Keys), recorded the same way.
    attaches: Batcher<Attach, Option<TaskRecord>>,
    /// The intents whose fate is not recorded yet, which the poller reads.
    unanswered: Arc<Unanswered>,
}

/// EM accepted a task: what is recorded, and the slot of the session that took it.
struct Attach {
    em: EmAttach,
    slot: usize,
    key: Option<IdempotencyKey>,
}

/// Where attaches are recorded and followed: the store, the poller's in-flight set, and the
/// sessions already registered in the store.
struct Attacher {
    store: Store,
    owner: ReplicaId,
    in_flight: Arc<InFlightSet>,
    registered: Mutex<HashSet<String>>,
}

/// Sessions remembered as registered; past this the memory starts again (registering again
/// does no harm).
const REGISTERED_KEPT: usize = 1024;

impl Submitter {
    /// `owner` is this replica: the owner of the EM sessions it submits through. Tasks EM
    /// accepted join `own`'s in-flight set, which the poller follows; intents whose fate is not
    /// recorded yet stay in its `unanswered`, which the poller reads too. The group-committed
    /// writes go through `writes`, a pool only they use (see [`crate::store::PoolFor::Writes`]),
    /// and a request's own statements through `store`.
    pub fn new(
        store: Store,
        writes: Store,
        em: Arc<EmClient>,
        owner: ReplicaId,
        clock: Clock,
        own: OwnTasks,
    ) -> Self {
        let OwnTasks {
            in_flight,
            unanswered,
        } = own;
        let intents = {
            let (store, clock) = (writes.clone(), clock.clone());
            Batcher::new(
                "intent",
                WRITE_BATCH,
                move |batch: Vec<(NewTask, Option<IdempotencyKey>)>| {
                    let (store, now) = (store.clone(), clock.now());
                    async move { store.insert_tasks(&batch, now).await }
                },
            )
        };
        let attaches = {
            let clock = clock.clone();
            let attacher = Arc::new(Attacher {
                store: writes.clone(),
                owner,
                in_flight,
                registered: Mutex::new(HashSet::new()),
            });
            Batcher::new("attach", WRITE_BATCH, move |batch: Vec<Attach>| {
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
            unanswered,
        }
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
        let key = by.idempotency;
        // Entered before it is written: a write that fails may still have been committed.
        let mut pending = self.unanswered.entering(intent.id, &self.clock);
        let task = match self.intents.write((intent, key.clone())).await {
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
                    },
                    slot: submitted.session.slot,
                    key,
                };
                match self.attaches.write(attach).await {
                    // `None`: the task no longer exists.
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
            Err(EmError::OutcomeUnknown { reason, .. }) => {
                tracing::warn!(task_id = %task.id, %reason, "EM's answer was lost; the task will be settled from EM's objects");
                if let Some(key) = &key
                    && let Err(e) = self
                        .store
                        .finish_idempotency(key, &answer::accepted(&task))
                        .await
                {
                    tracing::warn!(error = %e, "could not store the answer under its Idempotency-Key");
                }
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

impl Attacher {
    /// EM accepted these: their task ids and sessions, and the 202 kept under each request's
    /// Idempotency-Key, in one transaction (with any session not registered yet); then the
    /// poller follows them.
    async fn attach(
        &self,
        batch: Vec<Attach>,
        now: crate::clock::Timestamp,
    ) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let sessions = self.unregistered(&batch);
        let mut keys = Vec::with_capacity(batch.len());
        let mut attaches = Vec::with_capacity(batch.len());
        for a in batch {
            keys.push(a.key);
            attaches.push(a.em);
        }
        let attached = if sessions.is_empty() && keys.iter().all(Option::is_none) {
            // Only EM's task ids: one statement, no transaction round trips.
            self.store
                .attach_em_tasks(self.owner, &attaches, now)
                .await?
        } else {
            self.attach_in_transaction(&sessions, &attaches, &keys, now)
                .await?
        };
        {
            let mut registered = self.lock_registered();
            if registered.len() + sessions.len() > REGISTERED_KEPT {
                registered.clear();
            }
            registered.extend(sessions.into_iter().map(|(_, s)| s));
        }
        self.in_flight
            .add(attached.iter().flatten().filter_map(followed));
        Ok(attached)
    }

    /// New sessions, EM's task ids and the answers kept under Idempotency-Keys, together.
    async fn attach_in_transaction(
        &self,
        sessions: &[(usize, String)],
        attaches: &[EmAttach],
        keys: &[Option<IdempotencyKey>],
        now: crate::clock::Timestamp,
    ) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let mut tx = self.store.begin().await?;
        // The intent was committed durably before EM was called; this only adds EM's task id,
        // so it need not wait for the disk. Were a database crash to lose it, the task would be
        // an orphan the poller settles from EM's objects.
        tx.relax_durability().await?;
        if !sessions.is_empty() {
            tx.register_sessions(self.owner, sessions, now).await?;
        }
        let attached = tx.attach_em_tasks(self.owner, attaches, now).await?;
        for (task, key) in attached.iter().zip(keys) {
            if let (Some(task), Some(key)) = (task, key) {
                tx.finish_idempotency(key, &answer::accepted(task)).await?;
            }
        }
        tx.commit().await?;
        Ok(attached)
    }

    /// The batch's sessions not known to be registered yet (a new logon), each once.
    fn unregistered(&self, batch: &[Attach]) -> Vec<(usize, String)> {
        let registered = self.lock_registered();
        let mut new: Vec<(usize, String)> = Vec::new();
        for a in batch {
            let session = &a.em.em_session_id;
            if !registered.contains(session) && !new.iter().any(|(_, s)| s == session) {
                new.push((a.slot, session.clone()));
            }
        }
        new
    }

    fn lock_registered(&self) -> MutexGuard<'_, HashSet<String>> {
        self.registered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A recorded task as the poller follows it; `None` for one without EM's ids.
fn followed(task: &TaskRecord) -> Option<InFlight> {
    Some(InFlight {
        id: task.id,
        operation: task.operation,
        target_id: task.target_id,
        em_task_id: task.em_task_id.clone()?,
        em_session_id: task.em_session_id.clone()?,
    })
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

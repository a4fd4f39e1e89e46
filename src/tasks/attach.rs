//! EM accepted a task: its task id and session are recorded, then the poller follows it.
//!
//! A request whose EM session is not registered yet waits for the record (the session is
//! registered in the same transaction). Any other is answered at once and its record is written
//! behind the answer, with the others of the next few milliseconds, one statement per 100: the
//! request does not wait for a transaction and its hand-back, and PostgreSQL has one statement
//! for many creates instead of one for every two. A request under an Idempotency-Key is no
//! exception: the HTTP layer keeps its 202 under the key before sending it, so a repeat gets
//! that answer whether the record is written yet or not. Until the record is written nothing
//! depends on it:
//! - the poller follows a task only once its record is written, and writes what waits at the
//!   start of each tick, so it never settles a row without EM's ids;
//! - a read on this replica sees the task as the 202 showed it ([`Attacher::as_answered`]);
//!   another replica's read may show it without EM's task id for those milliseconds;
//! - a write that fails is tried again a second later, and until then the record waits;
//! - the intent was on disk before EM was called: if the process dies before the record is
//!   written, the task is an orphan the poller settles from EM's objects, as when EM's answer
//!   is lost (its entry in [`super::Unanswered`] stays until the record is written);
//! - at shutdown what waits is written before this replica hands its sessions over.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::in_flight::InFlightSet;
use super::unanswered::Pending;
use crate::clock::Timestamp;
use crate::domain::ReplicaId;
use crate::store::{EmAttach, InFlight, Store, StoreError, TaskRecord};

/// How long a record written behind its answer waits for others to share its statement.
pub const WRITE_BEHIND_AFTER: Duration = Duration::from_millis(5);

/// How long after a failed write of such records the next try comes.
const WRITE_BEHIND_RETRY: Duration = Duration::from_secs(1);

/// EM accepted a task: what is recorded, and the slot of the session that took it.
pub(super) struct Attach {
    pub em: EmAttach,
    pub slot: usize,
}

/// Where EM's task ids are recorded and followed: the store, the poller's in-flight set, and
/// the sessions already registered in the store.
pub struct Attacher {
    /// The records a request waits for (the group-committed writes' pool).
    store: Store,
    /// The records written behind their answers: a pool that outlives the HTTP workers, for
    /// the last ones are written after the server stopped.
    behind_store: Store,
    owner: ReplicaId,
    in_flight: Arc<InFlightSet>,
    registered: Mutex<HashSet<String>>,
    behind: Mutex<Behind>,
    /// One write of what waits at a time: when [`Attacher::write_behind_now`] returns, what
    /// waited when it was called is written (or has failed).
    turn: tokio::sync::Mutex<()>,
    wake: Notify,
}

/// Whether a task read shows what this replica answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    AsAnswered,
    /// Its record may have been written between the read and the look at what waits: a read
    /// now shows it.
    Again,
}

/// Records answered but not written yet, oldest first.
#[derive(Default)]
struct Behind {
    waiting: Vec<Waiting>,
    /// The writer was woken for what waits.
    woken: bool,
}

struct Waiting {
    em: EmAttach,
    queued: Instant,
    /// Its intent's entry in `unanswered`, taken out once the record is written.
    pending: Pending,
}

/// Sessions remembered as registered; past this the memory starts again (registering again
/// does no harm).
const REGISTERED_KEPT: usize = 1024;

impl Attacher {
    pub fn new(
        store: Store,
        behind_store: Store,
        owner: ReplicaId,
        in_flight: Arc<InFlightSet>,
    ) -> Self {
        Attacher {
            store,
            behind_store,
            owner,
            in_flight,
            registered: Mutex::new(HashSet::new()),
            behind: Mutex::new(Behind::default()),
            turn: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }
    }

    /// Whether this record may be written behind its answer: nothing else goes with it.
    pub(super) fn may_write_behind(&self, attach: &Attach) -> bool {
        self.lock_registered().contains(&attach.em.em_session_id)
    }

    /// Answers `task` as it will be once `attach` (see [`Attacher::may_write_behind`]) is
    /// recorded, and queues the record.
    pub fn write_behind(
        &self,
        mut task: TaskRecord,
        attach: EmAttach,
        pending: Pending,
    ) -> TaskRecord {
        fill_in(&mut task, &attach, self.owner);
        let wake = {
            let mut behind = self.lock_behind();
            behind.waiting.push(Waiting {
                em: attach,
                queued: Instant::now(),
                pending,
            });
            !std::mem::replace(&mut behind.woken, true)
        };
        if wake {
            self.wake.notify_one();
        }
        task
    }

    /// `task` (as read) as this replica answered it: with EM's ids if its record waits to be
    /// written. [`Read::Again`] when it may have been written since it was read: a running task
    /// read without EM's task id that no longer waits.
    pub fn as_answered(&self, task: &mut TaskRecord) -> Read {
        if task.em_task_id.is_some() || task.state != crate::domain::TaskState::Running {
            return Read::AsAnswered;
        }
        let behind = self.lock_behind();
        match behind.waiting.iter().find(|w| w.em.id == task.id) {
            Some(waiting) => {
                fill_in(task, &waiting.em, self.owner);
                Read::AsAnswered
            }
            None => Read::Again,
        }
    }

    /// Writes the records that wait, a few milliseconds after the first of them, for as long
    /// as it runs (until aborted: [`Attacher::write_behind_now`] writes what is left). After a
    /// failed write it tries again a second later.
    pub async fn write_behind_loop(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(WRITE_BEHIND_AFTER).await;
            if self.write_behind_now().await.is_err() {
                tokio::time::sleep(WRITE_BEHIND_RETRY).await;
                self.wake.notify_one();
            }
        }
    }

    /// Writes the records that wait now, one statement a chunk, and the poller follows their
    /// tasks. Records whose write fails stay queued for the next try (writing one again does
    /// no harm; one settled meanwhile, by the poller's look for intents EM's answer never came
    /// for, is left as it ended), their intents evidence for that look until then.
    pub async fn write_behind_now(&self) -> Result<(), StoreError> {
        let _turn = self.turn.lock().await;
        // Kept in the queue until written, so that a read meanwhile still sees them.
        let started = Instant::now();
        let batch: Vec<EmAttach> = {
            let mut behind = self.lock_behind();
            behind.woken = false;
            behind
                .waiting
                .iter()
                .map(|w| {
                    let waited = started.saturating_duration_since(w.queued);
                    crate::telemetry::store_write_queued("attach_behind", waited);
                    w.em.clone()
                })
                .collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let attached = match self.behind_store.attach_em_tasks(self.owner, &batch).await {
            Ok(attached) => attached,
            Err(e) => {
                tracing::error!(tasks = batch.len(), error = %e, "could not record EM's task ids; will try again");
                return Err(e);
            }
        };
        crate::telemetry::store_write_batch("attach_behind", batch.len(), started.elapsed());
        // Only this call takes from the front (it holds the turn); later ones were pushed
        // behind these.
        let done: Vec<Waiting> = self.lock_behind().waiting.drain(..batch.len()).collect();
        self.in_flight
            .add(attached.iter().flatten().filter_map(followed));
        for waiting in done {
            waiting.pending.answered();
        }
        Ok(())
    }

    /// EM accepted these: their task ids and sessions, in one transaction with any session
    /// not registered yet; then the poller follows them.
    pub(super) async fn attach(
        &self,
        batch: Vec<Attach>,
        now: Timestamp,
    ) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let sessions = self.unregistered(&batch);
        let attaches: Vec<EmAttach> = batch.into_iter().map(|a| a.em).collect();
        let attached = if sessions.is_empty() {
            // Only EM's task ids: one statement, no transaction round trips.
            self.store.attach_em_tasks(self.owner, &attaches).await?
        } else {
            self.attach_in_transaction(&sessions, &attaches, now)
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

    /// New sessions and EM's task ids, together.
    async fn attach_in_transaction(
        &self,
        sessions: &[(usize, String)],
        attaches: &[EmAttach],
        now: Timestamp,
    ) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let mut tx = self.store.begin().await?;
        // The intent was committed durably before EM was called; this only adds EM's task id,
        // so it need not wait for the disk. Were a database crash to lose it, the task would be
        // an orphan the poller settles from EM's objects.
        tx.relax_durability().await?;
        tx.register_sessions(self.owner, sessions, now).await?;
        let attached = tx.attach_em_tasks(self.owner, attaches).await?;
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

    fn lock_behind(&self) -> MutexGuard<'_, Behind> {
        self.behind.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The task as it is once `attach` is recorded by `owner` (what the store's attach writes).
fn fill_in(task: &mut TaskRecord, attach: &EmAttach, owner: ReplicaId) {
    task.em_task_id = Some(attach.em_task_id.clone());
    task.em_session_id = Some(attach.em_session_id.clone());
    task.em_owner = Some(owner);
    task.updated_at = attach.at.to_datetime();
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

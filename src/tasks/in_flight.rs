//! The tasks this replica follows on EM, kept in memory so that a poller tick reads nothing per
//! running task from the database: filled when EM's task id is recorded, emptied when a task is
//! settled, and made equal to the database's running tasks of this replica now and then
//! ([`InFlightSet::begin_resync`]) so that an update missed here cannot lose a task.
//!
//! Small on purpose: ~120 bytes a task (a task id, EM's task id kept as the number EM counts
//! in it, what matching EM's answer needs, and a shared session id), so 100,000 tasks in flight
//! hold ~12 MB (`tests/in_flight_memory.rs`; 19 MB when EM's task id was a string).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use crate::domain::{Operation, TaskId};
use crate::store::InFlight;

/// A running task as the poller matches it against its session's EM task list.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub id: TaskId,
    pub operation: Operation,
    pub target_id: Option<Uuid>,
}

/// EM's task id as EM writes it, `task-N` (a counter of the session's), kept as N: eight
/// bytes instead of a string per task. `None` for any other form, which is kept as text. Only
/// the form that prints back the same is taken (no sign, no leading zero).
fn counter(em_task_id: &str) -> Option<u64> {
    let digits = em_task_id.strip_prefix("task-")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// One session's followed tasks by EM task id.
#[derive(Debug, Default)]
struct SessionTasks {
    counted: HashMap<u64, Tracked>,
    named: HashMap<Box<str>, Tracked>,
}

impl SessionTasks {
    fn get(&self, em_task_id: &str) -> Option<&Tracked> {
        match counter(em_task_id) {
            Some(n) => self.counted.get(&n),
            None => self.named.get(em_task_id),
        }
    }

    fn is_empty(&self) -> bool {
        self.counted.is_empty() && self.named.is_empty()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// EM session → its tasks.
    by_session: HashMap<Arc<str>, SessionTasks>,
    /// Task → its session and EM task id, to forget it by id without walking its session's
    /// tasks (a walk per settled task was most of the gateway's CPU at 100,000 in flight).
    counted: HashMap<TaskId, (Arc<str>, u64)>,
    /// The same for EM task ids of another form (none, from the EM we know).
    named: HashMap<TaskId, (Arc<str>, Box<str>)>,
    /// While a resync reads the database: what changed here meanwhile, which the rows read
    /// may or may not show.
    resync: Option<Changes>,
}

/// Tasks added and forgotten while a resync's read was under way.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub added: Vec<InFlight>,
    pub forgotten: HashSet<TaskId>,
}

#[derive(Debug, Default)]
pub struct InFlightSet {
    inner: Mutex<Inner>,
}

/// What the set holds after a resync: the rows read, less what was settled here meanwhile,
/// plus what was attached here meanwhile (its commit may have come after the read).
pub fn merge(rows: Vec<InFlight>, changes: Changes) -> Vec<InFlight> {
    let mut seen = HashSet::new();
    rows.into_iter()
        .chain(changes.added)
        .filter(|t| !changes.forgotten.contains(&t.id) && seen.insert(t.id))
        .collect()
}

impl InFlightSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// EM accepted these and their EM task ids are recorded.
    pub fn add(&self, tasks: impl IntoIterator<Item = InFlight>) {
        let mut inner = self.lock();
        for task in tasks {
            if let Some(changes) = &mut inner.resync {
                changes.forgotten.remove(&task.id);
                changes.added.push(task.clone());
            }
            inner.insert(task);
        }
    }

    /// These are settled (or were never this replica's to follow).
    pub fn forget(&self, ids: impl IntoIterator<Item = TaskId>) {
        let mut inner = self.lock();
        for id in ids {
            if let Some(changes) = &mut inner.resync {
                changes.forgotten.insert(id);
            }
            inner.remove(id);
        }
        inner.shrink_if_sparse();
    }

    /// Starts a resync: call before reading the database's running tasks of this replica, then
    /// [`finish_resync`](Self::finish_resync) with them.
    pub fn begin_resync(&self) {
        self.lock().resync = Some(Changes::default());
    }

    /// Replaces the set with `rows` (read after [`begin_resync`](Self::begin_resync)) and what
    /// changed here since. Returns how many tasks it holds.
    pub fn finish_resync(&self, rows: Vec<InFlight>) -> usize {
        let mut inner = self.lock();
        let changes = inner.resync.take().unwrap_or_default();
        let mut fresh = Inner::default();
        for task in merge(rows, changes) {
            fresh.insert(task);
        }
        *inner = fresh;
        inner.len()
    }

    /// A resync's read failed: keep the set as it is.
    pub fn abandon_resync(&self) {
        self.lock().resync = None;
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `session` has any task being followed.
    pub fn has_tasks_on(&self, session: &str) -> bool {
        self.lock()
            .by_session
            .get(session)
            .is_some_and(|t| !t.is_empty())
    }

    /// Whether EM task `em_task_id` of `session` is followed.
    pub fn contains(&self, session: &str, em_task_id: &str) -> bool {
        self.lock()
            .by_session
            .get(session)
            .is_some_and(|t| t.get(em_task_id).is_some())
    }

    /// The followed task that is EM task `em_task_id` of `session`.
    pub fn get(&self, session: &str, em_task_id: &str) -> Option<Tracked> {
        self.lock()
            .by_session
            .get(session)
            .and_then(|t| t.get(em_task_id))
            .cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn len(&self) -> usize {
        self.counted.len() + self.named.len()
    }

    fn insert(&mut self, task: InFlight) {
        self.remove(task.id);
        let session: Arc<str> = match self.by_session.get_key_value(task.em_session_id.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(task.em_session_id.as_str()),
        };
        let tracked = Tracked {
            id: task.id,
            operation: task.operation,
            target_id: task.target_id,
        };
        let tasks = self.by_session.entry(session.clone()).or_default();
        match counter(&task.em_task_id) {
            Some(n) => {
                tasks.counted.insert(n, tracked);
                self.counted.insert(task.id, (session, n));
            }
            None => {
                let name: Box<str> = task.em_task_id.into();
                tasks.named.insert(name.clone(), tracked);
                self.named.insert(task.id, (session, name));
            }
        }
    }

    fn remove(&mut self, id: TaskId) {
        // Only if it is still this task's (another may have taken that EM task id since).
        let session = if let Some((session, n)) = self.counted.remove(&id) {
            if let Some(tasks) = self.by_session.get_mut(&session)
                && tasks.counted.get(&n).is_some_and(|t| t.id == id)
            {
                tasks.counted.remove(&n);
            }
            session
        } else if let Some((session, name)) = self.named.remove(&id) {
            if let Some(tasks) = self.by_session.get_mut(&session)
                && tasks.named.get(&name).is_some_and(|t| t.id == id)
            {
                tasks.named.remove(&name);
            }
            session
        } else {
            return;
        };
        if self
            .by_session
            .get(&session)
            .is_some_and(SessionTasks::is_empty)
        {
            self.by_session.remove(&session);
        }
    }

    /// Gives back the room of the counted tables (all but a handful of tasks) once they have
    /// emptied to a quarter: a map keeps the size of its largest day (100,000 tasks in flight
    /// once, ~4 MB of index for ever).
    fn shrink_if_sparse(&mut self) {
        if self.counted.capacity() > 4 * self.counted.len().max(1024) {
            self.counted.shrink_to(2 * self.counted.len());
        }
        for tasks in self.by_session.values_mut() {
            if tasks.counted.capacity() > 4 * tasks.counted.len().max(1024) {
                tasks.counted.shrink_to(2 * tasks.counted.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: u128, session: &str) -> InFlight {
        InFlight {
            id: TaskId::from_uuid(Uuid::from_u128(n)),
            operation: Operation::CreateCloudGateway,
            target_id: None,
            em_task_id: format!("task-{n}"),
            em_session_id: session.into(),
        }
    }

    fn ids(tasks: &[InFlight]) -> Vec<u128> {
        tasks.iter().map(|t| t.id.uuid().as_u128()).collect()
    }

    #[test]
    fn a_resync_keeps_what_changed_during_its_read() {
        let forgotten = |ns: &[u128]| {
            ns.iter()
                .map(|n| TaskId::from_uuid(Uuid::from_u128(*n)))
                .collect::<HashSet<_>>()
        };
        // (rows read, added meanwhile, forgotten meanwhile, held after)
        type Ids = &'static [u128];
        let cases: &[(Ids, Ids, Ids, Ids)] = &[
            (&[1, 2], &[], &[], &[1, 2]),
            // Attached after the read began: its commit may have come too late for the read.
            (&[1], &[2], &[], &[1, 2]),
            // Attached before the read and read too: once.
            (&[1, 2], &[2], &[], &[1, 2]),
            // Settled here while the read ran, which may still show it running.
            (&[1, 2], &[], &[2], &[1]),
            // Settled elsewhere (not read) and gone here too: gone.
            (&[1], &[], &[], &[1]),
            (&[], &[], &[], &[]),
        ];
        for (rows, added, gone, want) in cases {
            let changes = Changes {
                added: added.iter().map(|n| task(*n, "s")).collect(),
                forgotten: forgotten(gone),
            };
            let read = rows.iter().map(|n| task(*n, "s")).collect();
            assert_eq!(
                ids(&merge(read, changes)),
                want.to_vec(),
                "rows {rows:?}, added {added:?}, forgotten {gone:?}",
            );
        }
    }

    #[test]
    fn em_task_ids_are_kept_as_their_counter_when_they_print_back_the_same() {
        let rows: &[(&str, Option<u64>)] = &[
            ("task-1", Some(1)),
            ("task-0", Some(0)),
            ("task-18446744073709551615", Some(u64::MAX)),
            ("task-18446744073709551616", None),
            ("task-01", None),
            ("task-+1", None),
            ("task--1", None),
            ("task-", None),
            ("task-1 ", None),
            ("Task-1", None),
            ("urn:veeam:Task:1", None),
            ("", None),
        ];
        for (id, want) in rows {
            assert_eq!(counter(id), *want, "{id:?}");
        }
    }

    #[test]
    fn tasks_whose_em_ids_are_not_counters_are_followed_too() {
        let set = InFlightSet::new();
        let mut odd = task(1, "a");
        odd.em_task_id = "task-01".into();
        set.add([odd.clone(), task(2, "a")]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.get("a", "task-01").map(|t| t.id), Some(odd.id));
        assert!(!set.contains("a", "task-1"), "task-01 is not task-1");
        set.forget([odd.id]);
        assert!(!set.contains("a", "task-01") && set.contains("a", "task-2"));
        set.forget([task(2, "a").id]);
        assert!(set.is_empty() && !set.has_tasks_on("a"));
    }

    #[test]
    fn the_set_follows_adds_forgets_and_resyncs() {
        let set = InFlightSet::new();
        set.add([task(1, "a"), task(2, "a"), task(3, "b")]);
        assert_eq!(set.len(), 3);
        assert!(set.contains("a", "task-2") && !set.contains("b", "task-2"));
        assert_eq!(set.get("b", "task-3").map(|t| t.id), Some(task(3, "b").id));
        set.forget([task(3, "b").id]);
        assert!(!set.has_tasks_on("b"), "an emptied session is dropped");
        set.begin_resync();
        set.add([task(4, "c")]);
        set.forget([task(1, "a").id]);
        // The read saw 1 and 2 (1 settled here meanwhile) and 5, attached before it began.
        let held = set.finish_resync(vec![task(1, "a"), task(2, "a"), task(5, "a")]);
        assert_eq!(held, 3);
        assert!(set.contains("a", "task-2") && set.contains("a", "task-5"));
        assert!(set.contains("c", "task-4") && !set.contains("a", "task-1"));
        // Outside a resync nothing is remembered for the next.
        set.add([task(6, "a")]);
        set.begin_resync();
        assert_eq!(set.finish_resync(Vec::new()), 0);
    }

    #[test]
    fn a_task_is_forgotten_under_the_em_task_id_it_was_last_added_with() {
        let set = InFlightSet::new();
        let moved = InFlight {
            em_task_id: "task-9".into(),
            ..task(1, "b")
        };
        set.add([task(1, "a"), task(2, "a")]);
        set.add([moved]);
        assert!(!set.contains("a", "task-1") && set.contains("b", "task-9"));
        assert!(
            set.contains("a", "task-2"),
            "the session's other task stays"
        );
        assert_eq!(set.len(), 2);
        set.forget([task(1, "a").id]);
        assert!(!set.has_tasks_on("b") && set.contains("a", "task-2"));

        // Two tasks said to be one EM task: the later one is followed, and forgetting the
        // earlier one does not forget it.
        let twin = InFlight {
            em_task_id: "task-2".into(),
            ..task(3, "a")
        };
        set.add([twin]);
        set.forget([task(2, "a").id]);
        assert_eq!(set.get("a", "task-2").map(|t| t.id), Some(task(3, "a").id));
        set.forget([task(3, "a").id]);
        assert!(set.is_empty());
    }
}

//! The intents this replica wrote whose fate it has not seen: the evidence that the poller's
//! look for intents EM's answer never came for has something to find.
//!
//! A submit records its intent, calls EM, then records EM's task id (or drops the intent EM
//! refused). Only a submit that did not get that far leaves an intent behind: EM's answer was
//! lost, recording it failed, or the request was dropped on the way. Each intent is entered
//! here before it is written and taken out only when its fate is recorded, so what is left is
//! exactly what this replica may have left behind; a retry that finds an intent another
//! request left (a process that died mid-request) enters it too. A replica that died took its own list with
//! it: the others learn of it from its heartbeats ([`crate::store::replica_gone_lately`]), and
//! a restarted one looks at every intent at its first tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::Timestamp;
use crate::domain::TaskId;

#[derive(Debug, Default)]
pub struct Unanswered {
    /// Each intent not yet answered, and when it was entered (no later than it was written).
    open: Mutex<HashMap<TaskId, Timestamp>>,
}

impl Unanswered {
    pub fn new() -> Self {
        Self::default()
    }

    /// Enters an intent about to be written; [`Pending::answered`] takes it out.
    pub fn written(self: &Arc<Self>, id: TaskId, at: Timestamp) -> Pending {
        self.open().insert(id, at);
        Pending {
            unanswered: self.clone(),
            id,
        }
    }

    /// An intent another request left behind, found by this replica (a retry under its
    /// Idempotency-Key found it without EM's task id): evidence until a look.
    pub fn left_behind(&self, id: TaskId, at: Timestamp) {
        self.open().insert(id, at);
    }

    /// Whether an intent entered before `before` is still without its fate: a look for intents
    /// written before then has something to find.
    pub fn any_before(&self, before: Timestamp) -> bool {
        self.open().values().any(|at| *at < before)
    }

    /// Every intent written before `before` has been looked at: the look settles what they
    /// left behind, so they are no evidence any more.
    pub fn looked_before(&self, before: Timestamp) {
        self.open().retain(|_, at| *at >= before);
    }

    pub fn len(&self) -> usize {
        self.open().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn open(&self) -> MutexGuard<'_, HashMap<TaskId, Timestamp>> {
        // A panic elsewhere while it was held leaves a map still worth reading.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An intent entered in [`Unanswered`]. Dropped without [`Pending::answered`] it stays there:
/// that is the evidence, not a leak (the next look takes it out).
#[must_use = "an intent left unanswered stays as evidence until a look"]
pub struct Pending {
    unanswered: Arc<Unanswered>,
    id: TaskId,
}

impl Pending {
    /// Its fate is recorded: EM's task id, or the intent dropped after EM refused it.
    pub fn answered(self) {
        self.unanswered.open().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_intents_left_without_their_fate_are_evidence_until_looked_at() {
        let unanswered = Arc::new(Unanswered::new());
        let t0 = Timestamp::from_millis(1_000_000);
        let later = |s: u64| t0 + Duration::from_secs(s);
        unanswered.written(TaskId::new(), t0).answered();
        assert!(!unanswered.any_before(later(60)), "answered: gone");

        // One whose answer was lost, one dropped mid-submit, one still on its way.
        let lost = unanswered.written(TaskId::new(), t0);
        drop(lost);
        let dropped = unanswered.written(TaskId::new(), later(1));
        drop(dropped);
        let on_its_way = unanswered.written(TaskId::new(), later(20));
        assert_eq!(unanswered.len(), 3);
        assert!(!unanswered.any_before(t0), "none written before t0");
        assert!(unanswered.any_before(later(1)), "the lost one");

        unanswered.looked_before(later(2));
        assert_eq!(unanswered.len(), 1, "the look took the two left behind");
        assert!(!unanswered.any_before(later(20)));
        assert!(unanswered.any_before(later(21)), "still on its way");
        on_its_way.answered();
        assert!(unanswered.is_empty());
    }
}

//! The intents this replica wrote whose fate it has not seen: the evidence that the poller's
//! look for intents EM's answer never came for has something to find.
//!
//! A submit records its intent, calls EM, then records EM's task id (or drops the intent EM
//! refused). Only a submit that did not get that far leaves an intent behind: EM's answer was
//! lost, recording it failed, or the request was dropped on the way. Each intent is entered
//! here before it is written and taken out only when its fate is recorded, so what this
//! replica may have left behind is among what is left; a retry that finds an intent another
//! request left (a process that died mid-request) enters it too. A replica that died took its
//! own list with it: the others learn of it from its heartbeats
//! ([`crate::store::replica_gone_lately`]), and a restarted one looks at every intent at its
//! first tick.
//!
//! Each entry's time is no earlier than its intent's `created_at`: a look for intents written
//! before a time that is past it has covered that intent, and may take the entry out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::{Clock, Timestamp};
use crate::domain::TaskId;

#[derive(Debug, Default)]
pub struct Unanswered {
    /// Each intent not yet answered, and a time no earlier than it was written.
    open: Mutex<HashMap<TaskId, Timestamp>>,
}

impl Unanswered {
    pub fn new() -> Self {
        Self::default()
    }

    /// Enters an intent about to be written; [`Pending::written_at`] gives the time it was
    /// written, [`Pending::answered`] takes it out.
    pub fn entering(self: &Arc<Self>, id: TaskId, clock: &Clock) -> Pending {
        // Until its write is over, an entry is kept out of reach of looks (see `looked_before`).
        self.open().insert(id, Timestamp::from_millis(i64::MAX));
        Pending {
            unanswered: self.clone(),
            id,
            clock: clock.clone(),
            written: false,
            answered: false,
        }
    }

    /// An intent another request left behind, found by this replica (a retry under its
    /// Idempotency-Key found it without EM's task id), written at `at`: evidence until a look.
    pub fn left_behind(&self, id: TaskId, at: Timestamp) {
        self.open().insert(id, at);
    }

    /// The earliest time an intent still without its fate was written at, if one was written
    /// before `before`: a look for intents written before then has something to find, from
    /// that time on.
    pub fn earliest_before(&self, before: Timestamp) -> Option<Timestamp> {
        self.open()
            .values()
            .copied()
            .filter(|at| *at < before)
            .min()
    }

    /// Every intent written before `before` has been looked at: the look settled or leased what
    /// they left behind, so they are no evidence any more.
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

/// An intent entered in [`Unanswered`]. Dropped without [`Pending::answered`] it stays there
/// (its write's time, or now if the write did not end): that is the evidence, not a leak (the
/// next look that covers it takes it out).
#[must_use = "an intent left unanswered stays as evidence until a look"]
pub struct Pending {
    unanswered: Arc<Unanswered>,
    id: TaskId,
    clock: Clock,
    written: bool,
    answered: bool,
}

impl Pending {
    /// Its write ended: committed with `created_at` = `at`, or failed (then `at` is now: if it
    /// committed after all, it did so no later).
    pub fn written_at(&mut self, at: Timestamp) {
        self.unanswered.open().insert(self.id, at);
        self.written = true;
    }

    /// Its fate is recorded: EM's task id, or the intent dropped after EM refused it.
    pub fn answered(mut self) {
        self.unanswered.open().remove(&self.id);
        self.answered = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Dropped while its write was under way (the request was): it may commit still, and no
        // later than now.
        if !self.written && !self.answered {
            self.unanswered.open().insert(self.id, self.clock.now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_intents_left_without_their_fate_are_evidence_until_looked_at() {
        let unanswered = Arc::new(Unanswered::new());
        let clock = Clock::manual();
        let t0 = clock.now();
        let later = |s: u64| t0 + Duration::from_secs(s);
        let mut answered = unanswered.entering(TaskId::new(), &clock);
        answered.written_at(t0);
        answered.answered();
        assert_eq!(
            unanswered.earliest_before(later(60)),
            None,
            "answered: gone"
        );

        // One still on its way: while its write is under way, no look may take it out.
        let mut on_its_way = unanswered.entering(TaskId::new(), &clock);
        unanswered.looked_before(later(3600));
        assert_eq!(
            unanswered.len(),
            1,
            "a write under way is never looked past"
        );
        on_its_way.written_at(later(20));
        // One whose answer was lost, one dropped mid-submit after its write.
        let mut lost = unanswered.entering(TaskId::new(), &clock);
        lost.written_at(t0);
        drop(lost);
        let mut dropped = unanswered.entering(TaskId::new(), &clock);
        dropped.written_at(later(1));
        drop(dropped);
        assert_eq!(unanswered.len(), 3);
        assert_eq!(
            unanswered.earliest_before(t0),
            None,
            "none written before t0"
        );
        assert_eq!(
            unanswered.earliest_before(later(2)),
            Some(t0),
            "the lost one first"
        );

        unanswered.looked_before(later(2));
        assert_eq!(unanswered.len(), 1, "the look took the two left behind");
        assert_eq!(unanswered.earliest_before(later(20)), None);
        assert_eq!(unanswered.earliest_before(later(21)), Some(later(20)));
        on_its_way.answered();
        assert!(unanswered.is_empty());

        // A request dropped while its intent was being written: entered at the time it was
        // dropped, which is no earlier than the intent's commit.
        let mid_write = unanswered.entering(TaskId::new(), &clock);
        clock.advance(Duration::from_secs(5));
        drop(mid_write);
        assert_eq!(
            unanswered.earliest_before(later(3600)),
            Some(t0 + Duration::from_secs(5))
        );
    }
}

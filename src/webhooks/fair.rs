//! Which deliveries the deliverer takes on, and when it claims: a subscription whose consumer
//! hangs holds at most its own share of the attempts in flight, and the others' deliveries are
//! claimed and sent meanwhile.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

/// With fewer than a batch of slots free and attempts under way, claims are at most this often:
/// a claim per freed slot would cost a round trip per delivery under load, and waiting for a
/// whole batch to free up would wait on a consumer that hangs.
pub const CLAIM_PAUSE: Duration = Duration::from_millis(10);

/// What the sending loop does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Claim up to the free slots.
    Claim,
    /// Every slot is taken: wait until one frees up.
    AwaitSlot,
    /// Claim after this long (or when a whole batch is free).
    Pause(Duration),
}

/// `free` slots, `busy` attempts under way, claims of `batch` at a time, the last claim
/// `since_claim` ago.
pub fn plan(free: usize, busy: usize, batch: usize, since_claim: Duration) -> Plan {
    if free == 0 {
        Plan::AwaitSlot
    } else if free >= batch || busy == 0 || since_claim >= CLAIM_PAUSE {
        Plan::Claim
    } else {
        Plan::Pause(CLAIM_PAUSE - since_claim)
    }
}

/// Attempts in flight, and claimed deliveries waiting for a slot, by subscription.
///
/// A subscription sends at most `per_subscription` attempts at once. Of a claim, what is over
/// its share waits here (up to one more share) instead of going back to the database: when
/// one of its attempts ends, the next waiting delivery takes that slot at once, with no claim.
/// A subscription with waiting deliveries always has its share in flight (they go the moment it
/// has less), so claims pass it over and what waits starts within one attempt's timeout: well
/// inside the lease that kept it this replica's.
#[derive(Debug)]
pub struct Shares<K, J> {
    per_subscription: usize,
    in_flight: HashMap<K, usize>,
    waiting: HashMap<K, VecDeque<J>>,
}

/// What becomes of the deliveries of one claim.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted<J> {
    /// Sent now (counted in flight).
    pub send: Vec<J>,
    /// More than its subscription may hold here: back to the database, untouched.
    pub back: Vec<J>,
}

impl<K: Copy + Eq + Hash + Ord, J> Shares<K, J> {
    /// A share of 0 counts as 1.
    pub fn new(per_subscription: usize) -> Self {
        Shares {
            per_subscription: per_subscription.max(1),
            in_flight: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// Takes claimed deliveries in claim order: sent while their subscription has less than
    /// its share in flight, then kept waiting up to one more share; the rest go back.
    pub fn admit(&mut self, claimed: Vec<J>, key: impl Fn(&J) -> K) -> Admitted<J> {
        let share = self.per_subscription;
        let mut admitted = Admitted {
            send: Vec::new(),
            back: Vec::new(),
        };
        for job in claimed {
            let k = key(&job);
            let n = self.in_flight.entry(k).or_default();
            if *n < share {
                *n += 1;
                admitted.send.push(job);
                continue;
            }
            let waiting = self.waiting.entry(k).or_default();
            if waiting.len() < share {
                waiting.push_back(job);
            } else {
                admitted.back.push(job);
            }
        }
        admitted
    }

    /// An attempt of `key`'s subscription ended: its next waiting delivery, which takes the
    /// slot (still counted in flight), or none and the subscription has one fewer in flight.
    pub fn done(&mut self, key: &K) -> Option<J> {
        if let Some(waiting) = self.waiting.get_mut(key) {
            let next = waiting.pop_front();
            if waiting.is_empty() {
                self.waiting.remove(key);
            }
            if next.is_some() {
                return next;
            }
        }
        self.release(key);
        None
    }

    /// An attempt of `key`'s subscription ended and its slot is not handed on: one fewer in
    /// flight, whatever waits.
    pub fn release(&mut self, key: &K) {
        if let Some(n) = self.in_flight.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(key);
            }
        }
    }

    /// The subscriptions with their share in flight: claims pass them over.
    pub fn full(&self) -> Vec<K> {
        let mut full: Vec<K> = self
            .in_flight
            .iter()
            .filter(|(_, n)| **n >= self.per_subscription)
            .map(|(k, _)| *k)
            .collect();
        full.sort_unstable();
        full
    }

    /// Everything waiting, taken out (to give back).
    pub fn take_waiting(&mut self) -> Vec<J> {
        self.waiting.drain().flat_map(|(_, w)| w).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_to_claim() {
        let ms = Duration::from_millis;
        let rows: &[(&str, usize, usize, usize, Duration, Plan)] = &[
            ("all slots taken", 0, 8, 8, ms(100), Plan::AwaitSlot),
            ("a whole batch free", 8, 0, 8, ms(0), Plan::Claim),
            ("a batch free, others busy", 32, 96, 32, ms(0), Plan::Claim),
            ("idle: claim whatever is free", 1, 0, 32, ms(0), Plan::Claim),
            (
                "one slot free, just claimed: pause",
                1,
                127,
                32,
                ms(4),
                Plan::Pause(ms(6)),
            ),
            // Slots held by a hanging consumer: a batch may never free up.
            (
                "a few free, paused long enough",
                6,
                2,
                8,
                ms(10),
                Plan::Claim,
            ),
            ("a few free, long ago", 6, 2, 8, Duration::MAX, Plan::Claim),
        ];
        for (why, free, busy, batch, since, expected) in rows {
            assert_eq!(plan(*free, *busy, *batch, *since), *expected, "{why}");
        }
    }

    /// The shares after `before` (subscriptions' attempts in flight, waiting jobs) and a
    /// claim, as text: sent, waiting, back.
    fn claim(
        per: usize,
        before: &[(char, usize)],
        claimed: &str,
    ) -> (Shares<char, (char, usize)>, String) {
        let mut shares = Shares::new(per);
        for (k, n) in before {
            for i in 0..*n {
                let admitted = shares.admit(vec![(*k, 1000 + i)], |j| j.0);
                assert_eq!(admitted.send.len(), 1, "set-up: {k} fits its share");
            }
        }
        let jobs: Vec<(char, usize)> = claimed.chars().enumerate().map(|(i, c)| (c, i)).collect();
        let admitted = shares.admit(jobs, |j| j.0);
        let mut verdict: Vec<char> = vec!['w'; claimed.len()];
        for (_, i) in admitted.send {
            verdict[i] = 's';
        }
        for (_, i) in admitted.back {
            verdict[i] = 'b';
        }
        (shares, verdict.into_iter().collect())
    }

    #[test]
    fn a_subscription_sends_its_share_keeps_one_more_waiting_and_gives_back_the_rest() {
        // (why, share, in flight before, claimed in order, what became of each:
        //  s = sent, w = waiting here, b = back to the database)
        type Row = (
            &'static str,
            usize,
            &'static [(char, usize)],
            &'static str,
            &'static str,
        );
        let rows: &[Row] = &[
            ("nothing in flight", 2, &[], "ab", "ss"),
            (
                "a hanging consumer's backlog first: its share, a share waiting, the others sent",
                2,
                &[],
                "hhhhhhok",
                "sswwbbss",
            ),
            ("already full: it waits", 2, &[('h', 2)], "hho", "wws"),
            ("one left", 2, &[('h', 1)], "hhhh", "swwb"),
            ("a share of 0 counts as 1", 0, &[], "aaa", "swb"),
            ("nothing claimed", 2, &[('a', 1)], "", ""),
        ];
        for (why, per, before, claimed, expected) in rows {
            let (_, got) = claim(*per, before, claimed);
            assert_eq!(&got, expected, "{why}");
        }
    }

    #[test]
    fn an_ended_attempt_hands_its_slot_to_the_next_waiting_delivery_of_its_subscription() {
        let (mut shares, got) = claim(2, &[], "hhhho");
        assert_eq!(got, "sswws");
        assert_eq!(shares.full(), vec!['h'], "h has its share in flight");
        // An attempt of h ends: its first waiting delivery goes in its place, in claim order.
        assert_eq!(shares.done(&'h'), Some(('h', 2)));
        assert_eq!(shares.full(), vec!['h'], "still its share in flight");
        assert_eq!(shares.done(&'h'), Some(('h', 3)));
        // Nothing waits now: a slot frees up, and claims take h again.
        assert_eq!(shares.done(&'h'), None);
        assert!(shares.full().is_empty());
        assert_eq!(shares.done(&'o'), None);
        assert_eq!(shares.done(&'o'), None, "none below zero");
        assert_eq!(shares.done(&'h'), None);
        assert_eq!(shares.in_flight, HashMap::new());
    }

    #[test]
    fn waiting_deliveries_are_given_back_when_the_deliverer_stops() {
        let (mut shares, got) = claim(1, &[], "aabbc");
        assert_eq!(got, "swsws");
        let mut left = shares.take_waiting();
        left.sort();
        assert_eq!(left, vec![('a', 1), ('b', 3)]);
        assert_eq!(shares.done(&'a'), None, "nothing waits any more");
    }

    #[test]
    fn a_released_slot_is_not_handed_on() {
        let (mut shares, got) = claim(1, &[], "aa");
        assert_eq!(got, "sw");
        shares.release(&'a');
        assert!(shares.full().is_empty(), "a has nothing in flight");
        assert_eq!(
            shares.take_waiting(),
            vec![('a', 1)],
            "what waited is still there"
        );
    }

    #[test]
    fn full_subscriptions_are_passed_over_until_an_attempt_ends() {
        let (mut shares, _) = claim(2, &[('h', 2), ('o', 1)], "");
        assert_eq!(shares.full(), vec!['h']);
        shares.done(&'h');
        assert!(shares.full().is_empty());
        let (shares, _) = claim(1, &[('h', 1), ('o', 1)], "");
        assert_eq!(shares.full(), vec!['h', 'o']);
    }
}

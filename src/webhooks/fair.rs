//! Which deliveries the deliverer takes on, and when it claims: a subscription whose consumer
//! hangs holds at most its own share of the attempts in flight, and the others' deliveries are
//! claimed and sent meanwhile.

use std::collections::HashMap;
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

/// The subscriptions with `per_subscription` attempts in flight: claims pass them over.
pub fn full<K: Copy + Ord>(in_flight: &HashMap<K, usize>, per_subscription: usize) -> Vec<K> {
    let mut full: Vec<K> = in_flight
        .iter()
        .filter(|(_, n)| **n >= per_subscription)
        .map(|(k, _)| *k)
        .collect();
    full.sort_unstable();
    full
}

/// Of deliveries claimed (by subscription, in claim order), which are sent now: while its
/// subscription has fewer than `per_subscription` in flight. Those sent are counted in
/// `in_flight`; the others go back, untouched, for a later claim.
pub fn admit<K: Copy + Eq + Hash>(
    claimed: &[K],
    in_flight: &mut HashMap<K, usize>,
    per_subscription: usize,
) -> Vec<bool> {
    claimed
        .iter()
        .map(|k| {
            let n = in_flight.entry(*k).or_default();
            let send = *n < per_subscription.max(1);
            if send {
                *n += 1;
            }
            send
        })
        .collect()
}

/// An attempt ended: its subscription has one fewer in flight.
pub fn done<K: Eq + Hash>(in_flight: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = in_flight.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            in_flight.remove(key);
        }
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

    #[test]
    fn a_subscription_gets_at_most_its_share() {
        // (why, in flight before, claimed in order, per subscription, sent, in flight after)
        type Row = (
            &'static str,
            &'static [(char, usize)],
            &'static str,
            usize,
            &'static str,
            &'static [(char, usize)],
        );
        let rows: &[Row] = &[
            (
                "nothing in flight",
                &[],
                "ab",
                2,
                "11",
                &[('a', 1), ('b', 1)],
            ),
            (
                "a hanging consumer's backlog first: two of it, all of the other",
                &[],
                "hhhhhhok",
                2,
                "11000011",
                &[('h', 2), ('o', 1), ('k', 1)],
            ),
            (
                "already full: none of it",
                &[('h', 2)],
                "hho",
                2,
                "001",
                &[('h', 2), ('o', 1)],
            ),
            ("one left", &[('h', 1)], "hhh", 2, "100", &[('h', 2)]),
            ("limit 0 counts as 1", &[], "aa", 0, "10", &[('a', 1)]),
            ("nothing claimed", &[('a', 1)], "", 2, "", &[('a', 1)]),
        ];
        for (why, before, claimed, per, sent, after) in rows {
            let mut in_flight: HashMap<char, usize> = before.iter().copied().collect();
            let keys: Vec<char> = claimed.chars().collect();
            let got: String = admit(&keys, &mut in_flight, *per)
                .iter()
                .map(|s| if *s { '1' } else { '0' })
                .collect();
            assert_eq!(&got, sent, "{why}");
            let expected: HashMap<char, usize> = after.iter().copied().collect();
            assert_eq!(in_flight, expected, "{why}");
        }
    }

    #[test]
    fn full_subscriptions_are_passed_over_until_an_attempt_ends() {
        let mut in_flight = HashMap::from([('h', 2), ('o', 1)]);
        assert_eq!(full(&in_flight, 2), vec!['h']);
        assert_eq!(full(&in_flight, 1), vec!['h', 'o']);
        done(&mut in_flight, &'h');
        assert!(full(&in_flight, 2).is_empty());
        done(&mut in_flight, &'o');
        done(&mut in_flight, &'o');
        assert_eq!(in_flight, HashMap::from([('h', 1)]), "none below zero");
    }
}

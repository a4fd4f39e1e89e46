//! Which deliveries the deliverer takes on, and when it claims: a subscription whose consumer
//! hangs holds at most its own share of the attempts in flight, and the others' deliveries are
//! claimed and sent meanwhile.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

/// With fewer than a batch of slots free and attempts under way, or for a hungry subscription
/// (see [`Shares::refill`]), claims are at most this often: a claim per freed slot would cost a
/// round trip per delivery under load, and waiting for a whole batch to free up would wait on a
/// consumer that hangs.
pub const CLAIM_PAUSE: Duration = Duration::from_millis(10);

/// What the sending loop does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Claim up to the free slots, and what refills the hungry subscriptions.
    Claim,
    /// Every slot is taken: wait until one frees up.
    AwaitSlot,
    /// Claim after this long (or when a whole batch is free).
    Pause(Duration),
}

/// `free` slots, `busy` attempts under way, claims of `batch` at a time, the last claim
/// `since_claim` ago; `hungry`: a subscription with its share in flight is running short of
/// deliveries waiting (see [`Shares::refill`]), and the database may hold more.
pub fn plan(free: usize, busy: usize, batch: usize, since_claim: Duration, hungry: bool) -> Plan {
    if hungry && since_claim >= CLAIM_PAUSE {
        Plan::Claim
    } else if free == 0 && !hungry {
        Plan::AwaitSlot
    } else if free >= batch || busy == 0 || since_claim >= CLAIM_PAUSE {
        Plan::Claim
    } else {
        Plan::Pause(CLAIM_PAUSE - since_claim)
    }
}

/// While the database may hold due deliveries, it is claimed from at least this often: a
/// steady stream of handed deliveries does not keep its retries (and what other replicas gave
/// back) waiting.
pub const CLAIM_AT_LEAST: Duration = Duration::from_secs(1);

/// A claim made before the handed deliveries held are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimFirst {
    /// Deliveries to claim (0: the turn is taken, with nothing claimed).
    pub want: usize,
    /// With a single slot free, this claim takes it (the next one leaves it).
    pub took_single: bool,
}

/// Whether a claim goes before the handed deliveries now, and of how many: only while some are
/// `held`, the database is not known to be `dry`, a slot is `free` and the last such claim is
/// [`CLAIM_AT_LEAST`] old. It leaves one free slot to the handed ones, up to a `batch`; with a
/// single slot free, it takes it every other time (`took_single`: the last one did).
pub fn claim_first(
    held: bool,
    dry: bool,
    free: usize,
    batch: usize,
    since_claim: Duration,
    took_single: bool,
) -> Option<ClaimFirst> {
    if !held || dry || free == 0 || since_claim < CLAIM_AT_LEAST {
        return None;
    }
    Some(match free {
        1 => ClaimFirst {
            want: usize::from(!took_single),
            took_single: !took_single,
        },
        _ => ClaimFirst {
            want: (free - 1).min(batch),
            took_single,
        },
    })
}

/// How long the database is taken to hold nothing more after a claim came back short: until
/// the next delivery is due there (`next_due`), but while attempts are under way (`busy`),
/// at most [`CLAIM_AT_LEAST`]: what other replicas give back meanwhile is found within that,
/// not only when the next is due.
pub fn dry_for(next_due: Duration, busy: bool) -> Duration {
    match busy {
        true => next_due.min(CLAIM_AT_LEAST),
        false => next_due,
    }
}

/// Deliveries of a subscription kept waiting here, at most, in shares.
pub const WAITING_SHARES: usize = 2;

/// Attempts in flight, and claimed deliveries waiting for a slot, by subscription.
///
/// A subscription sends at most `per_subscription` attempts at once. Of a claim, what is over
/// its share waits here (up to two more shares) instead of going back to the database: when
/// one of its attempts ends, the next waiting delivery takes that slot at once, with no claim.
/// A subscription with waiting deliveries always has its share in flight (they go the moment it
/// has less). Once fewer than a share wait, it is *hungry*: the next claim is made while its
/// share is still busy, so that its slots never wait for a claim's round trip (a queue that ran
/// dry first kept a busy subscription at a third of its share while a tick's deliveries
/// drained). Claims pass over a subscription with its share in flight and a share waiting.
/// What waits starts within two attempts' timeouts; one that waited past what its lease covers
/// goes back instead (the deliverer checks).
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

/// What to take on of deliveries offered in order (then given to [`Shares::admit`] in that
/// order): one its subscription would send goes only while a slot is free for it, and one it
/// would keep waiting only behind its share in flight, up to its room; the rest stay where
/// they are. Once it refuses one of a subscription's, it refuses the rest of that
/// subscription's. (An attempt that ends between the decision and `admit` can still turn a
/// wait into a send that finds no slot: the caller puts that back.)
pub struct Taker<'a, K, J> {
    shares: &'a Shares<K, J>,
    free: usize,
    /// Per subscription: taken to send, taken to wait.
    taken: HashMap<K, (usize, usize)>,
}

impl<K: Copy + Eq + Hash + Ord, J> Taker<'_, K, J> {
    /// Whether anything could be taken now: a slot is free, or a subscription with its share
    /// in flight has room to wait. When not, offering each delivery is wasted work.
    pub fn can_take(&self) -> bool {
        let shares = self.shares;
        self.free > 0
            || shares
                .in_flight
                .keys()
                .any(|k| shares.has_share_in_flight(k) && shares.room(k) > 0)
    }

    pub fn fits(&mut self, key: K) -> bool {
        let shares = self.shares;
        let (send, wait) = self.taken.entry(key).or_default();
        let in_flight = shares.in_flight.get(&key).copied().unwrap_or(0) + *send;
        if in_flight < shares.per_subscription {
            if self.free == 0 {
                return false;
            }
            self.free -= 1;
            *send += 1;
            true
        } else if *wait < shares.room(&key) {
            *wait += 1;
            true
        } else {
            false
        }
    }
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
    /// its share in flight, then kept waiting up to two more shares; the rest go back.
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
            if waiting.len() < WAITING_SHARES * share {
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

    /// The subscriptions with their share in flight and at least a share waiting: claims pass
    /// them over.
    pub fn full(&self) -> Vec<K> {
        let mut full: Vec<K> = self
            .in_flight
            .iter()
            .filter(|(k, _)| self.has_share_in_flight(k) && !self.is_hungry(k))
            .map(|(k, _)| *k)
            .collect();
        full.sort_unstable();
        full
    }

    fn waiting_of(&self, key: &K) -> usize {
        self.waiting.get(key).map_or(0, VecDeque::len)
    }

    fn has_share_in_flight(&self, key: &K) -> bool {
        self.in_flight
            .get(key)
            .is_some_and(|n| *n >= self.per_subscription)
    }

    /// Whether `key`'s subscription has its share in flight and fewer than a share waiting.
    pub fn is_hungry(&self, key: &K) -> bool {
        self.has_share_in_flight(key) && self.waiting_of(key) < self.per_subscription
    }

    /// The hungry subscriptions, and the deliveries that would fill their waiting room: what a
    /// claim made for them asks for beyond the free slots.
    pub fn refill(&self) -> (Vec<K>, usize) {
        let hungry: Vec<K> = self
            .in_flight
            .keys()
            .filter(|k| self.is_hungry(k))
            .copied()
            .collect();
        let wanted = hungry.iter().map(|k| self.room(k)).sum();
        (hungry, wanted)
    }

    /// How many more of `key`'s deliveries may wait here.
    pub fn room(&self, key: &K) -> usize {
        (WAITING_SHARES * self.per_subscription).saturating_sub(self.waiting_of(key))
    }

    /// An attempt taken for `key`'s subscription found no slot and does not start: one fewer
    /// in flight, so less than its share, and what waited behind it comes out too. Only an
    /// attempt of its own that ends starts what waits, and the lease covers waiting behind a
    /// whole share: behind fewer it could go late, behind none it would wait for nothing.
    pub fn unstart(&mut self, key: &K) -> Vec<J> {
        self.release(key);
        self.waiting.remove(key).map(Vec::from).unwrap_or_default()
    }

    /// Decides, one delivery at a time, what to take on now with `free` slots (see [`Taker`]).
    pub fn taker(&self, free: usize) -> Taker<'_, K, J> {
        Taker {
            shares: self,
            free,
            taken: HashMap::new(),
        }
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
    fn a_claim_goes_before_the_handed_deliveries_at_least_once_a_second() {
        let ms = Duration::from_millis;
        let claim = |want, took_single| Some(ClaimFirst { want, took_single });
        // (why, held, dry, free, since the last claim, took the single slot last, answer)
        type Row = (
            &'static str,
            bool,
            bool,
            usize,
            Duration,
            bool,
            Option<ClaimFirst>,
        );
        let rows: &[Row] = &[
            ("nothing held", false, false, 10, ms(5_000), false, None),
            ("known dry", true, true, 10, ms(5_000), false, None),
            ("no free slot", true, false, 0, ms(5_000), false, None),
            ("within the second", true, false, 10, ms(999), false, None),
            (
                "a slot left to them",
                true,
                false,
                10,
                ms(1_000),
                false,
                claim(9, false),
            ),
            (
                "up to a batch",
                true,
                false,
                100,
                ms(1_000),
                true,
                claim(32, true),
            ),
            (
                "two free: one each",
                true,
                false,
                2,
                ms(1_000),
                false,
                claim(1, false),
            ),
            (
                "one free, its turn",
                true,
                false,
                1,
                ms(1_000),
                false,
                claim(1, true),
            ),
            (
                "one free, theirs",
                true,
                false,
                1,
                ms(1_000),
                true,
                claim(0, false),
            ),
        ];
        for (why, held, dry, free, since, took, want) in rows {
            assert_eq!(
                claim_first(*held, *dry, *free, 32, *since, *took),
                *want,
                "{why}"
            );
        }
    }

    #[test]
    fn a_short_claim_is_not_repeated_until_the_next_is_due_or_a_second_while_attempts_run() {
        let s = Duration::from_secs;
        // (why, next due in, attempts under way, dry for)
        let rows = [
            ("idle: until the next is due", s(30), false, s(30)),
            ("busy: give-backs looked for", s(30), true, s(1)),
            (
                "busy, due sooner",
                Duration::from_millis(200),
                true,
                Duration::from_millis(200),
            ),
        ];
        for (why, next_due, busy, want) in rows {
            assert_eq!(dry_for(next_due, busy), want, "{why}");
        }
    }

    #[test]
    fn when_to_claim() {
        let ms = Duration::from_millis;
        // (why, free, busy, batch, since the last claim, hungry, plan)
        type Row = (&'static str, usize, usize, usize, Duration, bool, Plan);
        let rows: &[Row] = &[
            ("all slots taken", 0, 8, 8, ms(100), false, Plan::AwaitSlot),
            ("a whole batch free", 8, 0, 8, ms(0), false, Plan::Claim),
            (
                "a batch free, others busy",
                32,
                96,
                32,
                ms(0),
                false,
                Plan::Claim,
            ),
            (
                "idle: claim whatever is free",
                1,
                0,
                32,
                ms(0),
                false,
                Plan::Claim,
            ),
            (
                "one slot free, just claimed: pause",
                1,
                127,
                32,
                ms(4),
                false,
                Plan::Pause(ms(6)),
            ),
            // Slots held by a hanging consumer: a batch may never free up.
            (
                "a few free, paused long enough",
                6,
                2,
                8,
                ms(10),
                false,
                Plan::Claim,
            ),
            (
                "a few free, long ago",
                6,
                2,
                8,
                Duration::MAX,
                false,
                Plan::Claim,
            ),
            // Its next deliveries are fetched while its share is still busy.
            (
                "hungry, all slots taken",
                0,
                128,
                32,
                ms(10),
                true,
                Plan::Claim,
            ),
            (
                "hungry, just claimed: pause",
                0,
                128,
                32,
                ms(4),
                true,
                Plan::Pause(ms(6)),
            ),
            ("hungry, a batch free", 32, 96, 32, ms(0), true, Plan::Claim),
        ];
        for (why, free, busy, batch, since, hungry, expected) in rows {
            assert_eq!(
                plan(*free, *busy, *batch, *since, *hungry),
                *expected,
                "{why}"
            );
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
    fn a_subscription_sends_its_share_keeps_two_more_waiting_and_gives_back_the_rest() {
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
                "a hanging consumer's backlog first: its share, two shares waiting, the others sent",
                2,
                &[],
                "hhhhhhhhok",
                "sswwwwbbss",
            ),
            ("already full: it waits", 2, &[('h', 2)], "hho", "wws"),
            ("one left", 2, &[('h', 1)], "hhhhhh", "swwwwb"),
            ("a share of 0 counts as 1", 0, &[], "aaaa", "swwb"),
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
        assert_eq!(
            shares.full(),
            vec!['h'],
            "h has its share in flight and a share waiting"
        );
        // An attempt of h ends: its first waiting delivery goes in its place, in claim order.
        assert_eq!(shares.done(&'h'), Some(('h', 2)));
        assert_eq!(shares.done(&'h'), Some(('h', 3)));
        // Nothing waits now: a slot frees up.
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
    fn a_busy_subscription_is_refilled_before_what_waits_runs_out() {
        // Share 2: two in flight, up to four waiting; hungry below two waiting.
        let (mut shares, got) = claim(2, &[], "hhhhhh");
        assert_eq!(got, "sswwww");
        assert_eq!(shares.full(), vec!['h'], "passed over while a share waits");
        assert_eq!(shares.refill().1, 0);
        shares.done(&'h');
        assert!(!shares.is_hungry(&'h'), "two wait");
        shares.done(&'h');
        shares.done(&'h');
        // One waits: the next claim is made for it, its share still busy, to fill its room.
        assert!(shares.is_hungry(&'h'));
        assert!(shares.full().is_empty(), "claims take it again");
        assert_eq!(shares.refill(), (vec!['h'], 3));
        let refilled = shares.admit(vec![('h', 10), ('h', 11), ('h', 12), ('h', 13)], |j| j.0);
        assert_eq!((refilled.send.len(), refilled.back.len()), (0, 1));
        assert_eq!(shares.refill().1, 0);
        assert_eq!(shares.full(), vec!['h']);
        // A subscription below its share is never hungry: its slots take what comes.
        let (shares, _) = claim(2, &[('o', 1)], "");
        assert!(!shares.is_hungry(&'o'));
        assert_eq!(shares.refill().1, 0);
        assert!(shares.full().is_empty());
        // Several hungry subscriptions: their rooms add up.
        let (shares, _) = claim(2, &[('h', 2), ('o', 2)], "ho");
        assert_eq!(shares.refill().1, 3 + 3);
        let (shares, _) = claim(2, &[('h', 2), ('o', 2)], "hho");
        assert_eq!(shares.refill(), (vec!['o'], 3), "h has a share waiting");
    }

    #[test]
    fn what_is_taken_on_gets_a_slot_or_waits_behind_its_share() {
        // (why, share, in flight before, free slots, offered in order, taken: y/n)
        type Row = (
            &'static str,
            usize,
            &'static [(char, usize)],
            usize,
            &'static str,
            &'static str,
        );
        let rows: &[Row] = &[
            ("a slot each", 2, &[], 4, "hhoo", "yyyy"),
            ("past its share: waits", 2, &[], 2, "hhhhhh", "yyyyyy"),
            ("past its room: stays", 2, &[], 2, "hhhhhhh", "yyyyyyn"),
            ("no slot: nothing to send", 2, &[], 0, "hho", "nnn"),
            // The bug this guards against: 'o' has nothing in flight, so it may not wait.
            ("slots short", 1, &[], 2, "hoxhox", "yynyyn"),
            (
                "behind its share in flight",
                1,
                &[('h', 1)],
                0,
                "hhho",
                "yynn",
            ),
            (
                "its share half in flight",
                2,
                &[('h', 1)],
                1,
                "hhho",
                "yyyn",
            ),
            (
                "its share half in flight, no slot",
                2,
                &[('h', 1)],
                0,
                "hh",
                "nn",
            ),
        ];
        for (why, per, before, free, offered, expected) in rows {
            let (mut shares, _) = claim(*per, before, "");
            let mut taker = shares.taker(*free);
            let got: String = offered
                .chars()
                .map(|k| if taker.fits(k) { 'y' } else { 'n' })
                .collect();
            assert_eq!(&got, expected, "{why}");
            // What was taken, admitted in order, is all sent or kept: none goes back, and no
            // more are sent than there were free slots.
            let taken: Vec<(char, usize)> = offered
                .chars()
                .zip(got.chars())
                .enumerate()
                .filter(|(_, (_, y))| *y == 'y')
                .map(|(i, (k, _))| (k, i))
                .collect();
            let admitted = shares.admit(taken, |j| j.0);
            assert!(admitted.back.is_empty(), "{why}");
            assert!(admitted.send.len() <= *free, "{why}");
        }
        // Whether anything could be taken at all.
        let (shares, _) = claim(1, &[('h', 1)], "hh");
        assert!(!shares.taker(0).can_take(), "no slot, no room to wait");
        assert!(shares.taker(1).can_take(), "a slot");
        let (shares, _) = claim(1, &[('h', 1)], "h");
        assert!(shares.taker(0).can_take(), "room behind a share in flight");
        let (shares, _) = claim(2, &[('h', 1)], "");
        assert!(
            !shares.taker(0).can_take(),
            "no share in flight to wait behind"
        );
        // One already waiting counts against the room.
        let (shares, _) = claim(1, &[('h', 1)], "h");
        let mut taker = shares.taker(0);
        assert!(taker.fits('h'));
        assert!(!taker.fits('h'));
    }

    #[test]
    fn an_attempt_that_found_no_slot_takes_what_waited_behind_it_along() {
        // Share 1: one 'h' sent, two waiting behind it.
        let (mut shares, verdict) = claim(1, &[], "hhh");
        assert_eq!(verdict, "sww");
        // The one sent found no slot: nothing of 'h' is in flight, so nothing would start
        // what waits; it comes out too, in order.
        assert_eq!(shares.unstart(&'h'), vec![('h', 1), ('h', 2)]);
        assert!(shares.take_waiting().is_empty());
        assert!(shares.taker(1).fits('h'), "its share is free again");
        // With less than its share left in flight, what waits comes out too: the lease covers
        // waiting behind a whole share.
        let (mut shares, verdict) = claim(2, &[], "hhhh");
        assert_eq!(verdict, "ssww");
        assert_eq!(shares.unstart(&'h'), vec![('h', 2), ('h', 3)]);
        assert_eq!(shares.done(&'h'), None);
    }
}

//! Deliveries the poller queues already leased to this replica, handed to its deliverer in
//! memory. While a tick's settles drain, a claim per 32 deliveries was a round trip and an
//! `UPDATE` of each row before the first attempt could start; a handed delivery starts as soon
//! as its subscription has room, with no claim. What the deliverer has not started before its
//! lease covers an attempt goes back to the database, as a claimed delivery would.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::clock::Timestamp;
use crate::domain::{DeliveryId, ReplicaId, WebhookId};
use crate::store::{DeliveryJob, DeliveryLease};

/// With this many deliveries held here, the poller queues the next ones for any replica's claim
/// instead (a consumer that hangs must not grow this replica's memory with every task that
/// settles). A soft limit: it is looked at before each settle transaction, whose deliveries
/// may take the count past it by one transaction's worth.
pub const HANDED_MOST: usize = 4096;

/// While nothing can be taken (every slot busy, every busy share's waiting room full), what
/// went late is looked for at most this often (the sending loop comes by at least as often
/// while anything is held): a freed slot must not cost a walk over what is held.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A delivery leased to this replica, and the latest moment its attempt may start: one timeout
/// (and a margin for the record) before its lease ends.
#[derive(Debug)]
pub(super) struct Claimed {
    pub job: DeliveryJob,
    pub start_by: Instant,
}

/// What is held, by subscription: a subscription that cannot take more (its consumer hangs)
/// costs a look at its oldest, not at each of its deliveries, every time a slot frees up.
#[derive(Debug, Default)]
struct Held {
    /// Each subscription's deliveries in the order handed (their start-by in that order too),
    /// each with its place in the order of all: those put back before any handed.
    queues: HashMap<WebhookId, VecDeque<(i64, Claimed)>>,
    /// The place of the next handed, and of the last put back.
    handed: i64,
    put_back: i64,
    len: usize,
    /// While nothing can be taken, what went late is looked for only this often.
    next_sweep: Option<Instant>,
}

pub struct Handoff {
    owner: ReplicaId,
    lease: Duration,
    /// How long before its lease ends an attempt must start.
    margin: Duration,
    held: Mutex<Held>,
    /// The deliverer's sending loop: something new in memory (handed deliveries, a free slot).
    pub(super) nudge: Notify,
    /// The deliverer's sending loop: the database holds deliveries to claim.
    wake: Arc<Notify>,
}

impl Handoff {
    pub(super) fn new(
        owner: ReplicaId,
        lease: Duration,
        margin: Duration,
        wake: Arc<Notify>,
    ) -> Self {
        Handoff {
            owner,
            lease,
            margin,
            held: Mutex::new(Held::default()),
            nudge: Notify::new(),
            wake,
        }
    }

    /// The lease to queue deliveries under at `now`, or none while enough wait here already.
    pub fn lease(&self, now: Timestamp) -> Option<DeliveryLease> {
        (self.len() < HANDED_MOST).then(|| DeliveryLease {
            owner: self.owner,
            until: now + self.lease,
        })
    }

    /// Hands over deliveries queued under a lease taken no earlier than `leased_at`.
    pub fn hand(&self, jobs: Vec<DeliveryJob>, leased_at: Instant) {
        if jobs.is_empty() {
            return;
        }
        let start_by = leased_at + self.lease.saturating_sub(self.margin);
        if let Ok(mut held) = self.held.lock() {
            held.len += jobs.len();
            for job in jobs {
                let place = held.handed;
                held.handed += 1;
                held.queues
                    .entry(job.webhook_id)
                    .or_default()
                    .push_back((place, Claimed { job, start_by }));
            }
        }
        self.nudge.notify_one();
    }

    /// Deliveries were queued without a lease: the deliverer claims them.
    pub fn queued_for_claim(&self) {
        self.wake.notify_one();
    }

    pub fn len(&self) -> usize {
        self.held.lock().map_or(0, |h| h.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the deliveries `fits` accepts, each subscription's in the order handed and the
    /// subscriptions by their oldest; and the ids of those too late to start (to give back).
    /// `fits` is asked about a subscription's deliveries until it refuses one: it must refuse
    /// the ones after that too. What is not taken stays. With `can_take` false (nothing would
    /// fit), only a look for what went late, at most once a second.
    pub(super) fn take(
        &self,
        now: Instant,
        can_take: bool,
        mut fits: impl FnMut(&DeliveryJob) -> bool,
    ) -> (Vec<Claimed>, Vec<DeliveryId>) {
        let Ok(mut guard) = self.held.lock() else {
            return (Vec::new(), Vec::new());
        };
        let held = &mut *guard;
        if !can_take {
            if held.next_sweep.is_some_and(|at| now < at) {
                return (Vec::new(), Vec::new());
            }
            held.next_sweep = Some(now + SWEEP_EVERY);
        }
        let mut order: Vec<(i64, WebhookId)> = held
            .queues
            .iter()
            .filter_map(|(k, q)| q.front().map(|(place, _)| (*place, *k)))
            .collect();
        order.sort_unstable();
        let (mut taken, mut late) = (Vec::new(), Vec::new());
        for (_, key) in order {
            let Some(queue) = held.queues.get_mut(&key) else {
                continue;
            };
            while let Some((_, front)) = queue.front() {
                if now > front.start_by {
                    // Handed in order, so late in order (what went back in front may be
                    // later than what is behind it; nothing late is taken, below).
                    late.extend(queue.pop_front().map(|(_, c)| c.job.delivery_id));
                } else if can_take && fits(&front.job) {
                    taken.extend(queue.pop_front().map(|(_, c)| c));
                } else {
                    break;
                }
            }
            if queue.is_empty() {
                held.queues.remove(&key);
            }
        }
        held.len = held.len.saturating_sub(taken.len() + late.len());
        (taken, late)
    }

    /// Puts deliveries taken and not started back in front of their subscriptions' queues,
    /// before anything handed, in their order.
    pub(super) fn put_back(&self, claimed: Vec<Claimed>) {
        if let Ok(mut held) = self.held.lock() {
            held.len += claimed.len();
            for c in claimed.into_iter().rev() {
                held.put_back -= 1;
                let place = held.put_back;
                held.queues
                    .entry(c.job.webhook_id)
                    .or_default()
                    .push_front((place, c));
            }
        }
    }

    /// Everything held, taken out.
    pub(super) fn take_all(&self) -> Vec<Claimed> {
        self.held
            .lock()
            .map(|mut h| {
                h.len = 0;
                let mut all: Vec<(i64, Claimed)> = h.queues.drain().flat_map(|(_, q)| q).collect();
                all.sort_unstable_by_key(|(place, _)| *place);
                all.into_iter().map(|(_, c)| c).collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventId, EventType, WebhookId};

    fn job(webhook: WebhookId) -> DeliveryJob {
        DeliveryJob {
            delivery_id: DeliveryId::new(),
            webhook_id: webhook,
            event_id: EventId::new(),
            event_type: EventType::TaskSucceeded,
            payload: "{}".into(),
            url: "https://example.com/hook".into(),
            secrets: Vec::new(),
            attempts: 0,
            disabled: false,
            created_at: Timestamp::from_millis(0),
        }
    }

    fn handoff() -> Handoff {
        Handoff::new(
            ReplicaId::new(),
            Duration::from_secs(40),
            Duration::from_secs(20),
            Arc::new(Notify::new()),
        )
    }

    #[test]
    fn deliveries_are_leased_to_this_replica_until_enough_wait_here() {
        let h = handoff();
        let now = Timestamp::from_millis(1_000);
        let lease = h.lease(now).expect("room");
        assert_eq!(lease.owner, h.owner);
        assert_eq!(lease.until, Timestamp::from_millis(41_000));
        let w = WebhookId::new();
        h.hand(
            (0..HANDED_MOST - 1).map(|_| job(w)).collect(),
            Instant::now(),
        );
        assert!(h.lease(now).is_some(), "one short of the most");
        h.hand(vec![job(w)], Instant::now());
        assert_eq!(h.len(), HANDED_MOST);
        assert!(
            h.lease(now).is_none(),
            "full: queued for any replica's claim"
        );
        h.take_all();
        assert!(h.lease(now).is_some());
    }

    #[test]
    fn what_fits_is_taken_in_order_what_is_late_goes_back_and_the_rest_stays() {
        let h = handoff();
        let (a, b) = (WebhookId::new(), WebhookId::new());
        let t0 = Instant::now();
        let jobs: Vec<DeliveryJob> = [a, b, a, b, a].into_iter().map(job).collect();
        let ids: Vec<DeliveryId> = jobs.iter().map(|j| j.delivery_id).collect();
        h.hand(jobs, t0);
        // Room for one of a's and all of b's.
        let mut room_a = 1;
        let (taken, late) = h.take(t0, true, |j| {
            j.webhook_id == b || {
                room_a -= 1;
                room_a >= 0
            }
        });
        let taken_ids: Vec<DeliveryId> = taken.iter().map(|c| c.job.delivery_id).collect();
        assert_eq!(taken_ids, vec![ids[0], ids[1], ids[3]]);
        assert!(late.is_empty());
        assert_eq!(h.len(), 2, "a's other two stay");
        // Put back in front, in order: taken again first, each subscription's in order, the
        // subscriptions by their oldest.
        h.put_back(taken);
        assert_eq!(h.len(), 5);
        let order: Vec<DeliveryId> = h
            .take(t0, true, |_| true)
            .0
            .iter()
            .map(|c| c.job.delivery_id)
            .collect();
        assert_eq!(order, vec![ids[0], ids[2], ids[4], ids[1], ids[3]]);
        // A subscription that refuses its oldest is not asked about the rest.
        h.hand((0..3).map(|_| job(a)).collect(), t0);
        let mut asked = 0;
        let (taken, _) = h.take(t0, true, |_| {
            asked += 1;
            false
        });
        assert!(taken.is_empty());
        assert_eq!(asked, 1);
        assert_eq!(h.take_all().len(), 3);
        // Started by 20 s after the lease was taken (40 s lease, 20 s margin): after it, back.
        h.hand(vec![job(a)], t0);
        let (taken, late) = h.take(t0 + Duration::from_secs(20), true, |_| false);
        assert!(taken.is_empty() && late.is_empty(), "just in time: stays");
        let (taken, late) = h.take(t0 + Duration::from_millis(20_001), true, |_| true);
        assert!(taken.is_empty());
        assert_eq!(late.len(), 1);
        assert!(h.is_empty());
    }

    #[test]
    fn while_nothing_can_be_taken_what_went_late_is_looked_for_once_a_second() {
        let h = handoff();
        let a = WebhookId::new();
        let t0 = Instant::now();
        h.hand(vec![job(a), job(a)], t0);
        let refuse = |_: &DeliveryJob| -> bool { panic!("asked while nothing can be taken") };
        // Start-by is 20 s after the lease was taken (40 s lease, 20 s margin).
        let (taken, late) = h.take(t0 + Duration::from_millis(19_500), false, refuse);
        assert!(taken.is_empty() && late.is_empty(), "looked: none late yet");
        let (_, late) = h.take(t0 + Duration::from_millis(20_100), false, refuse);
        assert!(
            late.is_empty(),
            "late, but looked at less than a second ago"
        );
        let (_, late) = h.take(t0 + Duration::from_millis(20_600), false, refuse);
        assert_eq!(late.len(), 2, "a second on: found late");
        assert!(h.is_empty());
    }
}

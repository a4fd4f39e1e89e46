//! Sends due deliveries: leased (one replica per delivery), concurrent, fair (a subscription has
//! at most its share of the attempts in flight, so a consumer that hangs delays nobody else; see
//! [`fair`]), retried as [`retry::next`] decides, every attempt logged.
//!
//! In the service, [`Deliverer::run`] keeps sending as slots free up and sleeps until the next
//! delivery is due or until it is woken. The deliveries of the tasks this replica's poller
//! settles come leased to it, in memory ([`Handoff`]), and go first; the database is claimed
//! from for the rest (retries, other replicas' lapsed leases, what went back). A test calls
//! [`Deliverer::deliver_due`] instead: everything due now, sent and recorded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use reqwest::Url;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use super::current::{Current, Look, Target};
use super::fair::{self, CLAIM_AT_LEAST, ClaimFirst, Plan, Shares};
use super::handoff::{Claimed, Handoff};
use super::retry::{self, Next, Outcome};
use super::signature;
use super::target;
use crate::clock::Clock;
use crate::domain::{DeliveryId, ReplicaId, WebhookId};
use crate::store::{AttemptRecord, AttemptResult, DeliveryJob, RecordedAttempt, Store, StoreError};

#[derive(Debug, Clone)]
pub struct DelivererConfig {
    /// Delays before each retry; the first attempt goes at once.
    pub schedule: Vec<Duration>,
    /// For one attempt, connection to last byte.
    pub timeout: Duration,
    pub allow_private: bool,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries of one subscription in flight at once (on this replica).
    pub per_subscription: usize,
    /// The egress proxy every delivery goes through, if any.
    pub proxy: Option<Url>,
}

/// How much of a consumer's answer is read.
const BODY_LIMIT: usize = 4 * 1024;
/// Characters of a failed answer's body kept in the log.
const LOGGED_BODY: usize = 200;
/// Characters of a connection error kept in the log.
const LOGGED_ERROR: usize = 500;
/// Even with nothing due, look again this often (a crashed replica's leases lapse).
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// Deliveries claimed together once the deliverer is busy.
const CLAIM_BATCH: usize = 32;
/// Attempts recorded in one transaction, at most.
const RECORD_BATCH: usize = 256;

/// How long a claimed (or handed) delivery stays this replica's: long enough for what waits
/// here behind a busy share ([`fair::WAITING_SHARES`] attempts' timeouts) to start within it,
/// with one more timeout for its attempt and one for its record.
fn lease(timeout: Duration) -> Duration {
    let timeouts = u32::try_from(fair::WAITING_SHARES + 2).unwrap_or(u32::MAX);
    timeout
        .saturating_mul(timeouts)
        .max(Duration::from_secs(30))
}

/// How long before its lease ends a delivery's attempt must start: its timeout, and one more
/// for its record.
fn start_margin(timeout: Duration) -> Duration {
    timeout * 2
}

/// A read of a subscription under way: given up if dropped before it is over.
struct Reading<'a> {
    current: &'a Current,
    id: WebhookId,
    over: bool,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if !self.over {
            self.current.unread(self.id, Instant::now());
        }
    }
}

/// What became of one claimed delivery.
#[derive(Debug)]
enum Done {
    Attempted(RecordedAttempt),
    /// Not sent: its subscription is disabled.
    Abandoned(DeliveryId),
    /// Not sent: its subscription is deleted, and the delivery with it.
    Dropped,
}

impl Done {
    /// Whether, once recorded, it may be due again (a retry), so the sending loop should look.
    fn may_be_due_again(&self) -> bool {
        matches!(
            self,
            Done::Attempted(RecordedAttempt {
                result: AttemptResult::RetryAt(_),
                ..
            })
        )
    }
}

pub struct Deliverer {
    store: Store,
    owner: ReplicaId,
    clock: Clock,
    config: DelivererConfig,
    client: reqwest::Client,
    /// Notified when the database may hold deliveries to claim (a subscription or a retry made,
    /// an attempt to retry recorded, deliveries queued for any replica).
    wake: Arc<Notify>,
    /// Deliveries the poller queued leased to this replica, to send without a claim.
    handoff: Arc<Handoff>,
    /// Notified when a busy subscription runs short of deliveries waiting (see
    /// [`Shares::refill`]).
    hungry: Notify,
    slots: Arc<Semaphore>,
    /// Attempts in flight, and claimed deliveries waiting for a slot, per subscription.
    shares: Mutex<Shares<WebhookId, Claimed>>,
    /// Set once the sending loop has stopped: attempts that end start no waiting delivery.
    stopping: AtomicBool,
    /// Set when deliveries went back to the database: a claim may find them.
    gave_back: AtomicBool,
    /// Each subscription as lately read, for attempts that start long after their delivery
    /// was queued or claimed.
    current: Current,
    /// Finished attempts, on their way to the store: a slot is free again once its attempt is
    /// handed over, and the recorder writes many attempts per transaction. The delivery's lease
    /// keeps it from being sent again meanwhile.
    records: mpsc::Sender<Done>,
    /// Taken by `run`.
    recorder: Mutex<Option<mpsc::Receiver<Done>>>,
}

impl Deliverer {
    pub fn new(
        store: Store,
        owner: ReplicaId,
        clock: Clock,
        config: DelivererConfig,
        wake: Arc<Notify>,
    ) -> Result<Self, String> {
        let client = target::client(config.allow_private, config.timeout, config.proxy.as_ref())?;
        if let Some(proxy) = &config.proxy {
            tracing::info!(
                %proxy,
                "webhooks go through this egress proxy, which judges their targets"
            );
        }
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let (records, recorder) = mpsc::channel(RECORD_BATCH * 4);
        let shares = Mutex::new(Shares::new(config.per_subscription));
        let handoff = Arc::new(Handoff::new(
            owner,
            lease(config.timeout),
            start_margin(config.timeout),
            wake.clone(),
        ));
        Ok(Deliverer {
            shares,
            handoff,
            store,
            owner,
            clock,
            config,
            client,
            wake,
            hungry: Notify::new(),
            slots,
            stopping: AtomicBool::new(false),
            gave_back: AtomicBool::new(false),
            current: Current::default(),
            records,
            recorder: Mutex::new(Some(recorder)),
        })
    }

    fn lease(&self) -> Duration {
        lease(self.config.timeout)
    }

    /// Where the poller hands over the deliveries it queues leased to this replica.
    pub fn handoff(&self) -> Arc<Handoff> {
        self.handoff.clone()
    }

    /// Sends every delivery due now — at most `concurrency` at once — and records every
    /// attempt before it returns. Returns how many attempts were made (a delivery of a disabled
    /// or deleted subscription is settled unsent and not counted).
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let width = self.config.concurrency.max(1);
        let mut total = 0;
        loop {
            // Those handed over first (those too late for their lease go back), then claimed up
            // to the width.
            let (handed, late) = self.handoff.take(Instant::now(), true, |_| true);
            self.give_back(late).await?;
            let mut jobs: Vec<DeliveryJob> = handed.into_iter().map(|c| c.job).collect();
            if let Some(room) = width.checked_sub(jobs.len()).filter(|r| *r > 0) {
                let claimed = self
                    .store
                    .claim_deliveries(
                        self.owner,
                        self.clock.now(),
                        self.lease(),
                        u32::try_from(room).unwrap_or(u32::MAX),
                    )
                    .await?;
                jobs.extend(claimed);
            }
            if jobs.is_empty() {
                return Ok(total);
            }
            // Each round's attempts end before the next: only its own count, and nothing
            // waits into the next round.
            let mut round: Shares<WebhookId, DeliveryJob> =
                Shares::new(self.config.per_subscription);
            let admitted = round.admit(jobs, |j| j.webhook_id);
            let held = admitted.back.into_iter().chain(round.take_waiting());
            self.give_back(held.map(|j| j.delivery_id)).await?;
            let done: Vec<Done> = stream::iter(admitted.send)
                .map(|job| self.attempt(job))
                .buffer_unordered(width)
                .collect()
                .await;
            // Those of disabled or deleted subscriptions were not sent: not attempts.
            total += done
                .iter()
                .filter(|d| matches!(d, Done::Attempted(_)))
                .count();
            self.write(done).await?;
        }
    }

    /// Sends deliveries until stopped; then lets the attempts in flight end and records them.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let taken = self.recorder.lock().ok().and_then(|mut r| r.take());
        let Some(records) = taken else {
            return;
        };
        let (finish, finished) = oneshot::channel();
        let recorder = tokio::spawn(self.clone().record(records, finished));
        self.clone().send_due(stop).await;
        self.stopping.store(true, Ordering::Relaxed);
        let all = u32::try_from(self.config.concurrency.max(1)).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            self.config.timeout + Duration::from_secs(1),
            self.slots.acquire_many(all),
        )
        .await;
        // What waited for a slot goes back at once, for the other replicas (the hand-over at
        // stop also releases every lease this replica holds).
        let mut waiting = match self.shares.lock() {
            Ok(mut shares) => shares.take_waiting(),
            Err(_) => Vec::new(),
        };
        waiting.extend(self.handoff.take_all());
        if let Err(e) = self
            .give_back(waiting.into_iter().map(|c| c.job.delivery_id))
            .await
        {
            tracing::warn!(error = %e, "could not give back waiting webhook deliveries");
        }
        let _ = finish.send(());
        let _ = recorder.await;
    }

    /// Writes finished attempts in batches until told to finish, then writes what is left.
    async fn record(
        self: Arc<Self>,
        mut records: mpsc::Receiver<Done>,
        mut finish: oneshot::Receiver<()>,
    ) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        let mut closing = false;
        loop {
            tokio::select! {
                biased;
                n = records.recv_many(&mut batch, RECORD_BATCH) => if n == 0 { break },
                _ = &mut finish, if !closing => {
                    records.close();
                    closing = true;
                    continue;
                }
            }
            let n = batch.len();
            let retries = batch.iter().any(Done::may_be_due_again);
            if let Err(e) = self.write(std::mem::take(&mut batch)).await {
                // The leases lapse and the deliveries are tried again: at least once, never lost.
                tracing::warn!(error = %e, attempts = n, "could not record webhook attempts");
            }
            if retries {
                // Their leases are over: a retry may be due before the sending loop would look.
                self.wake.notify_one();
            }
        }
    }

    /// Records what became of claimed deliveries.
    async fn write(&self, done: Vec<Done>) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut attempts = Vec::with_capacity(done.len());
        for d in done {
            match d {
                Done::Attempted(a) => attempts.push(a),
                Done::Abandoned(id) => {
                    self.store
                        .abandon_delivery(self.owner, id, "the subscription is disabled", now)
                        .await?
                }
                Done::Dropped => {}
            }
        }
        let recorded = self
            .store
            .record_attempts(self.owner, &attempts, now)
            .await?;
        for (delivery_id, error) in &recorded.refused {
            let webhook_id = attempts
                .iter()
                .find(|a| a.delivery_id == *delivery_id)
                .map(|a| a.webhook_id);
            // Its lease lapses and it is sent again; the others are recorded.
            tracing::error!(
                %delivery_id, webhook_id = ?webhook_id, error = %error,
                "the database refused a webhook attempt's record"
            );
        }
        Ok(())
    }

    async fn send_due(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let width = self.config.concurrency.max(1);
        // Claim in batches: one claim per freed slot would cost a round trip per delivery.
        let batch = CLAIM_BATCH.min(width);
        let mut last_claim: Option<Instant> = None;
        // Hungry subscriptions a claim open to them came back short for: nothing more of
        // theirs is due until something new may be (a wake, or the next due time).
        let mut drained: Vec<WebhookId> = Vec::new();
        // A claim came back short: nothing more is due in the database until then, or until
        // woken. Handed deliveries and freed slots do not make the loop claim meanwhile (an
        // empty claim is a round trip and a walk over the leased deliveries).
        let mut dry_until: Option<Instant> = None;
        // With one slot free, the claim that goes at least once a second takes it every other
        // time.
        let mut claimed_single = false;
        loop {
            if *stop.borrow() {
                break;
            }
            // Handed deliveries go before anything claimed, but do not keep what is due in the
            // database (retries, other replicas' give-backs) waiting.
            if let Some(ClaimFirst { want, took_single }) = fair::claim_first(
                !self.handoff.is_empty(),
                dry_until.is_some_and(|t| Instant::now() < t),
                self.slots.available_permits(),
                batch,
                last_claim.map_or(Duration::MAX, |t| t.elapsed()),
                claimed_single,
            ) {
                last_claim = Some(Instant::now());
                claimed_single = took_single;
                if want > 0 {
                    match self.clone().claim_and_send(want).await {
                        Ok(true) => {}
                        Ok(false) => dry_until = Some(Instant::now() + CLAIM_AT_LEAST),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not claim webhook deliveries")
                        }
                    }
                }
            }
            self.start_handed().await;
            if self.gave_back.swap(false, Ordering::Relaxed) {
                dry_until = None;
            }
            let now = Instant::now();
            let wait = match dry_until.filter(|t| now < *t) {
                Some(until) => until - now,
                None => {
                    let free = self.slots.available_permits();
                    let busy = width - free.min(width);
                    let (hungry, refill) = self.refill(&drained);
                    let since = last_claim.map_or(Duration::MAX, |t| t.elapsed());
                    match fair::plan(free, busy, batch, since, refill > 0) {
                        // Handed deliveries held: what went late is looked for (and a claim
                        // made) within a second.
                        Plan::AwaitSlot if !self.handoff.is_empty() => CLAIM_AT_LEAST,
                        Plan::AwaitSlot => IDLE_CHECK,
                        Plan::Pause(pause) => pause,
                        Plan::Claim => {
                            last_claim = Some(Instant::now());
                            match self.clone().claim_and_send(free + refill).await {
                                // The queue may hold more: look again as slots free up.
                                Ok(true) => continue,
                                Ok(false) => {
                                    // A claim never passes over a hungry subscription.
                                    drained.extend(hungry);
                                    let wait = fair::dry_for(
                                        self.next_due().await,
                                        self.slots.available_permits() < width,
                                    );
                                    dry_until = Some(Instant::now() + wait);
                                    wait
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "could not claim webhook deliveries");
                                    Duration::from_secs(1)
                                }
                            }
                        }
                    }
                }
            };
            // Woken by a hungry subscription only if it has not been found drained.
            let open_hunger = {
                let drained = drained.clone();
                let me = &self;
                async move {
                    loop {
                        me.hungry.notified().await;
                        if me.refill(&drained).1 > 0 {
                            break;
                        }
                    }
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {
                    drained.clear();
                    dry_until = None;
                }
                _ = self.handoff.nudge.notified() => {
                    // Deliveries handed meanwhile: the claim that goes with them is a second
                    // away at most, not a whole idle wait.
                    if !self.handoff.is_empty() {
                        let soon = Instant::now() + CLAIM_AT_LEAST;
                        dry_until = dry_until.map(|t| t.min(soon));
                    }
                }
                // Its handed deliveries are taken first; the database may hold more.
                _ = open_hunger => dry_until = None,
                _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {
                    drained.clear();
                    dry_until = None;
                }
                _ = stop.changed() => {}
            }
        }
    }

    /// Starts the handed deliveries that have a free slot, or may wait behind their
    /// subscription's share in flight; those too late for their lease go back.
    async fn start_handed(self: &Arc<Self>) {
        if self.handoff.is_empty() {
            return;
        }
        // Only this loop takes slots: what is free now stays free until `start`.
        let free = self.slots.available_permits();
        let (taken, late) = match self.shares.lock() {
            Ok(shares) => {
                let mut taker = shares.taker(free);
                let can_take = taker.can_take();
                self.handoff
                    .take(Instant::now(), can_take, |job| taker.fits(job.webhook_id))
            }
            Err(_) => return,
        };
        if let Err(e) = self.give_back(late).await {
            tracing::warn!(error = %e, "could not give back webhook deliveries");
        }
        if taken.is_empty() {
            return;
        }
        let admitted = match self.shares.lock() {
            Ok(mut shares) => shares.admit(taken, |c| c.job.webhook_id),
            Err(_) => return,
        };
        // What was taken has a slot or waits behind its share, unless an attempt ended since
        // (a wait became a send, which may find no slot): that goes back in front.
        let mut not_started = self.start(admitted.send);
        not_started.extend(admitted.back);
        self.handoff.put_back(not_started);
    }

    /// The hungry subscriptions but those in `drained`, and what would fill their waiting room.
    fn refill(&self, drained: &[WebhookId]) -> (Vec<WebhookId>, usize) {
        let Ok(shares) = self.shares.lock() else {
            return (Vec::new(), 0);
        };
        let (mut hungry, _) = shares.refill();
        hungry.retain(|k| !drained.contains(k));
        let wanted = hungry.iter().map(|k| shares.room(k)).sum();
        (hungry, wanted)
    }

    /// How long until a delivery may be claimed, passing over the subscriptions with their
    /// share in flight and a share waiting (an attempt that ends wakes the loop).
    async fn next_due(&self) -> Duration {
        let full = self.full();
        match self.store.next_delivery_due(&full).await {
            Ok(Some(due)) => due.since(self.clock.now()).min(IDLE_CHECK),
            Ok(None) => IDLE_CHECK,
            Err(_) => Duration::from_secs(1),
        }
    }

    fn full(&self) -> Vec<WebhookId> {
        self.shares.lock().map(|s| s.full()).unwrap_or_default()
    }

    /// Claims up to `want` deliveries (the free slots, and what refills hungry subscriptions)
    /// and starts those a free slot takes now, passing over subscriptions with their share in
    /// flight and a share waiting. True if the last claim brought all it asked for: the
    /// database may hold more.
    async fn claim_and_send(self: Arc<Self>, want: usize) -> Result<bool, StoreError> {
        let mut limit = want;
        loop {
            let skip = self.full();
            let jobs = self
                .store
                .claim_deliveries_except(
                    self.owner,
                    self.clock.now(),
                    self.lease(),
                    u32::try_from(limit).unwrap_or(u32::MAX),
                    &skip,
                )
                .await?;
            let claimed = jobs.len();
            let start_by = Instant::now()
                + self
                    .lease()
                    .saturating_sub(start_margin(self.config.timeout));
            let jobs = jobs.into_iter().map(|job| Claimed { job, start_by });
            let admitted = match self.shares.lock() {
                Ok(mut shares) => shares.admit(jobs.collect(), |c| c.job.webhook_id),
                // Not reached (nothing panics under the lock); the leases lapse.
                Err(_) => return Ok(false),
            };
            let admitted_back = admitted.back.len();
            let mut back: Vec<DeliveryId> =
                admitted.back.iter().map(|c| c.job.delivery_id).collect();
            // A claim may bring more than the slots free now (it refills hungry subscriptions
            // too), and what waited for a slot could start after its lease: it goes back.
            back.extend(
                self.start(admitted.send)
                    .into_iter()
                    .map(|c| c.job.delivery_id),
            );
            let went_back = back.len();
            let slots_full = went_back > admitted_back;
            self.unclaim(back).await?;
            // Sent or waiting here.
            limit = limit.saturating_sub(claimed - went_back);
            // Some went back: their subscriptions are full now, and the next claim passes them
            // over for the others' deliveries (unless it was the slots that were full).
            if went_back == 0 || limit == 0 || slots_full {
                return Ok(claimed > 0 && limit == 0);
            }
        }
    }

    /// Starts each delivery on a free slot, counted in its subscription's share until it ends;
    /// returns those no slot was free for, their share given back, with what waited behind
    /// them (their subscription is below its share now). Never waits for a slot.
    fn start(self: &Arc<Self>, send: Vec<Claimed>) -> Vec<Claimed> {
        let mut no_slot = Vec::new();
        for claimed in send {
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                let stranded = match self.shares.lock() {
                    Ok(mut shares) => shares.unstart(&claimed.job.webhook_id),
                    Err(_) => Vec::new(),
                };
                no_slot.push(claimed);
                no_slot.extend(stranded);
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.send_in_turn(claimed.job).await;
                drop(permit);
                // A slot is free: a handed delivery, or a claim for another subscription, may go.
                me.handoff.nudge.notify_one();
            });
        }
        no_slot
    }

    /// Sends `job`, then, in the same slot, each delivery of its subscription that waited for
    /// one, until none waits (or the deliverer stops). One that waited too long for its lease
    /// to cover an attempt goes back instead.
    async fn send_in_turn(&self, mut job: DeliveryJob) {
        loop {
            let webhook = job.webhook_id;
            let done = self.attempt(job).await;
            if self.records.send(done).await.is_err() {
                // Only once stopped; the lease lapses and the delivery is tried again.
                tracing::warn!("a webhook attempt was made while stopping and is not recorded");
            }
            loop {
                let stopping = self.stopping.load(Ordering::Relaxed);
                let (next, hungry) = match self.shares.lock() {
                    // What waits stays, to be given back once every slot is free.
                    Ok(mut shares) if stopping => {
                        shares.release(&webhook);
                        (None, false)
                    }
                    Ok(mut shares) => {
                        let next = shares.done(&webhook);
                        (next, shares.is_hungry(&webhook))
                    }
                    Err(_) => (None, false),
                };
                if hungry {
                    self.hungry.notify_one();
                }
                match next {
                    None => return,
                    Some(next) if Instant::now() <= next.start_by => {
                        job = next.job;
                        break;
                    }
                    // Still counted in flight: the slot goes to the one after it.
                    Some(late) => {
                        if let Err(e) = self.give_back([late.job.delivery_id]).await {
                            tracing::warn!(error = %e, "could not give back a webhook delivery");
                        }
                    }
                }
            }
        }
    }

    /// Deliveries held back go back as they were, for the next claim (this replica's or
    /// another's): attempts and schedule untouched. The sending loop looks for them.
    async fn give_back(
        &self,
        held: impl IntoIterator<Item = DeliveryId>,
    ) -> Result<(), StoreError> {
        if self.unclaim(held).await? {
            self.gave_back.store(true, Ordering::Relaxed);
            // The sending loop may be waiting with nothing to claim.
            self.handoff.nudge.notify_one();
        }
        Ok(())
    }

    /// As [`Self::give_back`], for what the sending loop's own claim would pass over anyway
    /// (subscriptions full, or no slot free): no need to look again. True if any went back.
    async fn unclaim(
        &self,
        held: impl IntoIterator<Item = DeliveryId>,
    ) -> Result<bool, StoreError> {
        let held: Vec<DeliveryId> = held.into_iter().collect();
        if held.is_empty() {
            return Ok(false);
        }
        self.store.unclaim_deliveries(self.owner, &held).await?;
        Ok(true)
    }

    /// `job` with its subscription's URL, secrets and state as lately read (see
    /// [`super::current`]; its own if that read fails); `None`: deleted.
    async fn as_now(&self, mut job: DeliveryJob) -> Option<DeliveryJob> {
        let id = job.webhook_id;
        let target = match self.current.look(id, Instant::now()) {
            Look::Use(target) => target,
            Look::Own => return Some(job),
            Look::Read => {
                let at = Instant::now();
                // Given up if this future is dropped: the next attempt reads again.
                let mut reading = Reading {
                    current: &self.current,
                    id,
                    over: false,
                };
                // Half a timeout at most: the attempt still starts well within its lease.
                let read =
                    tokio::time::timeout(self.config.timeout / 2, self.store.webhook(id)).await;
                reading.over = true;
                match read {
                    Ok(Ok(hook)) => {
                        let target = hook.map(|h| Target {
                            secrets: h.signing_secrets(self.clock.now()),
                            disabled: h.disabled_at.is_some(),
                            url: h.url,
                        });
                        self.current.read(id, target.clone(), at);
                        target
                    }
                    failed => {
                        self.current.unread(id, Instant::now());
                        let error = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".into(),
                        };
                        tracing::warn!(webhook_id = %id, %error, "could not read a webhook subscription; its delivery goes as queued");
                        return Some(job);
                    }
                }
            }
        }?;
        job.url = target.url;
        job.secrets = target.secrets;
        // Nothing enables a subscription again: a delivery read as disabled stays so.
        job.disabled |= target.disabled;
        Some(job)
    }

    /// Sends one delivery and says what became of it; nothing is written here.
    async fn attempt(&self, job: DeliveryJob) -> Done {
        let Some(job) = self.as_now(job).await else {
            return Done::Dropped;
        };
        if job.disabled {
            return Done::Abandoned(job.delivery_id);
        }
        let number = job.attempts + 1;
        let started_at = self.clock.now();
        let stopwatch = Instant::now();
        let answer = self.send(&job).await;
        let duration_ms = u64::try_from(stopwatch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, error, outcome) = match &answer {
            Ok((status, body, retry_after)) => (
                Some(*status),
                (!(200..300).contains(status)).then(|| answer_error(*status, body)),
                Outcome::Answered {
                    status: *status,
                    retry_after: *retry_after,
                },
            ),
            Err(e) => (None, Some(clean(e, LOGGED_ERROR)), Outcome::NoAnswer),
        };
        let result = match retry::next(outcome, number, &self.config.schedule, fastrand::f64()) {
            Next::Delivered => AttemptResult::Delivered,
            Next::RetryIn(delay) => AttemptResult::RetryAt(self.clock.now() + delay),
            Next::GiveUp => AttemptResult::Failed,
            Next::Disable => {
                self.current.gone(job.webhook_id);
                AttemptResult::Gone
            }
        };
        let label = match &result {
            AttemptResult::Delivered => "delivered",
            AttemptResult::RetryAt(_) => "retry",
            AttemptResult::Failed => "failed",
            AttemptResult::Gone => "gone",
        };
        crate::telemetry::webhook_attempt(
            label,
            (number == 1).then(|| started_at.since(job.created_at)),
        );
        // Every attempt is recorded (the subscription's delivery log) and counted; a log line
        // for each delivered one took 7 % of the gateway's CPU while 100,000 tasks finished at
        // 3,300 a second (perf), so those are debug and the others, which need a look, info.
        if matches!(result, AttemptResult::Delivered) {
            tracing::debug!(
                webhook_id = %job.webhook_id, event_id = %job.event_id, attempt = number,
                status = ?status, ?result, duration_ms, "webhook attempt"
            );
        } else {
            tracing::info!(
                webhook_id = %job.webhook_id, event_id = %job.event_id, attempt = number,
                status = ?status, ?result, duration_ms, "webhook attempt"
            );
        }
        Done::Attempted(RecordedAttempt {
            delivery_id: job.delivery_id,
            webhook_id: job.webhook_id,
            attempt: AttemptRecord {
                attempt: number,
                status_code: status,
                error,
                duration_ms,
                started_at: started_at.to_datetime(),
                finished_at: self.clock.now().to_datetime(),
            },
            result,
        })
    }

    /// One HTTP POST: status, the start of the body, and `Retry-After`.
    async fn send(&self, job: &DeliveryJob) -> Result<(u16, String, Option<Duration>), String> {
        let url = Url::parse(&job.url).map_err(|e| format!("bad URL: {e}"))?;
        if !target::literal_allowed(&url, self.config.allow_private) {
            return Err("the target address is not public (refused)".into());
        }
        // Signed with the wall clock even under a test's clock: consumers check it against theirs.
        let timestamp = chrono::Utc::now().timestamp();
        let signature =
            signature::header(&job.secrets, job.event_id.as_str(), timestamp, &job.payload)
                .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", job.event_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(job.payload.clone())
            .send()
            .await
            .map_err(|e| crate::outbound::describe(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        let mut resp = resp;
        while body.len() < BODY_LIMIT {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk[..chunk.len().min(BODY_LIMIT - body.len())])
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok((
            status,
            String::from_utf8_lossy(&body).into_owned(),
            retry_after,
        ))
    }
}

/// A failed answer as logged: its status and the start of its body.
fn answer_error(status: u16, body: &str) -> String {
    let body = clean(body, LOGGED_BODY);
    if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    }
}

/// Text a consumer chose (its answer, or an error about its connection), made fit to store and
/// show: control characters, NUL among them (Postgres refuses it in text), and invisible
/// formatting (zero-width, bidirectional overrides) count as spaces; runs of spaces become one;
/// at most `max` characters are kept, `…` marking a cut. Invalid UTF-8 was decoded lossily
/// before (U+FFFD) and stays so.
fn clean(text: &str, max: usize) -> String {
    let is_gap = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    let words: Vec<&str> = text.split(is_gap).filter(|w| !w.is_empty()).collect();
    let joined = words.join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_text_is_cleaned_before_it_is_stored() {
        let long = "a".repeat(300);
        let cut = format!("{}…", "a".repeat(199));
        // As the deliverer reads a body: bytes decoded lossily.
        let lossy = String::from_utf8_lossy(b"caf\xe9\0\xff").into_owned();
        let rows: &[(&str, &str, &str)] = &[
            ("plain text stays", "not yet", "not yet"),
            ("NUL is a space", "boom\0boom", "boom boom"),
            ("C0 and DEL", "a\x01b\x1bc\x7fd", "a b c d"),
            ("C1", "a\u{85}b\u{9b}c", "a b c"),
            ("lines become one", "line 1\r\n\tline 2\n", "line 1 line 2"),
            ("runs collapse, ends trim", "  a \0\0  b  ", "a b"),
            ("bidi override", "safe\u{202e}txt.exe", "safe txt.exe"),
            ("zero-width and BOM", "\u{feff}a\u{200b}b", "a b"),
            (
                "invalid UTF-8 stays replaced",
                &lossy,
                "caf\u{fffd} \u{fffd}",
            ),
            (
                "non-ASCII kept",
                "Größe überschritten — 限度",
                "Größe überschritten — 限度",
            ),
            ("only control: empty", "\0\x01 \n", ""),
            ("bounded", &long, &cut),
        ];
        for (why, text, expected) in rows {
            let got = clean(text, 200);
            assert_eq!(&got, expected, "{why}");
            assert!(!got.contains('\0') && got.chars().count() <= 200, "{why}");
        }
        // The bound counts characters, not bytes; a cut never leaves a space before `…`.
        assert_eq!(clean(&"é".repeat(10), 5), "éééé…");
        assert_eq!(clean("ab cd", 4), "ab…");
        assert_eq!(clean("abcd", 4), "abcd");
    }

    #[test]
    fn a_failed_answer_is_logged_by_status_and_cleaned_body() {
        assert_eq!(answer_error(500, "boom\0boom"), "HTTP 500: boom boom");
        assert_eq!(answer_error(502, " \0 "), "HTTP 502");
        assert_eq!(answer_error(503, ""), "HTTP 503");
        let long = answer_error(500, &"x".repeat(4096));
        assert_eq!(long.chars().count(), "HTTP 500: ".len() + LOGGED_BODY);
    }
}

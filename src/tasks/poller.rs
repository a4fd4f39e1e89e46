//! The poller: the I/O around [`reconcile`](super::reconcile).
//!
//! Each interval, for each of this replica's EM sessions that has running tasks, one
//! `GET /api/tasks` covers all of them (never one call per task); the sessions take turns
//! through the interval ([`list_turn`]), so what finishes settles in smaller bursts. Which
//! tasks those are is kept in memory ([`InFlightSet`]), resynced from the database every
//! [`RESYNC_EVERY`] (longer for a large set: [`resync_every`]), so a tick's database work grows
//! with the tasks that finished, not with the tasks in flight. Tasks EM can no longer show —
//! their session expired, EM restarted, their replica died or stopped, or EM's answer to the
//! submit was lost — are orphans, found from the small sessions table: any replica may lease
//! them (`FOR UPDATE SKIP LOCKED` on Postgres) and settles them by looking at EM's objects. A
//! settle and the webhook events it fires are one transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;

use super::OwnTasks;
use super::answer;
use super::attach::Attacher;
use super::command::Command;
use super::in_flight::InFlightSet;
use super::reconcile::{self, EmObjects, Look};
use super::unanswered::Unanswered;
use crate::clock::{Clock, Timestamp};
use crate::domain::{ReplicaId, TaskId};
use crate::em::{EmClient, EmError, SessionRef};
use crate::store::{
    Backend, DeliveryJob, DeliveryLease, OrphanRules, Settlement, Store, StoreError, TaskRecord,
    UnsentLook, replica_gone_lately,
};
use crate::webhooks::Handoff;

/// Tasks settled in one transaction.
const SETTLE_BATCH: usize = 200;
/// Settle transactions at once: enough to keep up with a burst, few enough to leave database
/// connections for the API.
const SETTLE_CONCURRENCY: usize = 4;
/// An interval's task lists are spread over at most this many turns, each session listing at
/// one of them: a tick that read every session's list at once settled all that finished in the
/// interval in one burst, and its last webhooks waited for the whole burst (EM answered the
/// four lists one after another, then ~3,000 settles and deliveries queued behind each other).
/// Each session still lists once per interval.
pub const LIST_TURNS: usize = 4;
/// Orphans taken per tick.
const ORPHAN_BATCH: u32 = 200;
/// How often every intent EM's answer never came for is looked at, beside each tick's look at
/// those written since the last.
pub const UNSENT_ALL_EVERY: Duration = Duration::from_secs(300);
/// How often expired Idempotency-Key answers and long-lost sessions are dropped.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
/// How long a lost EM session is remembered.
const LOST_SESSIONS_KEPT: Duration = Duration::from_secs(24 * 3600);
/// How often the in-memory in-flight set is made equal to the database's running tasks of this
/// replica (and at the first tick): a task missed by an update in memory waits at most this.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// The tasks in flight from which PostgreSQL's statistics of them are kept up to date by the
/// poller (see [`statistics_due`]).
pub const STATISTICS_FROM: usize = 1_000;
/// Tasks one resync per [`RESYNC_EVERY`] may read at most: a larger set is resynced less often,
/// so the rows read per second stay bounded (a resync of 100,000 running tasks every 30 s was
/// most of a tick's database time at that size).
pub const RESYNC_ROWS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub interval: Duration,
    /// How long a lost task may wait for its effect to show among EM's objects.
    pub grace: Duration,
    /// An intent with no EM task id older than this was not answered (the submit is over).
    pub unsent_after: Duration,
}

/// Which of this replica's sessions a pass of the poller lists, and whether it does the rest of
/// a tick's work (resync, heartbeat, orphans, housekeeping) too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// A whole tick: every session, and the rest.
    All,
    /// One of an interval's `turns`: the sessions listing at `turn` (see [`list_turn`]); the
    /// first turn does the rest.
    Of { turn: usize, turns: usize },
}

impl Turn {
    fn does_the_rest(self) -> bool {
        matches!(self, Turn::All | Turn::Of { turn: 0, .. })
    }

    fn lists(self, slot: usize, sessions: usize) -> bool {
        match self {
            Turn::All => true,
            Turn::Of { turn, turns } => list_turn(slot, sessions, turns) == turn,
        }
    }
}

/// The turn, of `turns` in an interval, at which the session in `slot` (of `sessions`) lists its
/// tasks: spread evenly, so each turn settles about as many.
pub fn list_turn(slot: usize, sessions: usize, turns: usize) -> usize {
    let sessions = sessions.max(1);
    let turns = turns.max(1);
    (slot % sessions) * turns / sessions
}

/// How many turns an interval is spread over for `sessions` EM sessions: one per session, up to
/// [`LIST_TURNS`].
pub fn list_turns(sessions: usize) -> usize {
    sessions.clamp(1, LIST_TURNS)
}

/// What one tick did, for tests and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// The in-flight set was read again from the database: how many tasks it holds.
    pub resynced: Option<usize>,
    pub em_task_lists: usize,
    pub settled: usize,
    pub orphans_claimed: usize,
    pub orphans_settled: usize,
    /// Which intents EM's answer never came for were looked for.
    pub unsent_look: Option<UnsentLook>,
}

pub struct Poller {
    store: Store,
    em: Arc<EmClient>,
    owner: ReplicaId,
    clock: Clock,
    config: PollerConfig,
    /// The tasks this replica follows on EM, shared with the submitter that fills it.
    in_flight: Arc<InFlightSet>,
    /// The intents this replica wrote whose fate is not recorded yet (the submitter's).
    unanswered: Arc<Unanswered>,
    /// Records EM's task ids, some behind their answers: the tick writes those first.
    attacher: Arc<Attacher>,
    /// The deliverer's: handed the deliveries queued leased to this replica, told of those
    /// queued for any replica's claim.
    handoff: Arc<Handoff>,
    last_housekeeping: AtomicI64,
    last_resync: AtomicI64,
    /// Intents written before this were looked at: the next look starts here.
    unsent_since: AtomicI64,
    last_unsent_look_at_all: AtomicI64,
    /// The tasks in flight when the database's statistics were last refreshed, and whether a
    /// refresh is under way.
    statistics_at: Arc<AtomicUsize>,
    refreshing: Arc<AtomicBool>,
    statistics_refreshes: AtomicU64,
}

/// Database time spent in one tick (summed over its statements, concurrent ones included).
#[derive(Default)]
struct DbTime(AtomicU64);

impl DbTime {
    async fn time<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
        out
    }

    fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl Poller {
    pub fn new(
        store: Store,
        em: Arc<EmClient>,
        owner: ReplicaId,
        clock: Clock,
        config: PollerConfig,
        own: OwnTasks,
        handoff: Arc<Handoff>,
    ) -> Self {
        Poller {
            store,
            em,
            owner,
            clock,
            config,
            in_flight: own.in_flight,
            unanswered: own.unanswered,
            attacher: own.attacher,
            handoff,
            last_housekeeping: AtomicI64::new(i64::MIN),
            last_resync: AtomicI64::new(i64::MIN),
            unsent_since: AtomicI64::new(i64::MIN),
            last_unsent_look_at_all: AtomicI64::new(i64::MIN),
            statistics_at: Arc::default(),
            refreshing: Arc::default(),
            statistics_refreshes: AtomicU64::new(0),
        }
    }

    /// Ticks every interval until stopped, each interval in turns ([`list_turns`]): every
    /// session lists its tasks once an interval, at its own turn.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let turns = list_turns(self.em.pool_size());
        let every = self.config.interval / u32::try_from(turns).unwrap_or(1);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut turn = 0;
        let mut worked = Duration::ZERO;
        let mut db = DbTime::default();
        // A round with a failed pass is not recorded: the poller's lag shows the failures.
        let mut failed = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            let started = Instant::now();
            match self.pass(Turn::Of { turn, turns }, &db).await {
                Ok(report) if report.settled + report.orphans_settled > 0 => {
                    tracing::debug!(?report, turn, "poller tick");
                }
                Ok(_) => {}
                Err(e) => {
                    failed = true;
                    tracing::warn!(error = %e, "poller tick failed; retrying next interval");
                }
            }
            worked += started.elapsed();
            turn += 1;
            if turn == turns {
                if !failed {
                    self.record(worked, &db);
                }
                failed = false;
                turn = 0;
                worked = Duration::ZERO;
                db = DbTime::default();
            }
        }
    }

    /// One whole round at once: settle what EM shows finished on every session, heartbeat this
    /// replica's sessions, settle orphans from EM's objects, and now and then resync the
    /// in-flight set and drop what has expired.
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        let started = Instant::now();
        let db = DbTime::default();
        let report = self.pass(Turn::All, &db).await?;
        self.record(started.elapsed(), &db);
        Ok(report)
    }

    /// One turn of `turns`, as the service takes it (for tests: its time is not recorded).
    pub async fn turn(&self, turn: usize, turns: usize) -> Result<TickReport, StoreError> {
        self.pass(Turn::Of { turn, turns }, &DbTime::default())
            .await
    }

    /// One pass: the sessions `which` lists, and on its first turn the rest of a tick.
    async fn pass(&self, which: Turn, db: &DbTime) -> Result<TickReport, StoreError> {
        // What this pass reads and settles is then in the database, with EM's ids. The
        // creates' work, done a few milliseconds early: not counted as the tick's. A failed
        // write is logged and tried again; the pass goes on without those tasks.
        let _ = self.attacher.write_behind_now().await;
        let mut report = TickReport::default();
        if which.does_the_rest() {
            report.resynced = self.resync_if_due(db).await?;
        }
        self.poll_own_sessions(which, &mut report, db).await?;
        if !which.does_the_rest() {
            return Ok(report);
        }
        let live: Vec<(usize, String)> = self
            .em
            .live_sessions()
            .into_iter()
            .map(|s| (s.slot, s.session_id))
            .collect();
        db.time(
            self.store
                .heartbeat_sessions(self.owner, &live, self.clock.now()),
        )
        .await?;
        self.settle_orphans(&mut report, db).await?;
        self.housekeeping(db).await;
        // SQLite's planner looks tasks up by key without statistics.
        if self.store.backend() == Backend::Postgres {
            self.refresh_statistics_if_due();
        }
        Ok(report)
    }

    /// Has the database's statistics of the tasks refreshed beside the poller, not in its
    /// tick, when the tasks in flight have grown (see [`statistics_due`]).
    fn refresh_statistics_if_due(&self) {
        let in_flight = self.in_flight.len();
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let at_last = statistics_mark(in_flight, self.statistics_at.load(Ordering::Relaxed));
        self.statistics_at.store(at_last, Ordering::Relaxed);
        if !statistics_due(in_flight, at_last) {
            self.refreshing.store(false, Ordering::Release);
            return;
        }
        self.statistics_refreshes.fetch_add(1, Ordering::Relaxed);
        let (store, at, refreshing) = (
            self.store.clone(),
            self.statistics_at.clone(),
            self.refreshing.clone(),
        );
        tokio::spawn(async move {
            // A database user that does not own the table gets a warning from PostgreSQL and
            // no statistics: autovacuum's to do then, and tried again only at the next doubling.
            match store.refresh_task_statistics().await {
                Ok(()) => at.store(in_flight, Ordering::Relaxed),
                // The database unavailable, say: tried again at the next round.
                Err(e) => {
                    tracing::warn!(error = %e, "could not refresh the database's statistics of the tasks");
                }
            }
            refreshing.store(false, Ordering::Release);
        });
    }

    /// How many refreshes of the database's statistics of the tasks this poller started.
    pub fn statistics_refreshes(&self) -> u64 {
        self.statistics_refreshes.load(Ordering::Relaxed)
    }

    /// A round's time and database time, and the tasks in flight after it.
    fn record(&self, worked: Duration, db: &DbTime) {
        let in_flight = i64::try_from(self.in_flight.len()).unwrap_or(i64::MAX);
        crate::telemetry::poller_tick(worked, db.total(), in_flight);
    }

    /// Reads this replica's running tasks into the in-flight set, at the first tick and every
    /// [`RESYNC_EVERY`]: what the set missed (a crash between commit and memory, a task
    /// settled by another replica) is put right within that time.
    async fn resync_if_due(&self, db: &DbTime) -> Result<Option<usize>, StoreError> {
        let now = self.clock.now();
        let last = Timestamp::from_millis(self.last_resync.load(Ordering::Relaxed));
        if !resync_due(now, last, self.in_flight.len()) {
            return Ok(None);
        }
        self.in_flight.begin_resync();
        match db.time(self.store.running_tasks_of(self.owner)).await {
            Ok(rows) => {
                self.last_resync.store(now.as_millis(), Ordering::Relaxed);
                Ok(Some(self.in_flight.finish_resync(rows)))
            }
            Err(e) => {
                self.in_flight.abandon_resync();
                Err(e)
            }
        }
    }

    async fn housekeeping(&self, db: &DbTime) {
        let now = self.clock.now();
        let last = Timestamp::from_millis(self.last_housekeeping.load(Ordering::Relaxed));
        if now.since(last) < HOUSEKEEPING_EVERY {
            return;
        }
        self.last_housekeeping
            .store(now.as_millis(), Ordering::Relaxed);
        if let Err(e) = db.time(self.store.purge_idempotency(now)).await {
            tracing::warn!(error = %e, "could not purge old Idempotency-Key answers");
        }
        if let Err(e) = db
            .time(self.store.prune_sessions(now - LOST_SESSIONS_KEPT))
            .await
        {
            tracing::warn!(error = %e, "could not prune old EM sessions");
        }
    }

    async fn poll_own_sessions(
        &self,
        which: Turn,
        report: &mut TickReport,
        db: &DbTime,
    ) -> Result<(), StoreError> {
        let sessions = self.em.pool_size();
        // Sessions that are not live are left to the orphan path.
        let polls: Vec<SessionRef> = self
            .em
            .live_sessions()
            .into_iter()
            .filter(|session| which.lists(session.slot, sessions))
            .filter(|session| self.in_flight.has_tasks_on(&session.session_id))
            .collect();
        report.em_task_lists += polls.len();
        // Every session's list is read at once, and what each shows finished is settled as soon
        // as it is read: waiting for the slowest list held the others' tasks back (EM answers
        // four lists of 25,000 tasks one after another in 100-300 ms).
        let lists = polls.len().max(1);
        // The settle transactions at once stay within SETTLE_CONCURRENCY, shared by the lists.
        let settling = &tokio::sync::Semaphore::new(SETTLE_CONCURRENCY);
        let settled: Vec<Result<usize, StoreError>> = stream::iter(polls)
            .map(|session| async move {
                let finished = self.finished_on(session).await;
                self.settle_in_order(finished, settling, db).await
            })
            .buffer_unordered(lists)
            .collect()
            .await;
        for r in settled {
            report.settled += r?;
        }
        Ok(())
    }

    /// Settles what one session's list shows finished, oldest first, in batches.
    async fn settle_in_order(
        &self,
        mut finished: Vec<(TaskId, Settlement)>,
        settling: &tokio::sync::Semaphore,
        db: &DbTime,
    ) -> Result<usize, StoreError> {
        // EM does not say when a task finished. Oldest first: a task that finished long before
        // this tick has waited longest, and among tasks the oldest most likely finished first,
        // so its webhook should not queue behind tasks that finished a moment ago. Task ids are
        // time-ordered.
        finished.sort_unstable_by_key(|(id, _)| *id);
        let chunks: Vec<Vec<(TaskId, Settlement)>> =
            finished.chunks(SETTLE_BATCH).map(<[_]>::to_vec).collect();
        let settled: Vec<Result<usize, StoreError>> = stream::iter(chunks)
            .map(|chunk| async move {
                // Never closed: the permit is always there.
                let _turn = settling.acquire().await.ok();
                self.settle(chunk, "em", db).await
            })
            .buffered(SETTLE_CONCURRENCY)
            .collect()
            .await;
        settled.into_iter().sum()
    }

    /// One `GET /api/tasks` on a session: its tasks that EM shows finished. Tasks EM no longer
    /// lists are left to the orphan path (EM's objects).
    async fn finished_on(&self, session: SessionRef) -> Vec<(TaskId, Settlement)> {
        let ours = |id: &str| self.in_flight.contains(&session.session_id, id);
        match self.em.finished_tasks(&session, ours).await {
            Ok(finished) => finished
                .iter()
                .filter_map(|em_task| {
                    let task = self
                        .in_flight
                        .get(&session.session_id, em_task.task_id.as_str())?;
                    Some((
                        task.id,
                        reconcile::from_em_task(task.operation, task.target_id, em_task),
                    ))
                })
                .collect(),
            Err(EmError::SessionLost) => {
                tracing::info!(
                    slot = session.slot,
                    "EM session lost; its tasks will be settled from EM's objects"
                );
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read EM's tasks");
                Vec::new()
            }
        }
    }

    async fn settle_orphans(&self, report: &mut TickReport, db: &DbTime) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut rules = OrphanRules::at(now, self.config.interval, self.config.unsent_after);
        let since = Timestamp::from_millis(self.unsent_since.load(Ordering::Relaxed));
        let last_all = Timestamp::from_millis(self.last_unsent_look_at_all.load(Ordering::Relaxed));
        let before = rules.unsent.before();
        let sessions = db.time(self.store.sessions()).await?;
        // Since when something may have been left behind: this replica's earliest intent due
        // without its fate; for a replica gone lately, what it wrote since the last look.
        let gone = replica_gone_lately(&sessions, &rules, before).then_some(since);
        let left_behind = self
            .unanswered
            .earliest_before(before)
            .into_iter()
            .chain(gone)
            .min();
        rules.unsent = unsent_look(now, before, since, last_all, left_behind);
        let orphans = db
            .time(
                self.store
                    .claim_orphans(self.owner, &rules, &sessions, ORPHAN_BATCH),
            )
            .await?;
        report.orphans_claimed = orphans.len();
        report.unsent_look = Some(rules.unsent);
        let full = orphans.len() >= ORPHAN_BATCH as usize;
        if !full && !matches!(rules.unsent, UnsentLook::LookedAt { .. }) {
            // Every intent written before `before` was in this look (or in an earlier one, or
            // looked at before and again now): what it found is settled or leased.
            self.unanswered.looked_before(before);
        }
        let (since, last_all) = after_unsent_look(rules.unsent, now, full, (since, last_all));
        self.unsent_since
            .store(since.as_millis(), Ordering::Relaxed);
        self.last_unsent_look_at_all
            .store(last_all.as_millis(), Ordering::Relaxed);
        if orphans.is_empty() {
            return Ok(());
        }
        let mut em = EmObjects::default();
        let mut settlements = Vec::new();
        let mut not_yet = Vec::new();
        for task in &orphans {
            let command = match Command::from_record(task.operation, task.target_id, &task.request)
            {
                Ok(command) => command,
                Err(_) => {
                    settlements.push((task.id, reconcile::unreadable()));
                    continue;
                }
            };
            if let Err(e) = self.read(&command, &mut em).await {
                tracing::warn!(task_id = %task.id, error = %e, "could not look at EM's objects");
                // EM cannot be asked now; the leases lapse and the tasks are tried again.
                if matches!(e, EmError::Unreachable(_)) {
                    break;
                }
                continue;
            }
            let waited = now.since(Timestamp::from(task.created_at));
            let finding = reconcile::judge(&command, &em);
            match reconcile::settle_lost(finding, waited, self.config.grace) {
                Some(settlement) => settlements.push((task.id, settlement)),
                None => not_yet.push(task.id),
            }
        }
        report.orphans_settled = self.settle(settlements, "objects", db).await?;
        // Looked at again next tick, by whichever replica: settled within an interval of EM
        // finishing (a stopped replica's tasks are handed over mid-run).
        db.time(self.store.unlease_orphans(self.owner, &not_yet, now))
            .await?;
        Ok(())
    }

    /// Reads what judging `command` needs and `em` does not have yet (each look once per tick,
    /// however many orphans need it).
    async fn read(&self, command: &Command, em: &mut EmObjects) -> Result<(), EmError> {
        for look in reconcile::looks(command) {
            if em.has(look) {
                continue;
            }
            match look {
                Look::CloudGateways => em.gateways = Some(self.em.cloud_gateways().await?),
                Look::CloudGatewayPools => em.pools = Some(self.em.cloud_gateway_pools().await?),
                Look::CloudGateway(id) => {
                    em.gateway.insert(id, self.em.cloud_gateway(id).await?);
                }
                Look::CloudGatewayPool(id) => {
                    em.pool.insert(id, self.em.cloud_gateway_pool(id).await?);
                }
                Look::CloudTenants => em.tenants = Some(self.em.cloud_tenants().await?),
                Look::CloudTenant(id) => {
                    em.tenant.insert(id, self.em.cloud_tenant(id).await?);
                }
            }
        }
        Ok(())
    }

    /// Settles a batch in one transaction with the webhook events it fires, takes it out of
    /// the in-flight set, and hands the deliveries to this replica's deliverer (or, while it
    /// holds enough, queues them for any replica and wakes it). Returns how many this call
    /// settled (not those settled elsewhere before).
    async fn settle(
        &self,
        batch: Vec<(TaskId, Settlement)>,
        how: &'static str,
        db: &DbTime,
    ) -> Result<usize, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let leased_at = Instant::now();
        let lease = self.handoff.lease(now);
        let (settled, deliveries) = db.time(settle(&self.store, &batch, now, lease)).await?;
        // Settled now or before (elsewhere): either way no longer running.
        self.in_flight.forget(batch.iter().map(|(id, _)| *id));
        for task in &settled {
            crate::telemetry::task_settled(task.state.as_str(), how);
        }
        if lease.is_some() {
            self.handoff.hand(deliveries, leased_at);
        } else if !settled.is_empty() {
            self.handoff.queued_for_claim();
        }
        Ok(settled.len())
    }
}

/// Whether the in-flight set is due to be read again from the database (never read yet, or
/// [`RESYNC_EVERY`] since; a clock moved back counts as due). With more than [`RESYNC_ROWS`]
/// tasks in flight, the wait grows in proportion: the work is the same per second whatever the
/// size, and what a resync puts right (a task settled by another replica) is rare and harmless
/// until then.
pub fn resync_due(now: Timestamp, last: Timestamp, in_flight: usize) -> bool {
    last.as_millis() == i64::MIN || now < last || now.since(last) >= resync_every(in_flight)
}

/// Which intents EM's answer never came for this tick looks for: those looked at before, and,
/// when something may have been left behind since `left_behind` (this replica has an intent
/// due whose fate it has not recorded, or a replica went away lately), those written since the
/// last look (`since`, up to `before`), or all of them if that reaches further back. Every intent written since `tasks` was last vacuumed leaves an
/// index entry there, answered or not, and stepping over them all each tick took most of its
/// database time after a burst of creates (1.3–8 ms a look after 100,000 on Postgres); a
/// window steps over each intent once, and only when there is something to find. All of them
/// are looked at at the first tick and every [`UNSENT_ALL_EVERY`], for what a window missed: an
/// intent committed after its window was looked at (its writer's clock far behind the
/// looker's, or its commit slower than `unsent_after`), one skipped while another transaction
/// held its row locked, or one of a replica that died before it ever heartbeat.
pub fn unsent_look(
    now: Timestamp,
    before: Timestamp,
    since: Timestamp,
    last_all: Timestamp,
    left_behind: Option<Timestamp>,
) -> UnsentLook {
    let never = |t: Timestamp| t.as_millis() == i64::MIN;
    if never(since)
        || never(last_all)
        || since > before
        || now < last_all
        || now.since(last_all) >= UNSENT_ALL_EVERY
        // An intent a past look missed (its commit came late) that a retry found since.
        || left_behind.is_some_and(|at| at < since)
    {
        UnsentLook::All { before }
    } else if left_behind.is_some() {
        UnsentLook::Since {
            from: since,
            before,
        }
    } else {
        UnsentLook::LookedAt { before }
    }
}

/// After a look made at `now`: where the next starts, and when all of them were last looked
/// at, from the same before it. A full batch may have left intents of the look behind: the
/// next tick looks again from the same place (those claimed now are looked-at ones by then).
pub fn after_unsent_look(
    look: UnsentLook,
    now: Timestamp,
    full: bool,
    (since, last_all): (Timestamp, Timestamp),
) -> (Timestamp, Timestamp) {
    match (full, look) {
        (true, _) => (since, last_all),
        (false, UnsentLook::All { before }) => (before, now),
        (false, UnsentLook::Since { before, .. }) => (before, last_all),
        // No window was looked at: the next starts where the last did.
        (false, UnsentLook::LookedAt { .. }) => (since, last_all),
    }
}

/// Whether the database's statistics of the tasks are due a refresh: the tasks in flight, at
/// least [`STATISTICS_FROM`], have doubled since the last one (`at_last`). Without it a burst
/// of creates into a new table, or into one analyzed while few tasks ran, is recorded with a
/// plan that reads every running task per statement; doubling keeps the refreshes to a few
/// (seven on the way to 100,000).
pub fn statistics_due(in_flight: usize, at_last: usize) -> bool {
    in_flight >= STATISTICS_FROM && in_flight / 2 >= at_last
}

/// The tasks in flight a refresh is next measured from: the last refresh's, or fewer once the
/// tasks have settled to under a quarter of it (autovacuum will have seen few running by then,
/// and the next burst needs statistics again).
pub fn statistics_mark(in_flight: usize, at_last: usize) -> usize {
    if in_flight < at_last / 4 {
        in_flight
    } else {
        at_last
    }
}

/// How long between two resyncs of a set this large.
pub fn resync_every(in_flight: usize) -> Duration {
    let rounds = u32::try_from(in_flight.div_ceil(RESYNC_ROWS)).unwrap_or(u32::MAX);
    RESYNC_EVERY.saturating_mul(rounds.max(1))
}

/// Ends tasks, each at most once, with their webhook events, in one transaction: a settled task
/// always has its webhooks queued. Under `lease`, the deliveries are queued leased and
/// returned ready to send.
pub async fn settle(
    store: &Store,
    batch: &[(TaskId, Settlement)],
    now: Timestamp,
    lease: Option<DeliveryLease>,
) -> Result<(Vec<TaskRecord>, Vec<DeliveryJob>), StoreError> {
    let mut tx = store.begin().await?;
    // A settle lost in a database crash puts the task back to running: the poller settles it
    // again (from EM, or from EM's objects) and its webhook is sent again, which at-least-once
    // delivery allows. Not waiting for the disk lets thousands settle a second.
    tx.relax_durability().await?;
    let settled = tx.settle_tasks(batch, now).await?;
    let events: Vec<_> = settled
        .iter()
        .filter_map(|task| answer::event(task, now))
        .collect();
    let deliveries = tx.enqueue_events(&events, now, lease).await?;
    tx.commit().await?;
    Ok((settled, deliveries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_flight_set_is_resynced_at_start_and_every_thirty_seconds() {
        let t = |ms: i64| Timestamp::from_millis(ms);
        let never = t(i64::MIN);
        // (now, last resync, tasks in flight, due)
        let cases = [
            (t(0), never, 0, true),
            (t(0), never, 1_000_000, true),
            (t(5_000), t(5_000), 0, false),
            (t(34_999), t(5_000), 0, false),
            (t(35_000), t(5_000), 0, true),
            (t(35_000), t(5_000), 10_000, true),
            (t(100_000), t(5_000), 0, true),
            (t(4_000), t(5_000), 0, true),
            (t(4_000), t(5_000), 100_000, true),
            // A larger set waits longer: 10,000 rows per 30 s at most.
            (t(35_000), t(5_000), 10_001, false),
            (t(65_000), t(5_000), 10_001, true),
            (t(304_999), t(5_000), 100_000, false),
            (t(305_000), t(5_000), 100_000, true),
        ];
        for (now, last, in_flight, due) in cases {
            assert_eq!(
                resync_due(now, last, in_flight),
                due,
                "now {now:?}, last {last:?}, {in_flight} in flight"
            );
        }
    }

    #[test]
    fn intents_never_answered_are_looked_for_since_the_last_look_when_left_behind_and_all_now_and_then()
     {
        let t = |ms: i64| Timestamp::from_millis(ms);
        let never = t(i64::MIN);
        let all = |before: i64| UnsentLook::All { before: t(before) };
        let since = |from: i64, before: i64| UnsentLook::Since {
            from: t(from),
            before: t(before),
        };
        let looked_at = |before: i64| UnsentLook::LookedAt { before: t(before) };
        // (now, before, since, last look at all, left behind since, look)
        let cases = [
            // The first tick looks at all of them, left behind or not.
            (t(40_000), t(5_000), never, never, None, all(5_000)),
            (
                t(40_000),
                t(5_000),
                never,
                never,
                Some(t(4_000)),
                all(5_000),
            ),
            (
                t(41_000),
                t(6_000),
                t(5_000),
                t(40_000),
                Some(t(5_500)),
                since(5_000, 6_000),
            ),
            // Nothing left behind: only those looked at before, and the window stays put.
            (
                t(41_000),
                t(6_000),
                t(5_000),
                t(40_000),
                None,
                looked_at(6_000),
            ),
            // Left behind before the window's start (a retry found what a look missed): all.
            (
                t(41_000),
                t(6_000),
                t(5_000),
                t(40_000),
                Some(t(4_999)),
                all(6_000),
            ),
            (
                t(339_999),
                t(304_999),
                t(303_999),
                t(40_000),
                Some(t(303_999)),
                since(303_999, 304_999),
            ),
            // Every five minutes, all of them again.
            (
                t(340_000),
                t(305_000),
                t(304_000),
                t(40_000),
                None,
                all(305_000),
            ),
            // A clock that went back: all of them, rather than a window that runs backwards.
            (t(39_000), t(4_000), t(5_000), t(40_000), None, all(4_000)),
            (
                t(41_000),
                t(6_000),
                t(5_000),
                t(42_000),
                Some(t(5_000)),
                all(6_000),
            ),
            (
                t(41_000),
                t(4_000),
                t(5_000),
                t(40_000),
                Some(t(5_000)),
                all(4_000),
            ),
        ];
        for (now, before, from, last_all, left_behind, look) in cases {
            assert_eq!(
                unsent_look(now, before, from, last_all, left_behind),
                look,
                "now {now:?}, since {from:?}, last look at all {last_all:?}, left behind since {left_behind:?}"
            );
        }
    }

    #[test]
    fn the_next_look_starts_where_this_one_ended_unless_its_batch_came_back_full() {
        let t = |ms: i64| Timestamp::from_millis(ms);
        let never = t(i64::MIN);
        let all = UnsentLook::All { before: t(5_000) };
        let since = UnsentLook::Since {
            from: t(4_000),
            before: t(5_000),
        };
        let looked_at = UnsentLook::LookedAt { before: t(5_000) };
        // (look, full batch, since and last look at all before, after)
        let cases = [
            (all, false, (never, never), (t(5_000), t(40_000))),
            (
                looked_at,
                false,
                (t(4_000), t(39_000)),
                (t(4_000), t(39_000)),
            ),
            (
                looked_at,
                true,
                (t(4_000), t(39_000)),
                (t(4_000), t(39_000)),
            ),
            (all, true, (never, never), (never, never)),
            (since, false, (t(4_000), t(39_000)), (t(5_000), t(39_000))),
            (since, true, (t(4_000), t(39_000)), (t(4_000), t(39_000))),
        ];
        for (look, full, before, after) in cases {
            assert_eq!(
                after_unsent_look(look, t(40_000), full, before),
                after,
                "{look:?}, full batch {full}"
            );
        }
    }

    #[test]
    fn statistics_are_refreshed_as_the_tasks_in_flight_double() {
        // (in flight, in flight at the last refresh, due)
        let cases = [
            (0, 0, false),
            (STATISTICS_FROM - 1, 0, false),
            (STATISTICS_FROM, 0, true),
            (1_999, 1_000, false),
            (2_000, 1_000, true),
            (100_000, 64_000, false),
            (128_000, 64_000, true),
            // Fewer than at the last refresh: the tasks settle, nothing to do.
            (500, 64_000, false),
        ];
        for (in_flight, at_last, due) in cases {
            assert_eq!(
                statistics_due(in_flight, at_last),
                due,
                "{in_flight} in flight, {at_last} at the last"
            );
        }
        // (in flight, mark, the mark after)
        for (in_flight, at_last, after) in [
            (0, 0, 0),
            (60_000, 64_000, 64_000),
            (16_000, 64_000, 64_000),
            (15_999, 64_000, 15_999),
            (0, 64_000, 0),
        ] {
            assert_eq!(
                statistics_mark(in_flight, at_last),
                after,
                "{in_flight} in flight, {at_last} at the last"
            );
        }
        // After a burst of 64,000 has settled, the next burst of 1,000 is refreshed again.
        let mark = statistics_mark(10, 64_000);
        assert!(statistics_due(1_000, statistics_mark(1_000, mark)));

        let mut at = 0;
        let refreshes = (0..=100_000)
            .step_by(100)
            .filter(|&n| {
                let due = statistics_due(n, at);
                if due {
                    at = n;
                }
                due
            })
            .count();
        assert_eq!(refreshes, 7, "1k, 2k, 4k, ... 64k on the way to 100k");
    }

    #[test]
    fn sessions_list_at_turns_spread_evenly_over_the_interval() {
        // (sessions, the turn of each slot)
        let cases: &[(usize, &[usize])] = &[
            (1, &[0]),
            (2, &[0, 1]),
            (3, &[0, 1, 2]),
            (4, &[0, 1, 2, 3]),
            (6, &[0, 0, 1, 2, 2, 3]),
            (8, &[0, 0, 1, 1, 2, 2, 3, 3]),
            (16, &[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]),
        ];
        for (sessions, want) in cases {
            let turns = list_turns(*sessions);
            assert_eq!(turns, (*sessions).min(LIST_TURNS), "{sessions} sessions");
            let got: Vec<usize> = (0..*sessions)
                .map(|slot| list_turn(slot, *sessions, turns))
                .collect();
            assert_eq!(&got, want, "{sessions} sessions");
        }
        // A whole tick lists every session; a turn only its own, and only the first does the
        // rest of a tick.
        assert!((0..4).all(|slot| Turn::All.lists(slot, 4)));
        assert!(Turn::All.does_the_rest());
        let second = Turn::Of { turn: 1, turns: 4 };
        let listed: Vec<usize> = (0..8).filter(|slot| second.lists(*slot, 8)).collect();
        assert_eq!(listed, [2, 3]);
        assert!(!second.does_the_rest());
        assert!(Turn::Of { turn: 0, turns: 4 }.does_the_rest());
        assert_eq!(list_turns(0), 1, "a pool has one session at least");
    }

    #[test]
    fn resyncs_read_at_most_ten_thousand_rows_per_thirty_seconds() {
        for (in_flight, every_s) in [
            (0, 30),
            (1, 30),
            (10_000, 30),
            (10_001, 60),
            (100_000, 300),
            (usize::MAX, 30 * u64::from(u32::MAX)),
        ] {
            assert_eq!(
                resync_every(in_flight),
                Duration::from_secs(every_s),
                "{in_flight}"
            );
        }
    }
}

//! Settles running tasks.
//!
//! Each tick, for each of this replica's EM sessions that has running tasks, one
//! `GET /api/tasks` covers all of them (never one call per task). Tasks EM can no longer show —
//! their session expired, EM restarted, their replica died, or EM's answer to the submit was
//! lost — are "orphans": any replica may lease them (`FOR UPDATE SKIP LOCKED` on Postgres) and
//! settles them by looking at EM's objects, giving up as failed only after a grace period.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::domain::{
    CloudGatewayChange, CloudGatewayPoolChange, Network, NewCloudGateway, NewCloudGatewayPool,
    Operation, Resource, ResourceType, TaskId, TaskState,
};
use crate::em::xml;
use crate::em::{EmClient, EmError, SessionRef};
use crate::store::{InFlight, Settlement, Store, StoreError, TaskRecord, now_ms};

/// Tasks settled in one transaction.
const SETTLE_BATCH: usize = 200;
/// Settle transactions at once: enough to keep up with a burst, few enough to leave database
/// connections for the API.
const SETTLE_CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub interval: Duration,
    /// How long a lost task may wait for its effect to show among EM's objects.
    pub grace: Duration,
    /// An intent with no EM task id older than this was not answered (the submit is over).
    pub unsent_after: Duration,
}

/// What one tick did, for tests and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub em_task_lists: usize,
    pub settled: usize,
    pub orphans_claimed: usize,
    pub orphans_settled: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Poller {
    store: Store,
    em: Arc<EmClient>,
    owner: String,
    config: PollerConfig,
    /// Woken when a task is settled: its webhook deliveries are waiting.
    settled: Arc<Notify>,
    last_housekeeping: std::sync::atomic::AtomicI64,
}

impl Poller {
    pub fn new(
        store: Store,
        em: Arc<EmClient>,
        owner: String,
        config: PollerConfig,
        settled: Arc<Notify>,
    ) -> Self {
        Poller {
            store,
            em,
            owner,
            config,
            settled,
            last_housekeeping: std::sync::atomic::AtomicI64::new(0),
        }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            match self.tick().await {
                Ok(report) if report.settled + report.orphans_settled > 0 => {
                    tracing::debug!(?report, "poller tick");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "poller tick failed; retrying next interval"),
            }
        }
    }

    pub async fn tick(&self) -> Result<TickReport, PollError> {
        let started = std::time::Instant::now();
        let mut report = TickReport::default();
        self.poll_own_sessions(&mut report).await?;
        let live: Vec<(usize, String)> = self
            .em
            .live_sessions()
            .into_iter()
            .map(|s| (s.slot, s.session_id))
            .collect();
        self.store.heartbeat_sessions(&self.owner, &live).await?;
        self.settle_orphans(&mut report).await?;
        self.housekeeping().await;
        let in_flight = self.store.count_running().await?;
        crate::telemetry::poller_tick(started.elapsed(), in_flight);
        Ok(report)
    }

    /// Once a minute: drop expired Idempotency-Key answers and long-lost EM sessions.
    async fn housekeeping(&self) {
        let now = now_ms();
        let last = self
            .last_housekeeping
            .load(std::sync::atomic::Ordering::Relaxed);
        if now - last < 60_000 {
            return;
        }
        self.last_housekeeping
            .store(now, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.store.purge_idempotency(now).await {
            tracing::warn!(error = %e, "could not purge old Idempotency-Key answers");
        }
        if let Err(e) = self.store.prune_sessions(now - 24 * 3600 * 1000).await {
            tracing::warn!(error = %e, "could not prune old EM sessions");
        }
    }

    async fn poll_own_sessions(&self, report: &mut TickReport) -> Result<(), PollError> {
        use futures_util::stream::{self, StreamExt};
        let running = self.store.running_tasks_of(&self.owner).await?;
        if running.is_empty() {
            return Ok(());
        }
        let mut by_session: HashMap<String, Vec<InFlight>> = HashMap::new();
        for task in running {
            by_session
                .entry(task.em_session_id.clone())
                .or_default()
                .push(task);
        }
        let polls: Vec<_> = self
            .em
            .live_sessions()
            .into_iter()
            .filter_map(|session| {
                let tasks = by_session.remove(session.session_id.as_str())?;
                Some((session, tasks))
            })
            .collect();
        report.em_task_lists += polls.len();
        // Every session's list is read at once.
        let lists = polls.len().max(1);
        let mut finished: Vec<(TaskId, Settlement)> = stream::iter(polls)
            .map(|(session, tasks)| self.finished_on(session, tasks))
            .buffer_unordered(lists)
            .flat_map(stream::iter)
            .collect()
            .await;
        // EM does not say when a task finished. Oldest first: a task that finished long before
        // this tick has waited longest, and among tasks the oldest most likely finished first,
        // so its webhook should not queue behind tasks that finished a moment ago. Task ids are
        // time-ordered.
        finished.sort_unstable_by_key(|(id, _)| *id);
        let chunks: Vec<Vec<(TaskId, Settlement)>> =
            finished.chunks(SETTLE_BATCH).map(<[_]>::to_vec).collect();
        let settled: Vec<Result<usize, StoreError>> = stream::iter(chunks)
            .map(|chunk| self.settle_batch(chunk, "em"))
            .buffered(SETTLE_CONCURRENCY)
            .collect()
            .await;
        for r in settled {
            report.settled += r?;
        }
        Ok(())
    }

    /// One `GET /api/tasks` on a session: its tasks that EM shows finished. Tasks EM no longer
    /// lists are left to the orphan path (EM's objects).
    async fn finished_on(
        &self,
        session: SessionRef,
        tasks: Vec<InFlight>,
    ) -> Vec<(TaskId, Settlement)> {
        let ours: HashMap<&str, &InFlight> =
            tasks.iter().map(|t| (t.em_task_id.as_str(), t)).collect();
        match self
            .em
            .finished_tasks(&session, |id| ours.contains_key(id))
            .await
        {
            Ok(finished) => finished
                .iter()
                .filter_map(|em_task| {
                    let task = ours.get(em_task.task_id.as_str())?;
                    Some((task.id, from_em_result(task, em_task)))
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

    async fn settle_orphans(&self, report: &mut TickReport) -> Result<(), PollError> {
        let now = now_ms();
        let interval_ms = i64::try_from(self.config.interval.as_millis()).unwrap_or(i64::MAX);
        let unsent_ms = i64::try_from(self.config.unsent_after.as_millis()).unwrap_or(i64::MAX);
        // A replica that missed this many heartbeats is gone.
        let stale_ms = (interval_ms * 10).max(1_000);
        let lease_ms = (interval_ms * 5).max(1_000);
        let orphans = self
            .store
            .claim_orphans(&self.owner, lease_ms, now - unsent_ms, now - stale_ms, 200)
            .await?;
        report.orphans_claimed = orphans.len();
        if orphans.is_empty() {
            return Ok(());
        }
        let mut view = EmView::default();
        for task in &orphans {
            match self.settle_by_objects(task, &mut view).await {
                Ok(Some(settlement)) => {
                    if self
                        .store
                        .settle_task(task.id, &settlement)
                        .await?
                        .is_some()
                    {
                        crate::telemetry::task_settled(settlement.state.as_str(), "objects");
                        report.orphans_settled += 1;
                        self.settled.notify_one();
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(task_id = %task.id, error = %e, "could not look at EM's objects");
                    // EM cannot be asked now; the lease lapses and the task is tried again.
                    if matches!(e, EmError::Unreachable(_)) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Settles one batch in one transaction, waking the deliverer.
    async fn settle_batch(
        &self,
        batch: Vec<(TaskId, Settlement)>,
        how: &'static str,
    ) -> Result<usize, StoreError> {
        let settled = self.store.settle_tasks(&batch).await?;
        for task in &settled {
            crate::telemetry::task_settled(task.state.as_str(), how);
        }
        if !settled.is_empty() {
            self.settled.notify_one();
        }
        Ok(settled.len())
    }

    /// Decides a task EM lost track of from EM's objects. `None`: not yet decidable.
    async fn settle_by_objects(
        &self,
        task: &TaskRecord,
        view: &mut EmView,
    ) -> Result<Option<Settlement>, EmError> {
        let age = Utc::now().signed_duration_since(task.created_at);
        let patience_over = age.to_std().unwrap_or_default() >= self.config.grace;
        let grace = humanize(self.config.grace);
        let lost = "Enterprise Manager lost track of this task";
        let decided = |state: TaskState, what: String, resource: Option<Resource>| {
            Some(Settlement {
                state,
                message: Some(format!(
                    "{lost}; settled by looking at EM's objects: {what}"
                )),
                resource,
            })
        };
        let give_up = |what: String| {
            if patience_over {
                decided(TaskState::Failed, format!("{what} within {grace}"), None)
            } else {
                None
            }
        };
        let target = task.target_id;
        let resource = |t: ResourceType| target.map(|id| Resource { type_: t, id });
        match task.operation {
            Operation::CreateCloudGateway => {
                let Ok(command) = serde_json::from_str::<NewCloudGateway>(&task.request) else {
                    return Ok(decided(
                        TaskState::Failed,
                        "the stored request is unreadable".into(),
                        None,
                    ));
                };
                let gateways = view.gateways(&self.em).await?;
                let found = gateways.iter().find(|g| {
                    g.name.eq_ignore_ascii_case(command.host.as_str())
                        && backup_server_of(&g.links) == Some(command.backup_server.id())
                });
                Ok(match found.and_then(|g| uid_guid(&g.uid)) {
                    Some(id) => decided(
                        TaskState::Succeeded,
                        format!("cloud gateway {} exists", command.host),
                        Some(Resource {
                            type_: ResourceType::CloudGateway,
                            id,
                        }),
                    ),
                    None => give_up(format!("no cloud gateway for {} appeared", command.host)),
                })
            }
            Operation::CreateCloudGatewayPool => {
                let Ok(command) = serde_json::from_str::<NewCloudGatewayPool>(&task.request) else {
                    return Ok(decided(
                        TaskState::Failed,
                        "the stored request is unreadable".into(),
                        None,
                    ));
                };
                let pools = view.pools(&self.em).await?;
                let found = pools.iter().find(|p| {
                    p.name.eq_ignore_ascii_case(command.name.as_str())
                        && backup_server_of(&p.links) == Some(command.backup_server.id())
                });
                Ok(match found.and_then(|p| uid_guid(&p.uid)) {
                    Some(id) => decided(
                        TaskState::Succeeded,
                        format!("cloud gateway pool {} exists", command.name.as_str()),
                        Some(Resource {
                            type_: ResourceType::CloudGatewayPool,
                            id,
                        }),
                    ),
                    None => give_up(format!(
                        "no cloud gateway pool {} appeared",
                        command.name.as_str()
                    )),
                })
            }
            Operation::DeleteCloudGateway | Operation::DeleteCloudGatewayPool => {
                let Some(id) = target else {
                    return Ok(decided(
                        TaskState::Failed,
                        "the task names no object".into(),
                        None,
                    ));
                };
                let kind = task.operation.resource_type();
                let exists = match kind {
                    ResourceType::CloudGateway => self.em.cloud_gateway(id).await?.is_some(),
                    ResourceType::CloudGatewayPool => {
                        self.em.cloud_gateway_pool(id).await?.is_some()
                    }
                };
                Ok(if exists {
                    give_up(format!(
                        "{} {id} still exists",
                        kind.as_str().replace('_', " ")
                    ))
                } else {
                    decided(
                        TaskState::Succeeded,
                        format!("{} {id} no longer exists", kind.as_str().replace('_', " ")),
                        resource(kind),
                    )
                })
            }
            Operation::UpdateCloudGateway => {
                let (Some(id), Ok(change)) = (
                    target,
                    serde_json::from_str::<CloudGatewayChange>(&task.request),
                ) else {
                    return Ok(decided(
                        TaskState::Failed,
                        "the stored request is unreadable".into(),
                        None,
                    ));
                };
                Ok(match self.em.cloud_gateway(id).await? {
                    None => decided(
                        TaskState::Failed,
                        format!("cloud gateway {id} no longer exists"),
                        None,
                    ),
                    Some(g) if gateway_matches(&g, &change) => decided(
                        TaskState::Succeeded,
                        format!("cloud gateway {id} has the requested settings"),
                        resource(ResourceType::CloudGateway),
                    ),
                    Some(_) => give_up(format!(
                        "cloud gateway {id} did not take the requested settings"
                    )),
                })
            }
            Operation::UpdateCloudGatewayPool => {
                let (Some(id), Ok(change)) = (
                    target,
                    serde_json::from_str::<CloudGatewayPoolChange>(&task.request),
                ) else {
                    return Ok(decided(
                        TaskState::Failed,
                        "the stored request is unreadable".into(),
                        None,
                    ));
                };
                Ok(match self.em.cloud_gateway_pool(id).await? {
                    None => decided(
                        TaskState::Failed,
                        format!("cloud gateway pool {id} no longer exists"),
                        None,
                    ),
                    Some(p) if pool_matches(&p, &change) => decided(
                        TaskState::Succeeded,
                        format!("cloud gateway pool {id} has the requested settings"),
                        resource(ResourceType::CloudGatewayPool),
                    ),
                    Some(_) => give_up(format!(
                        "cloud gateway pool {id} did not take the requested settings"
                    )),
                })
            }
        }
    }
}

/// How EM's finished task ends ours.
fn from_em_result(task: &InFlight, em_task: &xml::Task) -> Settlement {
    let result = em_task.result.as_ref();
    let success = result.is_some_and(|r| r.success);
    if !success {
        let message = result
            .and_then(|r| r.message.clone())
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| "Enterprise Manager reported a failure without a message".into());
        return Settlement {
            state: TaskState::Failed,
            message: Some(message),
            resource: None,
        };
    }
    let kind = task.operation.resource_type();
    let resource = match task.target_id {
        Some(id) => Some(Resource { type_: kind, id }),
        // A create names its new object only in the Related link.
        None => em_task
            .links
            .find("Related", Some(kind.em_name()))
            .and_then(|l| Uuid::parse_str(xml::id_of(&l.href)).ok())
            .map(|id| Resource { type_: kind, id }),
    };
    Settlement {
        state: TaskState::Succeeded,
        message: None,
        resource,
    }
}

fn uid_guid(uid: &str) -> Option<Uuid> {
    Uuid::parse_str(xml::id_of(uid)).ok()
}

fn backup_server_of(links: &xml::Links) -> Option<Uuid> {
    links
        .find("Up", Some("BackupServerReference"))
        .and_then(|l| Uuid::parse_str(xml::id_of(&l.href)).ok())
}

fn gateway_matches(g: &xml::CloudGateway, c: &CloudGatewayChange) -> bool {
    let network_ok = match &c.network {
        None => true,
        Some(Network::Direct) => g.network_mode == xml::NetworkMode::Direct,
        Some(Network::Nat { external_ip }) => {
            g.network_mode == xml::NetworkMode::Nat
                && g.external_ip
                    .as_deref()
                    .is_some_and(|ip| ip.eq_ignore_ascii_case(external_ip.as_str()))
        }
    };
    network_ok
        && c.enabled.is_none_or(|e| g.enabled == Some(e))
        && c.external_port
            .is_none_or(|p| g.external_port == Some(p.get()))
        && c.internal_port
            .is_none_or(|p| g.internal_port == Some(p.get()))
        && c.description
            .as_ref()
            .is_none_or(|d| g.description.as_deref().unwrap_or("") == d.as_str())
}

fn pool_matches(p: &xml::CloudGatewayPool, c: &CloudGatewayPoolChange) -> bool {
    let same = |have: &[String], want: Vec<Uuid>| {
        let mut have: Vec<Uuid> = have.iter().filter_map(|u| uid_guid(u)).collect();
        let mut want = want;
        have.sort();
        want.sort();
        have == want
    };
    c.name.as_ref().is_none_or(|n| p.name == n.as_str())
        && c.description
            .as_ref()
            .is_none_or(|d| p.description.as_deref().unwrap_or("") == d.as_str())
        && c.gateways
            .as_ref()
            .is_none_or(|g| same(&p.cloud_gateways.uids, g.iter().map(|u| u.id()).collect()))
        && c.tenants
            .as_ref()
            .is_none_or(|t| same(&p.cloud_tenants.uids, t.iter().map(|u| u.id()).collect()))
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 120 {
        format!("{} minutes", s / 60)
    } else if s >= 1 {
        format!("{s} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// EM's object lists, fetched at most once per tick however many orphans need them.
#[derive(Default)]
struct EmView {
    gateways: Option<Vec<xml::CloudGateway>>,
    pools: Option<Vec<xml::CloudGatewayPool>>,
}

impl EmView {
    async fn gateways(&mut self, em: &EmClient) -> Result<&[xml::CloudGateway], EmError> {
        if self.gateways.is_none() {
            self.gateways = Some(em.cloud_gateways().await?);
        }
        Ok(self.gateways.as_deref().unwrap_or_default())
    }

    async fn pools(&mut self, em: &EmClient) -> Result<&[xml::CloudGatewayPool], EmError> {
        if self.pools.is_none() {
            self.pools = Some(em.cloud_gateway_pools().await?);
        }
        Ok(self.pools.as_deref().unwrap_or_default())
    }
}

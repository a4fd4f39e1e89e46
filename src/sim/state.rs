//! What the simulated Enterprise Manager knows: backup servers, repositories, WAN
//! accelerators, tenants and their quotas, cloud gateways and pools, logon sessions and their
//! tasks, and operations in flight.
//!
//! Operations are applied lazily: every request first calls [`World::advance`], which applies
//! each operation whose time has come, in order. That keeps the simulator deterministic and free
//! of timers, and an operation still completes after its session is gone (as on a real EM, where
//! the backup server does the work whoever is watching).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod tenants;

pub use tenants::{
    MB, NewTenant, Quota, QuotaChange, Repository, RepositoryKind, Tenant, TenantChange,
    ThrottlingUnit, UsedError, WanAccelerator,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    Direct,
    #[serde(rename = "NAT")]
    Nat,
}

impl NetworkMode {
    pub fn as_em(&self) -> &'static str {
        match self {
            NetworkMode::Direct => "Direct",
            NetworkMode::Nat => "NAT",
        }
    }

    pub fn from_em(text: &str) -> Option<Self> {
        match text {
            "Direct" => Some(NetworkMode::Direct),
            "NAT" => Some(NetworkMode::Nat),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupServer {
    pub id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_backup_port")]
    pub port: u16,
    #[serde(default = "default_version")]
    pub version: String,
    /// Servers that can take the gateway role. `None`: any host name is a managed server.
    #[serde(default)]
    pub managed_servers: Option<Vec<String>>,
}

fn default_backup_port() -> u16 {
    9392
}

pub(super) fn default_version() -> String {
    "13.0.1.1071".into()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub id: Uuid,
    pub created: u64,
    pub backup_server: Uuid,
    pub name: String,
    pub enabled: bool,
    pub network_mode: NetworkMode,
    pub external_ip: String,
    pub external_port: u16,
    pub internal_port: u16,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub id: Uuid,
    pub created: u64,
    pub backup_server: Uuid,
    pub name: String,
    pub description: String,
    pub gateways: Vec<Uuid>,
    pub tenants: Vec<Uuid>,
}

/// A change to a gateway, as read from a PUT: `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayChange {
    pub enabled: Option<bool>,
    pub network_mode: Option<NetworkMode>,
    pub external_ip: Option<String>,
    pub external_port: Option<u16>,
    pub internal_port: Option<u16>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub gateways: Vec<Uuid>,
    pub tenants: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    CreateGateway(Gateway),
    EditGateway(Uuid, GatewayChange),
    DeleteGateway(Uuid),
    CreatePool(Pool),
    EditPool(Uuid, PoolChange),
    DeletePool(Uuid),
    CreateTenant(Box<NewTenant>),
    EditTenant(Uuid, Box<TenantChange>),
    DeleteTenant { id: Uuid, include_backups: bool },
    CreateQuota(Uuid, Quota),
    DeleteQuota(Uuid, Uuid),
}

impl Change {
    /// EM's `Operation` name.
    pub fn operation(&self) -> &'static str {
        match self {
            Change::CreateGateway(_) => "CreateCloudGateway",
            Change::EditGateway(..) => "EditCloudGateway",
            Change::DeleteGateway(_) => "DeleteCloudGateway",
            Change::CreatePool(_) => "CreateCloudGatewayPool",
            Change::EditPool(..) => "UpdateCloudGatewayPool",
            Change::DeletePool(_) => "DeleteCloudGatewayPool",
            Change::CreateTenant(_) => "CreateCloudTenant",
            Change::EditTenant(..) => "EditCloudTenant",
            Change::DeleteTenant { .. } => "DeleteCloudTenant",
            Change::CreateQuota(..) => "CreateCloudTenantResource",
            Change::DeleteQuota(..) => "DeleteCloudTenantResource",
        }
    }
}

/// What a finished operation links to (`Related` link), as a path below `/api`.
#[derive(Debug, Clone, PartialEq)]
pub struct Related {
    pub type_: &'static str,
    pub path: String,
    /// The link's `Name`: empty for gateways and pools, the tenant's name for tenant work.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Option<Related>),
    Failed(String),
}

#[derive(Debug)]
pub struct Operation {
    pub name: &'static str,
    pub due: Instant,
    change: Option<Change>,
    forced_failure: Option<String>,
    pub outcome: Option<(Instant, Outcome)>,
}

#[derive(Debug)]
pub struct Session {
    pub session_id: Uuid,
    pub user: String,
    pub last_used: Instant,
    pub tasks: BTreeMap<u64, u64>,
    next_task: u64,
}

/// A task as a session sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub number: u64,
    pub operation: &'static str,
    pub state: &'static str,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counters {
    /// Logons that made a session.
    pub logons: u64,
    /// Logons refused with 401 (wrong or missing credentials): what locks an account out.
    pub logons_refused: u64,
    pub requests: u64,
    pub requests_by_route: BTreeMap<String, u64>,
    /// Requests answered by fault injection (`error_rate`, `error_next`) before anything was
    /// done; not in `requests`.
    pub requests_failed_by_fault: u64,
    /// Requests refused with 400: bodies or parameters EM would not take.
    pub protocol_violations: u64,
    /// Accepted but worth knowing: legacy elements, echoed output-only elements, 501s for
    /// what the simulator does not model.
    pub advisories: BTreeMap<String, u64>,
}

pub struct World {
    pub backup_servers: Vec<BackupServer>,
    pub repositories: Vec<Repository>,
    pub wan_accelerators: Vec<WanAccelerator>,
    repository_index: HashMap<Uuid, usize>,
    wan_index: HashMap<Uuid, usize>,
    tenants: HashMap<Uuid, Tenant>,
    gateways: HashMap<Uuid, Gateway>,
    pools: HashMap<Uuid, Pool>,
    // Indexes, so that every check of a create or edit costs O(1) whatever the world holds.
    // Only `insert_*`/`remove_*` touch the maps above, and they keep these in step.
    /// (backup server, lower-case host name) → gateway.
    gateway_hosts: HashMap<(Uuid, String), Uuid>,
    /// (backup server, lower-case pool name) → pool.
    pool_names: HashMap<(Uuid, String), Uuid>,
    /// gateway → the one pool it is in.
    gateway_pool: HashMap<Uuid, Uuid>,
    /// (backup server, lower-case tenant name) → tenant.
    tenant_names: HashMap<(Uuid, String), Uuid>,
    /// tenant → the pools it is assigned to.
    tenant_pools: HashMap<Uuid, HashSet<Uuid>>,
    /// repository → MB of backups that deletes without `includeBackups` left on it.
    left_behind_mb: HashMap<Uuid, i64>,
    /// The time of the latest request: what EM has collected by now is visible.
    clock: Instant,
    sessions: HashMap<String, Session>,
    operations: HashMap<u64, Operation>,
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    next_operation: u64,
    next_created: u64,
    pub counters: Counters,
    pub session_idle: Duration,
    pub task_time: Duration,
    pub operation_finished_time: Duration,
}

impl World {
    /// A world holding these objects (a [`Seed`](super::Seed)'s), with no sessions yet.
    pub fn new(
        backup_servers: Vec<BackupServer>,
        tenants: Vec<Tenant>,
        repositories: Vec<Repository>,
        wan_accelerators: Vec<WanAccelerator>,
        session_idle: Duration,
        task_time: Duration,
    ) -> Self {
        let index = |ids: Vec<Uuid>| ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect();
        let mut world = World {
            repository_index: index(repositories.iter().map(|r| r.id).collect()),
            wan_index: index(wan_accelerators.iter().map(|w| w.id).collect()),
            backup_servers,
            repositories,
            wan_accelerators,
            tenants: HashMap::new(),
            tenant_names: HashMap::new(),
            tenant_pools: HashMap::new(),
            left_behind_mb: HashMap::new(),
            clock: Instant::now(),
            gateways: HashMap::new(),
            pools: HashMap::new(),
            gateway_hosts: HashMap::new(),
            pool_names: HashMap::new(),
            gateway_pool: HashMap::new(),
            sessions: HashMap::new(),
            operations: HashMap::new(),
            due: BinaryHeap::new(),
            next_operation: 1,
            next_created: 1,
            counters: Counters::default(),
            session_idle,
            task_time,
            operation_finished_time: Duration::ZERO,
        };
        for mut tenant in tenants {
            tenant.created = world.next_created();
            world.insert_tenant(tenant);
        }
        world
    }

    // -- sessions ------------------------------------------------------------------------------

    /// A new logon session: a random `SessionId` and a distinct opaque token.
    pub fn log_on(&mut self, user: &str, now: Instant) -> (String, Uuid) {
        let session_id = Uuid::new_v4();
        let token = base64::engine::general_purpose::STANDARD.encode(Uuid::new_v4().to_string());
        self.sessions.insert(
            token.clone(),
            Session {
                session_id,
                user: user.to_string(),
                last_used: now,
                tasks: BTreeMap::new(),
                next_task: 1,
            },
        );
        self.counters.logons += 1;
        (token, session_id)
    }

    /// The session of a token, if it exists and has not idled out; using it resets its idle
    /// clock. An expired session is dropped with its tasks.
    pub fn session(&mut self, token: &str, now: Instant) -> Option<&mut Session> {
        let expired = self
            .sessions
            .get(token)
            .is_some_and(|s| now.duration_since(s.last_used) > self.session_idle);
        if expired {
            self.sessions.remove(token);
            return None;
        }
        let session = self.sessions.get_mut(token)?;
        session.last_used = now;
        Some(session)
    }

    pub fn sessions_of(&self, user: &str) -> Vec<(Uuid, String)> {
        let mut list: Vec<(Uuid, String)> = self
            .sessions
            .values()
            .filter(|s| s.user == user)
            .map(|s| (s.session_id, s.user.clone()))
            .collect();
        list.sort();
        list
    }

    pub fn log_off(&mut self, session_id: Uuid) -> bool {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| s.session_id != session_id);
        before != self.sessions.len()
    }

    pub fn expire_all_sessions(&mut self) -> usize {
        let n = self.sessions.len();
        self.sessions.clear();
        n
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn operations_pending(&self) -> usize {
        self.due.len()
    }

    // -- tasks ---------------------------------------------------------------------------------

    /// Starts an operation in a session: its task is `task-N` of that session.
    pub fn start(
        &mut self,
        token: &str,
        change: Change,
        forced_failure: Option<String>,
        now: Instant,
    ) -> Option<TaskView> {
        let id = self.next_operation;
        let due = now + self.task_time;
        let name = change.operation();
        let session = self.sessions.get_mut(token)?;
        self.next_operation += 1;
        let number = session.next_task;
        session.next_task += 1;
        session.tasks.insert(number, id);
        self.operations.insert(
            id,
            Operation {
                name,
                due,
                change: Some(change),
                forced_failure,
                outcome: None,
            },
        );
        self.due.push(Reverse((due, id)));
        Some(TaskView {
            number,
            operation: name,
            state: "Running",
            outcome: None,
        })
    }

    pub fn tasks_of(&self, token: &str, now: Instant) -> Vec<TaskView> {
        let Some(session) = self.sessions.get(token) else {
            return Vec::new();
        };
        session
            .tasks
            .iter()
            .filter_map(|(number, op)| self.view(*number, *op, now))
            .collect()
    }

    pub fn task_of(&self, token: &str, number: u64, now: Instant) -> Option<TaskView> {
        let op = *self.sessions.get(token)?.tasks.get(&number)?;
        self.view(number, op, now)
    }

    pub fn remove_task(&mut self, token: &str, number: u64) -> bool {
        self.sessions
            .get_mut(token)
            .is_some_and(|s| s.tasks.remove(&number).is_some())
    }

    fn view(&self, number: u64, op: u64, now: Instant) -> Option<TaskView> {
        let op = self.operations.get(&op)?;
        let (state, outcome) = match &op.outcome {
            None => ("Running", None),
            Some((at, outcome)) if now < *at + self.operation_finished_time => {
                ("OperationFinished", Some(outcome.clone()))
            }
            Some((_, outcome)) => ("Finished", Some(outcome.clone())),
        };
        Some(TaskView {
            number,
            operation: op.name,
            state,
            outcome,
        })
    }

    /// Applies every operation that is due, oldest first.
    pub fn advance(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        while let Some(Reverse((due, id))) = self.due.peek().copied() {
            if due > now {
                break;
            }
            self.due.pop();
            let Some(op) = self.operations.get_mut(&id) else {
                continue;
            };
            let change = op.change.take();
            let forced = op.forced_failure.take();
            let outcome = match (forced, change) {
                (Some(message), _) => Outcome::Failed(message),
                (None, Some(change)) => self.apply(change, due),
                (None, None) => continue,
            };
            if let Some(op) = self.operations.get_mut(&id) {
                op.outcome = Some((due, outcome));
            }
        }
    }

    /// Forgets sessions and tasks; objects stay, and operations under way still complete.
    pub fn restart(&mut self) {
        self.sessions.clear();
    }

    // -- objects -------------------------------------------------------------------------------

    pub fn backup_server(&self, id: Uuid) -> Option<&BackupServer> {
        self.backup_servers.iter().find(|b| b.id == id)
    }

    pub fn backup_server_by_name(&self, name: &str) -> Option<&BackupServer> {
        self.backup_servers
            .iter()
            .find(|b| b.name.eq_ignore_ascii_case(name))
    }

    pub fn gateway(&self, id: Uuid) -> Option<&Gateway> {
        self.gateways.get(&id)
    }

    pub fn pool(&self, id: Uuid) -> Option<&Pool> {
        self.pools.get(&id)
    }

    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    pub fn gateways_sorted(&self) -> Vec<&Gateway> {
        let mut list: Vec<&Gateway> = self.gateways.values().collect();
        list.sort_by_key(|g| g.created);
        list
    }

    pub fn pools_sorted(&self) -> Vec<&Pool> {
        let mut list: Vec<&Pool> = self.pools.values().collect();
        list.sort_by_key(|p| p.created);
        list
    }

    pub fn pool_of_gateway(&self, gateway: Uuid) -> Option<&Pool> {
        self.gateway_pool
            .get(&gateway)
            .and_then(|p| self.pools.get(p))
    }

    /// Adds `count` gateways to the first backup server at once, as if created long ago (for
    /// benchmarks of a large EM); answers how many were added.
    pub fn fill_gateways(&mut self, count: usize) -> usize {
        let Some(server) = self.backup_servers.first().map(|b| b.id) else {
            return 0;
        };
        let run = Uuid::new_v4().simple().to_string();
        let run = &run[..8];
        self.gateways.reserve(count);
        self.gateway_hosts.reserve(count);
        for i in 0..count {
            let name = format!("fill-{run}-{i}.sim");
            let gateway = Gateway {
                id: Uuid::new_v4(),
                created: self.next_created(),
                backup_server: server,
                external_ip: name.clone(),
                name,
                enabled: true,
                network_mode: NetworkMode::Direct,
                external_port: 6180,
                internal_port: 6180,
                description: "Added by /_sim/gateways/fill".into(),
            };
            self.insert_gateway(gateway);
        }
        count
    }

    fn insert_gateway(&mut self, gateway: Gateway) {
        self.gateway_hosts
            .insert(name_key(gateway.backup_server, &gateway.name), gateway.id);
        self.gateways.insert(gateway.id, gateway);
    }

    fn remove_gateway(&mut self, id: Uuid) -> Option<Gateway> {
        let gateway = self.gateways.remove(&id)?;
        self.gateway_hosts
            .remove(&name_key(gateway.backup_server, &gateway.name));
        Some(gateway)
    }

    /// Adds a pool or replaces the one with its id.
    fn insert_pool(&mut self, pool: Pool) {
        self.remove_pool(pool.id);
        self.pool_names
            .insert(name_key(pool.backup_server, &pool.name), pool.id);
        for g in &pool.gateways {
            self.gateway_pool.insert(*g, pool.id);
        }
        for t in &pool.tenants {
            self.tenant_pools.entry(*t).or_default().insert(pool.id);
        }
        self.pools.insert(pool.id, pool);
    }

    fn remove_pool(&mut self, id: Uuid) -> Option<Pool> {
        let pool = self.pools.remove(&id)?;
        self.pool_names
            .remove(&name_key(pool.backup_server, &pool.name));
        for g in &pool.gateways {
            if self.gateway_pool.get(g) == Some(&id) {
                self.gateway_pool.remove(g);
            }
        }
        for t in &pool.tenants {
            if let Some(pools) = self.tenant_pools.get_mut(t) {
                pools.remove(&id);
            }
        }
        Some(pool)
    }

    pub fn advise(&mut self, what: String) {
        *self.counters.advisories.entry(what).or_default() += 1;
    }

    pub fn next_created(&mut self) -> u64 {
        self.next_created += 1;
        self.next_created
    }

    fn apply(&mut self, change: Change, at: Instant) -> Outcome {
        match self.try_apply(change, at) {
            Ok(related) => Outcome::Succeeded(related),
            Err(message) => Outcome::Failed(message),
        }
    }

    /// EM's business rules, checked when the operation runs (not when it is accepted).
    fn try_apply(&mut self, change: Change, at: Instant) -> Result<Option<Related>, String> {
        match change {
            Change::CreateGateway(gateway) => {
                let server = self
                    .backup_server(gateway.backup_server)
                    .ok_or("Backup server was not found.")?;
                if let Some(managed) = &server.managed_servers
                    && !managed
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(&gateway.name))
                {
                    return Err(format!(
                        "Server {} is not added to the backup infrastructure.",
                        gateway.name
                    ));
                }
                if self
                    .gateway_hosts
                    .contains_key(&name_key(gateway.backup_server, &gateway.name))
                {
                    return Err(format!(
                        "Server {} is already a cloud gateway.",
                        gateway.name
                    ));
                }
                let id = gateway.id;
                self.insert_gateway(gateway);
                Ok(Some(Related {
                    type_: "CloudGateway",
                    path: format!("cloud/gateways/{id}?format=Entity"),
                    name: String::new(),
                }))
            }
            Change::EditGateway(id, change) => {
                let gateway = self
                    .gateways
                    .get_mut(&id)
                    .ok_or_else(|| format!("Cloud gateway [{id}] was not found."))?;
                let mut next = gateway.clone();
                if let Some(v) = change.enabled {
                    next.enabled = v;
                }
                if let Some(v) = change.network_mode {
                    next.network_mode = v;
                }
                if let Some(v) = change.external_ip {
                    next.external_ip = v;
                }
                if let Some(v) = change.external_port {
                    next.external_port = v;
                }
                if let Some(v) = change.internal_port {
                    next.internal_port = v;
                }
                if let Some(v) = change.description {
                    next.description = v;
                }
                if next.network_mode == NetworkMode::Nat && next.external_ip.is_empty() {
                    return Err("External IP address must be specified for NAT mode.".into());
                }
                *gateway = next;
                Ok(None)
            }
            Change::DeleteGateway(id) => {
                let gateway = self
                    .gateways
                    .get(&id)
                    .ok_or_else(|| format!("Cloud gateway [{id}] was not found."))?;
                if let Some(pool) = self.pool_of_gateway(id) {
                    return Err(format!(
                        "Cloud gateway {} is a member of cloud gateway pool {}. Remove it from the pool first.",
                        gateway.name, pool.name
                    ));
                }
                self.remove_gateway(id);
                Ok(None)
            }
            Change::CreatePool(pool) => {
                self.check_pool(
                    None,
                    pool.backup_server,
                    &pool.name,
                    &pool.gateways,
                    &pool.tenants,
                )?;
                let id = pool.id;
                self.insert_pool(pool);
                Ok(Some(Related {
                    type_: "CloudGatewayPool",
                    path: format!("cloud/gatewayPools/{id}?format=Entity"),
                    name: String::new(),
                }))
            }
            Change::EditPool(id, change) => {
                let pool = self
                    .pools
                    .get(&id)
                    .ok_or_else(|| format!("Cloud gateway pool [{id}] was not found."))?;
                let name = change.name.clone().unwrap_or_else(|| pool.name.clone());
                let server = pool.backup_server;
                self.check_pool(Some(id), server, &name, &change.gateways, &change.tenants)?;
                let mut next = pool.clone();
                next.name = name;
                if let Some(d) = change.description {
                    next.description = d;
                }
                next.gateways = change.gateways;
                next.tenants = change.tenants;
                self.insert_pool(next);
                Ok(None)
            }
            Change::DeletePool(id) => {
                self.remove_pool(id)
                    .ok_or_else(|| format!("Cloud gateway pool [{id}] was not found."))?;
                Ok(Some(Related {
                    type_: "CloudGatewayPoolList",
                    path: "cloud/gatewayPools?format=Entity".into(),
                    name: String::new(),
                }))
            }
            Change::CreateTenant(new) => self.create_tenant(*new, at).map(Some),
            Change::EditTenant(id, change) => self.edit_tenant(id, *change).map(Some),
            Change::DeleteTenant {
                id,
                include_backups,
            } => self.delete_tenant(id, include_backups).map(|()| None),
            Change::CreateQuota(tenant, quota) => self.create_quota(tenant, quota, at).map(Some),
            Change::DeleteQuota(tenant, quota) => self.delete_quota(tenant, quota).map(|()| None),
        }
    }

    fn check_pool(
        &self,
        this: Option<Uuid>,
        server: Uuid,
        name: &str,
        gateways: &[Uuid],
        tenants: &[Uuid],
    ) -> Result<(), String> {
        if let Some(other) = self.pool_names.get(&name_key(server, name))
            && Some(*other) != this
        {
            return Err("Cloud gateway pool name must be unique.".into());
        }
        for id in gateways {
            let gateway = self.gateways.get(id).ok_or_else(|| {
                format!("Cloud gateway [urn:veeam:CloudGateway:{id}] was not found.")
            })?;
            if gateway.backup_server != server {
                return Err(format!(
                    "Cloud gateway {} belongs to another backup server.",
                    gateway.name
                ));
            }
            if let Some(other) = self.pool_of_gateway(*id).filter(|p| Some(p.id) != this) {
                return Err(format!(
                    "Cloud gateway {} is already included in cloud gateway pool {}.",
                    gateway.name, other.name
                ));
            }
        }
        for id in tenants {
            if !self.tenants.contains_key(id) {
                return Err(format!(
                    "Cloud tenant [urn:veeam:CloudTenant:{id}] was not found."
                ));
            }
        }
        Ok(())
    }
}

/// Names compare as EM compares them: ASCII case-insensitively, per backup server.
fn name_key(server: Uuid, name: &str) -> (Uuid, String) {
    (server, name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(server: Uuid, name: String) -> Gateway {
        Gateway {
            id: Uuid::new_v4(),
            created: 0,
            backup_server: server,
            name,
            enabled: true,
            network_mode: NetworkMode::Direct,
            external_ip: String::new(),
            external_port: 6180,
            internal_port: 6180,
            description: String::new(),
        }
    }

    fn world() -> World {
        let seed = crate::sim::Seed::default();
        World::new(
            seed.backup_servers,
            seed.tenants,
            seed.repositories,
            seed.wan_accelerators,
            Duration::from_secs(900),
            Duration::ZERO,
        )
    }

    /// `n` gateway, pool and tenant creates (each pool takes a gateway just made, each tenant
    /// a quota and that pool), through the task engine; returns the time taken and checks every
    /// one succeeded.
    fn creates(world: &mut World, n: usize) -> Duration {
        let server = world.backup_servers[0].id;
        let now = Instant::now();
        let (token, _) = world.log_on("u", now);
        let run = Uuid::new_v4();
        let started = Instant::now();
        for i in 0..n {
            let g = gateway(server, format!("New-{i}.{run}.example"));
            let gid = g.id;
            world.start(&token, Change::CreateGateway(g), None, now);
            let pid = Uuid::new_v4();
            let pool = Pool {
                id: pid,
                created: 0,
                backup_server: server,
                name: format!("new pool {i} {run}"),
                description: String::new(),
                gateways: vec![gid],
                tenants: vec![],
            };
            world.start(&token, Change::CreatePool(pool), None, now);
            let mut tenant = Tenant::new(Uuid::new_v4(), &format!("Tenant {i} {run}"), server);
            tenant.resources.push(Quota {
                id: Uuid::new_v4(),
                name: "Cloud".into(),
                repository: world.repositories[0].id,
                wan_accelerator: None,
                quota_mb: 1024,
                used_mb: 0,
                visible_at: None,
            });
            let pools = vec![pid];
            world.start(
                &token,
                Change::CreateTenant(Box::new(NewTenant { tenant, pools })),
                None,
                now,
            );
            world.advance(now);
        }
        let elapsed = started.elapsed();
        let failed = world
            .tasks_of(&token, now)
            .into_iter()
            .filter(|t| !matches!(t.outcome, Some(Outcome::Succeeded(_))))
            .count();
        assert_eq!(failed, 0);
        elapsed
    }

    #[test]
    fn create_checks_do_not_grow_with_the_world() {
        let mut big = world();
        let server = big.backup_servers[0].id;
        for i in 0..100_000 {
            let g = gateway(server, format!("gw-{i}.example"));
            let id = g.id;
            big.insert_gateway(g);
            big.insert_tenant(Tenant::new(Uuid::new_v4(), &format!("tenant-{i}"), server));
            if i % 2 == 0 {
                big.insert_pool(Pool {
                    id: Uuid::new_v4(),
                    created: 0,
                    backup_server: server,
                    name: format!("pool {i}"),
                    description: String::new(),
                    gateways: vec![id],
                    tenants: vec![],
                });
            }
        }
        // The best of three runs each, so that a busy machine does not decide the outcome.
        let best = |w: &mut World| (0..3).map(|_| creates(w, 1000)).min().unwrap_or_default();
        let empty = best(&mut world());
        let full = best(&mut big);
        eprintln!(
            "1000 gateway + 1000 pool + 1000 tenant creates: empty world {empty:?}, 100,000 gateways, 50,000 pools and 100,000 tenants {full:?}"
        );
        // A scan of 100,000 gateways per create made this about 130 times slower.
        assert!(
            full < empty * 5 + Duration::from_millis(50),
            "empty {empty:?}, full {full:?}"
        );
    }

    #[test]
    fn indexes_follow_renames_and_deletes() {
        let mut w = world();
        let server = w.backup_servers[0].id;
        let now = Instant::now();
        let (token, _) = w.log_on("u", now);
        let g = gateway(server, "GW.example".into());
        let gid = g.id;
        w.start(&token, Change::CreateGateway(g), None, now);
        let again = gateway(server, "gw.EXAMPLE".into());
        w.start(&token, Change::CreateGateway(again), None, now);
        let pid = Uuid::new_v4();
        let pool = Pool {
            id: pid,
            created: 0,
            backup_server: server,
            name: "EU".into(),
            description: String::new(),
            gateways: vec![gid],
            tenants: vec![],
        };
        w.start(&token, Change::CreatePool(pool), None, now);
        let rename = PoolChange {
            name: Some("US".into()),
            description: None,
            gateways: vec![],
            tenants: vec![],
        };
        w.start(&token, Change::EditPool(pid, rename), None, now);
        w.advance(now);
        let outcomes: Vec<bool> = w
            .tasks_of(&token, now)
            .iter()
            .map(|t| matches!(t.outcome, Some(Outcome::Succeeded(_))))
            .collect();
        assert_eq!(
            outcomes,
            [true, false, true, true],
            "a host is a gateway once"
        );
        assert!(w.pool_of_gateway(gid).is_none(), "left the pool on edit");
        assert_eq!(w.pool_names.get(&name_key(server, "us")), Some(&pid));
        assert!(!w.pool_names.contains_key(&name_key(server, "eu")));
        w.start(&token, Change::DeleteGateway(gid), None, now);
        w.advance(now);
        assert!(w.gateway_hosts.is_empty() && w.gateways.is_empty());
    }

    #[test]
    fn duplicates_are_refused_again_after_a_delete_and_a_new_create() {
        let mut w = world();
        let server = w.backup_servers[0].id;
        let now = Instant::now();
        let (token, _) = w.log_on("u", now);
        let ok = |w: &mut World, change: Change| {
            let number = w.start(&token, change, None, now).map(|t| t.number);
            w.advance(now);
            let outcome = number.and_then(|n| w.task_of(&token, n, now));
            matches!(outcome.and_then(|t| t.outcome), Some(Outcome::Succeeded(_)))
        };
        let g = gateway(server, "Again.example".into());
        let gid = g.id;
        assert!(ok(&mut w, Change::CreateGateway(g)));
        assert!(ok(&mut w, Change::DeleteGateway(gid)));
        let host = |name: &str| Change::CreateGateway(gateway(server, name.into()));
        assert!(
            ok(&mut w, host("again.EXAMPLE")),
            "a deleted host may be a gateway again"
        );
        assert!(!ok(&mut w, host("AGAIN.example")), "once only");

        let pool = |name: &str| Pool {
            id: Uuid::new_v4(),
            created: 0,
            backup_server: server,
            name: name.into(),
            description: String::new(),
            gateways: vec![],
            tenants: vec![],
        };
        let first = pool("EU");
        let pid = first.id;
        assert!(ok(&mut w, Change::CreatePool(first)));
        assert!(ok(&mut w, Change::DeletePool(pid)));
        assert!(
            ok(&mut w, Change::CreatePool(pool("eu"))),
            "a deleted pool's name is free"
        );
        assert!(!ok(&mut w, Change::CreatePool(pool("Eu"))), "once only");

        let tenant = |name: &str| {
            Change::CreateTenant(Box::new(NewTenant {
                tenant: Tenant::new(Uuid::new_v4(), name, server),
                pools: vec![],
            }))
        };
        let Change::CreateTenant(new) = tenant("Initech") else {
            unreachable!()
        };
        let tid = new.tenant.id;
        assert!(ok(&mut w, Change::CreateTenant(new)));
        let delete = Change::DeleteTenant {
            id: tid,
            include_backups: true,
        };
        assert!(ok(&mut w, delete));
        assert!(
            ok(&mut w, tenant("INITECH")),
            "a deleted tenant's name is free"
        );
        assert!(!ok(&mut w, tenant("initech")), "once only");

        // Gateways added in bulk are indexed like any other.
        assert_eq!(w.fill_gateways(1000), 1000);
        let filled = w
            .gateways_sorted()
            .iter()
            .map(|g| g.name.to_uppercase())
            .find(|n| n.starts_with("FILL-"))
            .unwrap_or_default();
        assert!(!ok(&mut w, host(&filled)), "{filled} is already a gateway");
        assert!(ok(&mut w, host("new-after-fill.example")));
    }
}

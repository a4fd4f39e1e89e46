//! Cloud Connect tenants, their storage quotas ("backup resources") and the repositories and
//! WAN accelerators quotas use (em-api.md §16), with the business rules EM reports in a
//! failed task.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Related, World, name_key};
use crate::sim::password::PasswordHash;

/// Bytes in one of Veeam's MB.
pub const MB: i64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ThrottlingUnit {
    #[default]
    Mbps,
    KBps,
    MBps,
}

impl ThrottlingUnit {
    pub const EM: &'static [&'static str] = &["Mbps", "KBps", "MBps"];

    pub fn as_em(&self) -> &'static str {
        match self {
            ThrottlingUnit::Mbps => "Mbps",
            ThrottlingUnit::KBps => "KBps",
            ThrottlingUnit::MBps => "MBps",
        }
    }

    /// Case matters: `Mbps` (bits) and `MBps` (bytes) differ only in it.
    pub fn from_em(text: &str) -> Option<Self> {
        match text {
            "Mbps" => Some(ThrottlingUnit::Mbps),
            "KBps" => Some(ThrottlingUnit::KBps),
            "MBps" => Some(ThrottlingUnit::MBps),
            _ => None,
        }
    }
}

/// EM's repository `Kind` values; a scale-out repository is `Extendable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RepositoryKind {
    #[default]
    WindowsLocal,
    LinuxLocal,
    CifsShare,
    DDBoost,
    Cloud,
    HPStoreOnce,
    ExaGrid,
    Foreign,
    SanSnapshot,
    HPStoreOnceIntegration,
    Extendable,
    Quantum,
    Nfs,
}

impl RepositoryKind {
    pub fn as_em(&self) -> &'static str {
        match self {
            RepositoryKind::WindowsLocal => "WindowsLocal",
            RepositoryKind::LinuxLocal => "LinuxLocal",
            RepositoryKind::CifsShare => "CifsShare",
            RepositoryKind::DDBoost => "DDBoost",
            RepositoryKind::Cloud => "Cloud",
            RepositoryKind::HPStoreOnce => "HPStoreOnce",
            RepositoryKind::ExaGrid => "ExaGrid",
            RepositoryKind::Foreign => "Foreign",
            RepositoryKind::SanSnapshot => "SanSnapshot",
            RepositoryKind::HPStoreOnceIntegration => "HPStoreOnceIntegration",
            RepositoryKind::Extendable => "Extendable",
            RepositoryKind::Quantum => "Quantum",
            RepositoryKind::Nfs => "Nfs",
        }
    }
}

/// A backup repository. Sizes in MB here (as quotas); EM reports them in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    pub id: Uuid,
    pub name: String,
    pub backup_server: Uuid,
    #[serde(default)]
    pub kind: RepositoryKind,
    pub capacity_mb: i64,
    /// Free space before any tenant's backups.
    pub free_mb: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WanAccelerator {
    pub id: Uuid,
    pub name: String,
    pub backup_server: Uuid,
}

/// A tenant's storage quota on one repository (EM: `CloudTenantResource`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quota {
    #[serde(default = "Uuid::new_v4")]
    pub id: Uuid,
    /// The friendly name the tenant sees (`DisplayName`).
    pub name: String,
    pub repository: Uuid,
    #[serde(default)]
    pub wan_accelerator: Option<Uuid>,
    pub quota_mb: i64,
    /// Space the tenant's backups take (set through the control API).
    #[serde(default)]
    pub used_mb: i64,
    /// Until then EM has not collected it: its task shows `OperationFinished`.
    #[serde(skip)]
    pub visible_at: Option<Instant>,
}

/// A standalone Cloud Connect tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub backup_server: Uuid,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub lease_expires: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resources: Vec<Quota>,
    #[serde(default)]
    pub throttling_enabled: bool,
    #[serde(default = "one")]
    pub throttling_speed_limit: i64,
    #[serde(default)]
    pub throttling_speed_unit: ThrottlingUnit,
    #[serde(default)]
    pub public_ip_count: i64,
    #[serde(default = "one")]
    pub max_concurrent_tasks: i64,
    #[serde(default)]
    pub backup_protection_enabled: bool,
    #[serde(default = "one")]
    pub backup_protection_period: i64,
    /// `None` until someone sets it: EM's captures show no element then.
    #[serde(default)]
    pub failover_to_others_gateways_if_fail: Option<bool>,
    #[serde(skip)]
    pub password: Option<PasswordHash>,
    #[serde(skip)]
    pub created: u64,
    #[serde(skip)]
    pub visible_at: Option<Instant>,
}

fn yes() -> bool {
    true
}

fn one() -> i64 {
    1
}

impl Tenant {
    /// A fresh tenant with EM's defaults.
    pub fn new(id: Uuid, name: &str, backup_server: Uuid) -> Self {
        Tenant {
            id,
            name: name.to_string(),
            backup_server,
            description: String::new(),
            enabled: true,
            lease_expires: None,
            resources: Vec::new(),
            throttling_enabled: false,
            throttling_speed_limit: 1,
            throttling_speed_unit: ThrottlingUnit::Mbps,
            public_ip_count: 0,
            max_concurrent_tasks: 1,
            backup_protection_enabled: false,
            backup_protection_period: 1,
            failover_to_others_gateways_if_fail: None,
            password: None,
            created: 0,
            visible_at: None,
        }
    }
}

/// A tenant to create, with the pools it joins.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    pub tenant: Tenant,
    pub pools: Vec<Uuid>,
}

/// A tenant PUT: `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantChange {
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub password: Option<PasswordHash>,
    /// `Some(None)`: no lease.
    pub lease: Option<Option<DateTime<Utc>>>,
    pub resources: Vec<QuotaChange>,
    pub throttling_enabled: Option<bool>,
    pub throttling_speed_limit: Option<i64>,
    pub throttling_speed_unit: Option<ThrottlingUnit>,
    pub public_ip_count: Option<i64>,
    pub max_concurrent_tasks: Option<i64>,
    pub backup_protection_enabled: Option<bool>,
    pub backup_protection_period: Option<i64>,
    /// The `TenantType` choice the body made when it is not `StandaloneTenant`.
    pub other_type: Option<String>,
    /// A full replacement; `Some([])` = no pools.
    pub pools: Option<Vec<Uuid>>,
    pub failover_to_others_gateways_if_fail: Option<bool>,
}

/// One `CloudTenantResource` of a tenant PUT.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaChange {
    pub id: Uuid,
    pub name: String,
    pub repository: Uuid,
    /// `None` keeps it; `Some(None)` (an empty element) removes it.
    pub wan_accelerator: Option<Option<Uuid>>,
    pub quota_mb: i64,
}

/// Why the control API cannot set a quota's used space.
#[derive(Debug, Clone, PartialEq)]
pub enum UsedError {
    NoTenant,
    NoQuota,
    Negative,
}

impl World {
    pub fn repository(&self, id: Uuid) -> Option<&Repository> {
        self.repository_index
            .get(&id)
            .and_then(|i| self.repositories.get(*i))
    }

    pub fn wan_accelerator(&self, id: Uuid) -> Option<&WanAccelerator> {
        self.wan_index
            .get(&id)
            .and_then(|i| self.wan_accelerators.get(*i))
    }

    /// Whether EM has collected an object created at `visible_at`.
    pub fn visible(&self, visible_at: Option<Instant>) -> bool {
        visible_at.is_none_or(|at| at <= self.clock)
    }

    /// A tenant as EM shows it (not one whose create task is still short of `Finished`).
    pub fn tenant(&self, id: Uuid) -> Option<&Tenant> {
        self.tenants.get(&id).filter(|t| self.visible(t.visible_at))
    }

    pub fn tenants_sorted(&self) -> Vec<&Tenant> {
        let mut list: Vec<&Tenant> = self
            .tenants
            .values()
            .filter(|t| self.visible(t.visible_at))
            .collect();
        list.sort_by_key(|t| t.created);
        list
    }

    /// Every tenant, shown or not yet (for the control API).
    pub fn all_tenants(&self) -> Vec<&Tenant> {
        let mut list: Vec<&Tenant> = self.tenants.values().collect();
        list.sort_by_key(|t| t.created);
        list
    }

    pub fn quotas<'a>(&'a self, tenant: &'a Tenant) -> impl Iterator<Item = &'a Quota> + 'a {
        tenant
            .resources
            .iter()
            .filter(|q| self.visible(q.visible_at))
    }

    pub fn pools_of_tenant(&self, tenant: Uuid) -> Vec<&super::Pool> {
        let mut list: Vec<&super::Pool> = self
            .tenant_pools
            .get(&tenant)
            .into_iter()
            .flatten()
            .filter_map(|p| self.pools.get(p))
            .collect();
        list.sort_by_key(|p| p.created);
        list
    }

    /// Quota used on a repository by every tenant, in MB.
    pub fn repository_used_mb(&self, repository: Uuid) -> i64 {
        self.tenants
            .values()
            .flat_map(|t| &t.resources)
            .filter(|q| q.repository == repository)
            .map(|q| q.used_mb)
            .sum()
    }

    /// Backups left on a repository by deletes that kept them, in MB.
    pub fn repository_left_behind_mb(&self, repository: Uuid) -> i64 {
        self.left_behind_mb.get(&repository).copied().unwrap_or(0)
    }

    /// Free space as EM reports it: what the seed says, less tenants' backups and the backups
    /// deleted tenants and quotas left behind; never below zero.
    pub fn repository_free_mb(&self, repository: &Repository) -> i64 {
        (repository.free_mb
            - self.repository_used_mb(repository.id)
            - self.repository_left_behind_mb(repository.id))
        .max(0)
    }

    /// Simulated tenant backups: sets the space a quota's backups take.
    pub fn set_used(
        &mut self,
        tenant: Uuid,
        quota: Uuid,
        used_mb: i64,
    ) -> Result<Quota, UsedError> {
        if used_mb < 0 {
            return Err(UsedError::Negative);
        }
        let tenant = self.tenants.get_mut(&tenant).ok_or(UsedError::NoTenant)?;
        let quota = tenant
            .resources
            .iter_mut()
            .find(|q| q.id == quota)
            .ok_or(UsedError::NoQuota)?;
        quota.used_mb = used_mb;
        Ok(quota.clone())
    }

    /// Whether a tenant's password is this one; `None` for an unknown tenant. A tenant without
    /// one (seeded) matches nothing.
    pub fn check_password(&self, tenant: Uuid, password: &str) -> Option<bool> {
        let tenant = self.tenants.get(&tenant)?;
        Some(
            tenant
                .password
                .as_ref()
                .is_some_and(|p| p.matches(password)),
        )
    }

    pub(super) fn insert_tenant(&mut self, tenant: Tenant) {
        self.tenant_names
            .insert(name_key(tenant.backup_server, &tenant.name), tenant.id);
        self.tenants.insert(tenant.id, tenant);
    }

    /// Adds or removes a tenant from pools, keeping both sides of the membership in step.
    fn set_tenant_pools(&mut self, tenant: Uuid, pools: &[Uuid]) {
        let old: Vec<Uuid> = self
            .tenant_pools
            .remove(&tenant)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for p in old.iter().filter(|p| !pools.contains(p)) {
            if let Some(pool) = self.pools.get_mut(p) {
                pool.tenants.retain(|t| *t != tenant);
            }
        }
        for p in pools {
            if let Some(pool) = self.pools.get_mut(p) {
                if !pool.tenants.contains(&tenant) {
                    pool.tenants.push(tenant);
                }
                self.tenant_pools.entry(tenant).or_default().insert(*p);
            }
        }
    }

    // -- the rules, checked when an operation runs ---------------------------------------------

    pub(super) fn create_tenant(&mut self, new: NewTenant, at: Instant) -> Result<Related, String> {
        let NewTenant { mut tenant, pools } = new;
        let server = tenant.backup_server;
        self.backup_server(server)
            .ok_or("Backup server was not found.")?;
        if self
            .tenant_names
            .contains_key(&name_key(server, &tenant.name))
        {
            return Err(format!(
                "Cloud tenant with the name {} already exists on this backup server.",
                tenant.name
            ));
        }
        for q in &tenant.resources {
            self.check_quota_targets(server, q.repository, q.wan_accelerator)?;
        }
        check_distinct(&tenant.name, &tenant.resources)?;
        self.check_pools(server, &pools)?;
        let visible_at = Some(at + self.operation_finished_time);
        tenant.visible_at = visible_at;
        for q in &mut tenant.resources {
            q.visible_at = visible_at;
        }
        tenant.created = self.next_created();
        let (id, name) = (tenant.id, tenant.name.clone());
        self.insert_tenant(tenant);
        self.set_tenant_pools(id, &pools);
        Ok(Related {
            type_: "CloudTenant",
            path: format!("cloud/tenants/{id}?format=Entity"),
            name,
        })
    }

    pub(super) fn edit_tenant(
        &mut self,
        id: Uuid,
        change: TenantChange,
    ) -> Result<Related, String> {
        let tenant = self
            .tenants
            .get(&id)
            .ok_or_else(|| format!("Cloud tenant [{id}] was not found."))?;
        let server = tenant.backup_server;
        if let Some(other) = &change.other_type {
            return Err(format!(
                "Cloud tenant {} is a standalone tenant; its type cannot be changed to {other}.",
                tenant.name
            ));
        }
        let mut next = tenant.clone();
        for c in &change.resources {
            let quota = next
                .resources
                .iter_mut()
                .find(|q| q.id == c.id)
                .ok_or_else(|| {
                    format!(
                        "Storage quota [{}] does not belong to cloud tenant {}.",
                        c.id, tenant.name
                    )
                })?;
            if c.quota_mb < quota.used_mb {
                return Err(format!(
                    "The quota of {} cannot be less than the space its backups use ({} MB).",
                    quota.name, quota.used_mb
                ));
            }
            let wan = c.wan_accelerator.unwrap_or(quota.wan_accelerator);
            self.check_quota_targets(server, c.repository, wan)?;
            if c.repository != quota.repository {
                let scale_out = [quota.repository, c.repository].iter().any(|r| {
                    self.repository(*r)
                        .is_some_and(|r| r.kind == RepositoryKind::Extendable)
                });
                if scale_out {
                    return Err(format!(
                        "Cannot move the storage quota {} to another repository: moving to or from a scale-out backup repository is not supported.",
                        quota.name
                    ));
                }
            }
            quota.name = c.name.clone();
            quota.repository = c.repository;
            quota.wan_accelerator = wan;
            quota.quota_mb = c.quota_mb;
        }
        check_distinct(&next.name, &next.resources)?;
        if let Some(pools) = &change.pools {
            self.check_pools(server, pools)?;
        }
        if let Some(v) = change.description {
            next.description = v;
        }
        if let Some(v) = change.enabled {
            next.enabled = v;
        }
        if let Some(v) = change.password {
            next.password = Some(v);
        }
        if let Some(v) = change.lease {
            next.lease_expires = v;
        }
        if let Some(v) = change.throttling_enabled {
            next.throttling_enabled = v;
        }
        if let Some(v) = change.throttling_speed_limit {
            next.throttling_speed_limit = v;
        }
        if let Some(v) = change.throttling_speed_unit {
            next.throttling_speed_unit = v;
        }
        if let Some(v) = change.public_ip_count {
            next.public_ip_count = v;
        }
        if let Some(v) = change.max_concurrent_tasks {
            next.max_concurrent_tasks = v;
        }
        if let Some(v) = change.backup_protection_enabled {
            next.backup_protection_enabled = v;
        }
        if let Some(v) = change.backup_protection_period {
            next.backup_protection_period = v;
        }
        if let Some(v) = change.failover_to_others_gateways_if_fail {
            next.failover_to_others_gateways_if_fail = Some(v);
        }
        let name = next.name.clone();
        self.tenants.insert(id, next);
        if let Some(pools) = change.pools {
            self.set_tenant_pools(id, &pools);
        }
        Ok(Related {
            type_: "CloudTenant",
            path: format!("cloud/tenants/{id}?format=Entity"),
            name,
        })
    }

    /// Without `include_backups` the tenant's backups stay on the repositories.
    pub(super) fn delete_tenant(&mut self, id: Uuid, include_backups: bool) -> Result<(), String> {
        let tenant = self
            .tenants
            .remove(&id)
            .ok_or_else(|| format!("Cloud tenant [{id}] was not found."))?;
        self.tenant_names
            .remove(&name_key(tenant.backup_server, &tenant.name));
        self.set_tenant_pools(id, &[]);
        if !include_backups {
            for q in &tenant.resources {
                *self.left_behind_mb.entry(q.repository).or_default() += q.used_mb;
            }
        }
        Ok(())
    }

    pub(super) fn create_quota(
        &mut self,
        tenant: Uuid,
        mut quota: Quota,
        at: Instant,
    ) -> Result<Related, String> {
        let t = self
            .tenants
            .get(&tenant)
            .ok_or_else(|| format!("Cloud tenant [{tenant}] was not found."))?;
        self.check_quota_targets(t.backup_server, quota.repository, quota.wan_accelerator)?;
        quota.visible_at = Some(at + self.operation_finished_time);
        let mut all = t.resources.clone();
        all.push(quota.clone());
        check_distinct(&t.name, &all)?;
        let name = t.name.clone();
        let rid = quota.id;
        if let Some(t) = self.tenants.get_mut(&tenant) {
            t.resources.push(quota);
        }
        Ok(Related {
            type_: "CloudTenantResource",
            path: format!("cloud/tenants/{tenant}/resources/{rid}"),
            name,
        })
    }

    /// The quota goes; its backups stay on the repository.
    pub(super) fn delete_quota(&mut self, tenant: Uuid, quota: Uuid) -> Result<(), String> {
        let t = self
            .tenants
            .get_mut(&tenant)
            .ok_or_else(|| format!("Cloud tenant [{tenant}] was not found."))?;
        let at = t
            .resources
            .iter()
            .position(|q| q.id == quota)
            .ok_or_else(|| format!("Storage quota [{quota}] was not found."))?;
        let removed = t.resources.remove(at);
        *self.left_behind_mb.entry(removed.repository).or_default() += removed.used_mb;
        Ok(())
    }

    /// Only a repository (and WAN accelerator) of the tenant's own backup server can hold its
    /// quota.
    fn check_quota_targets(
        &self,
        server: Uuid,
        repository: Uuid,
        wan: Option<Uuid>,
    ) -> Result<(), String> {
        let repo = self.repository(repository).ok_or_else(|| {
            format!("Repository [urn:veeam:Repository:{repository}] was not found.")
        })?;
        if repo.backup_server != server {
            return Err(format!(
                "Repository {} belongs to another backup server.",
                repo.name
            ));
        }
        if let Some(wan) = wan {
            let accelerator = self.wan_accelerator(wan).ok_or_else(|| {
                format!("WAN accelerator [urn:veeam:WanAccelerator:{wan}] was not found.")
            })?;
            if accelerator.backup_server != server {
                return Err(format!(
                    "WAN accelerator {} belongs to another backup server.",
                    accelerator.name
                ));
            }
        }
        Ok(())
    }

    fn check_pools(&self, server: Uuid, pools: &[Uuid]) -> Result<(), String> {
        for id in pools {
            let pool = self.pools.get(id).ok_or_else(|| {
                format!("Cloud gateway pool [urn:veeam:CloudGatewayPool:{id}] was not found.")
            })?;
            if pool.backup_server != server {
                return Err(format!(
                    "Cloud gateway pool {} belongs to another backup server.",
                    pool.name
                ));
            }
        }
        Ok(())
    }
}

/// One quota per repository, and friendly names a tenant can tell apart.
fn check_distinct(tenant: &str, quotas: &[Quota]) -> Result<(), String> {
    let mut repositories = HashSet::new();
    let mut names = HashMap::new();
    for q in quotas {
        if !repositories.insert(q.repository) {
            return Err(format!(
                "Cloud tenant {tenant} already has a storage quota on repository [urn:veeam:Repository:{}].",
                q.repository
            ));
        }
        if names.insert(q.name.to_lowercase(), ()).is_some() {
            return Err(format!(
                "Cloud tenant {tenant} already has a cloud repository named {}.",
                q.name
            ));
        }
    }
    Ok(())
}

//! Checked before EM sees it: what EM would only report later in a failed task, judged from a
//! read of EM's objects and refused at once with the field at fault. Pure: the submitter reads
//! what [`needs`] asks for and applies [`check`]'s verdict. EM remains the judge — a request
//! that passes here still settles from EM, and what changes between this read and EM's run
//! ends as a failed task with EM's message.

use uuid::Uuid;

use super::command::Command;
use crate::domain::{FieldError, NewBackupResource};
use crate::em::xml;

/// MB, as Veeam counts them (2^20 bytes): EM reports repositories in bytes, quotas in MB.
const MB: u64 = 1 << 20;

/// Something of EM's to read before judging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Every tenant (a new name must be free on its backup server).
    Tenants,
    /// The tenant a command is about, with its quotas.
    Tenant(Uuid),
    Repositories,
    Pools,
}

pub fn needs(command: &Command) -> Vec<Need> {
    match command {
        Command::CreateCloudTenant(c) => {
            let mut needs = vec![Need::Tenants];
            if !c.backup_resources.is_empty() {
                needs.push(Need::Repositories);
            }
            if !c.cloud_gateway_pools.is_empty() {
                needs.push(Need::Pools);
            }
            needs
        }
        Command::UpdateCloudTenant(id, change) => {
            let mut needs = vec![Need::Tenant(*id)];
            if !change.backup_resources.is_empty() {
                needs.push(Need::Repositories);
            }
            if change
                .cloud_gateway_pools
                .as_ref()
                .is_some_and(|p| !p.is_empty())
            {
                needs.push(Need::Pools);
            }
            needs
        }
        Command::DeleteCloudTenant(id, _) => vec![Need::Tenant(*id)],
        Command::CreateCloudTenantBackupResource(c) => {
            vec![Need::Tenant(c.tenant), Need::Repositories]
        }
        Command::DeleteCloudTenantBackupResource(r) => vec![Need::Tenant(r.tenant)],
        _ => Vec::new(),
    }
}

/// What was read (a need not read is `None`).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub tenants: Option<Vec<xml::CloudTenant>>,
    /// The tenant of [`Need::Tenant`]; `Some(None)`: EM has no such tenant.
    pub tenant: Option<Option<xml::CloudTenant>>,
    pub repositories: Option<Vec<xml::Repository>>,
    pub pools: Option<Vec<xml::CloudGatewayPool>>,
}

/// The judgement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// The object the command is about does not exist (404), with what to tell the caller.
    pub missing: Option<String>,
    /// Conflicts with EM's objects (409), one per field.
    pub conflicts: Vec<FieldError>,
    /// Sent on regardless, and kept with the task.
    pub warnings: Vec<String>,
}

impl Verdict {
    fn conflict(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.conflicts.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// A quota beyond a repository's free space: a warning, or with `strict` a conflict.
    fn over_capacity(&mut self, strict: bool, field: String, message: String) {
        if strict {
            self.conflict(field, message);
        } else {
            self.warnings.push(format!("{field}: {message}"));
        }
    }
}

fn guid(uid_or_href: &str) -> Option<Uuid> {
    Uuid::parse_str(xml::id_of(uid_or_href)).ok()
}

fn backup_server_of(links: &xml::Links) -> Option<Uuid> {
    links
        .find("Up", Some("BackupServerReference"))
        .and_then(|l| guid(&l.href))
}

fn server_name(links: &xml::Links) -> String {
    links
        .find("Up", Some("BackupServerReference"))
        .and_then(|l| l.name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| backup_server_of(links).map(|id| id.to_string()))
        .unwrap_or_else(|| "another backup server".into())
}

/// Judges `command` against `inv`. `strict_capacity`: a quota beyond free space is refused.
pub fn check(command: &Command, inv: &Inventory, strict_capacity: bool) -> Verdict {
    let mut v = Verdict::default();
    match command {
        Command::CreateCloudTenant(c) => {
            let server = c.backup_server.id();
            if let Some(taken) = inv
                .tenants
                .iter()
                .flatten()
                .find(|t| c.name.same_as(&t.name) && backup_server_of(&t.links) == Some(server))
            {
                v.conflict(
                    "name",
                    format!(
                        "backup server {} already has a cloud tenant named {} ({})",
                        c.backup_server, taken.name, taken.uid
                    ),
                );
            }
            for (i, r) in c.backup_resources.iter().enumerate() {
                repository_fits(
                    &mut v,
                    inv,
                    &format!("backup_resources[{i}]"),
                    r,
                    server,
                    strict_capacity,
                );
            }
            let pools: Vec<Uuid> = c.cloud_gateway_pools.iter().map(|p| p.id()).collect();
            pools_on(&mut v, inv, "cloud_gateway_pool_uids", &pools, server);
        }
        Command::UpdateCloudTenant(id, change) => {
            let Some(tenant) = tenant(&mut v, inv, *id) else {
                return v;
            };
            let server = backup_server_of(&tenant.links);
            if let (Some(pools), Some(server)) = (&change.cloud_gateway_pools, server) {
                let pools: Vec<Uuid> = pools.iter().map(|p| p.id()).collect();
                pools_on(&mut v, inv, "cloud_gateway_pool_uids", &pools, server);
            }
            for (i, resize) in change.backup_resources.iter().enumerate() {
                let field = format!("backup_resources[{i}]");
                let Some(quota) = tenant.resources.items.iter().find(|q| q.id == resize.id) else {
                    v.conflict(
                        format!("{field}.id"),
                        format!("cloud tenant {id} has no storage quota {}", resize.id),
                    );
                    continue;
                };
                let want = resize.quota_mb.get();
                let used = quota.repository_quota.used_quota.unwrap_or(0);
                if want < used {
                    v.conflict(
                        format!("{field}.quota_mb"),
                        format!(
                            "is below what the tenant already keeps there ({used} MB); free \
                             space in it first, or delete the quota"
                        ),
                    );
                    continue;
                }
                let growth = want.saturating_sub(quota.repository_quota.quota);
                if growth > 0
                    && let Some(repo) = repository(inv, &quota.repository_quota.repository_uid)
                    && let Some(free) = free_mb(repo)
                    && growth > free
                {
                    v.over_capacity(
                        strict_capacity,
                        format!("{field}.quota_mb"),
                        format!(
                            "grows the quota by {growth} MB, more than repository {} has free \
                             ({free} MB)",
                            repo.name
                        ),
                    );
                }
            }
        }
        Command::DeleteCloudTenant(id, _) => {
            tenant(&mut v, inv, *id);
        }
        Command::CreateCloudTenantBackupResource(c) => {
            let Some(tenant) = tenant(&mut v, inv, c.tenant) else {
                return v;
            };
            let repository = c.resource.repository.id();
            if let Some(q) = tenant
                .resources
                .items
                .iter()
                .find(|q| guid(&q.repository_quota.repository_uid) == Some(repository))
            {
                v.conflict(
                    "repository_uid",
                    format!(
                        "cloud tenant {} already has a storage quota on repository {} ({}): one \
                         quota per repository; resize that one instead",
                        tenant.name, c.resource.repository, q.id
                    ),
                );
            }
            if let Some(server) = backup_server_of(&tenant.links) {
                repository_fits(&mut v, inv, "", &c.resource, server, strict_capacity);
            }
        }
        Command::DeleteCloudTenantBackupResource(r) => {
            let Some(tenant) = tenant(&mut v, inv, r.tenant) else {
                return v;
            };
            if !tenant.resources.items.iter().any(|q| q.id == r.resource) {
                v.missing = Some(format!(
                    "no storage quota {} on cloud tenant {}",
                    r.resource, r.tenant
                ));
            }
        }
        _ => {}
    }
    v
}

/// The tenant a command is about; `None` (and the verdict says so) when EM has none, or when
/// it was not read.
fn tenant<'a>(v: &mut Verdict, inv: &'a Inventory, id: Uuid) -> Option<&'a xml::CloudTenant> {
    match &inv.tenant {
        Some(Some(t)) => Some(t),
        Some(None) => {
            v.missing = Some(format!("no cloud tenant {id}"));
            None
        }
        None => None,
    }
}

fn repository<'a>(inv: &'a Inventory, uid: &str) -> Option<&'a xml::Repository> {
    let id = guid(uid)?;
    inv.repositories
        .iter()
        .flatten()
        .find(|r| guid(&r.uid) == Some(id))
}

fn free_mb(r: &xml::Repository) -> Option<u64> {
    r.free_space.map(|bytes| bytes / MB)
}

/// A new quota's repository: known, on the tenant's backup server, with room for it.
/// `prefix` names the quota in the request (`backup_resources[2]`, or nothing).
fn repository_fits(
    v: &mut Verdict,
    inv: &Inventory,
    prefix: &str,
    r: &NewBackupResource,
    server: Uuid,
    strict: bool,
) {
    let field = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    };
    let Some(repositories) = &inv.repositories else {
        return;
    };
    let Some(repo) = repositories
        .iter()
        .find(|x| guid(&x.uid) == Some(r.repository.id()))
    else {
        v.conflict(
            field("repository_uid"),
            format!("Enterprise Manager has no repository {}", r.repository),
        );
        return;
    };
    if backup_server_of(&repo.links) != Some(server) {
        v.conflict(
            field("repository_uid"),
            format!(
                "repository {} is on {}, not on the tenant's backup server {server}",
                repo.name,
                server_name(&repo.links)
            ),
        );
        return;
    }
    if let Some(free) = free_mb(repo)
        && r.quota_mb.get() > free
    {
        v.over_capacity(
            strict,
            field("quota_mb"),
            format!(
                "{} MB is more than repository {} has free ({free} MB)",
                r.quota_mb.get(),
                repo.name
            ),
        );
    }
}

/// Gateway pools: known, and on the tenant's backup server.
fn pools_on(v: &mut Verdict, inv: &Inventory, field: &str, wanted: &[Uuid], server: Uuid) {
    let Some(pools) = &inv.pools else {
        return;
    };
    for (i, id) in wanted.iter().enumerate() {
        match pools.iter().find(|p| guid(&p.uid) == Some(*id)) {
            None => v.conflict(
                format!("{field}[{i}]"),
                format!("Enterprise Manager has no cloud gateway pool {id}"),
            ),
            Some(p) if backup_server_of(&p.links) != Some(server) => v.conflict(
                format!("{field}[{i}]"),
                format!(
                    "cloud gateway pool {} is on {}, not on the tenant's backup server {server}",
                    p.name,
                    server_name(&p.links)
                ),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        BackupServerUid, CloudGatewayPoolUid, CloudTenantChange, NewCloudTenant,
        NewTenantBackupResource, QuotaMb, QuotaResize, RepositoryUid, ResourceName,
        TenantBackupResource, TenantName,
    };
    use crate::tasks::command::TenantDeletion;

    const VBR1: &str = "29e5d158-1f58-44bc-bbaa-2752d787a91d";
    const VBR2: &str = "39e5d158-1f58-44bc-bbaa-2752d787a91d";
    const REPO1: &str = "3f2a1c10-0000-4000-8000-00000000a101";
    const REPO2: &str = "3f2a1c10-0000-4000-8000-00000000a201";
    const POOL1: &str = "3f2a1c10-0000-4000-8000-0000000000c1";
    const POOL2: &str = "3f2a1c10-0000-4000-8000-0000000000c2";
    const TENANT: &str = "3f2a1c10-0000-4000-8000-00000000e901";
    const QUOTA: &str = "3f2a1c10-0000-4000-8000-00000000e911";

    fn up(server: &str) -> xml::Links {
        xml::Links {
            links: vec![xml::Link {
                rel: Some("Up".into()),
                href: format!("https://em/api/backupServers/{server}"),
                name: Some(format!("vbr-{}", &server[..2])),
                type_: Some("BackupServerReference".into()),
            }],
        }
    }

    fn repo(id: &str, server: &str, free_mb: u64) -> xml::Repository {
        xml::Repository {
            name: format!("repo-{}", &id[id.len() - 4..]),
            uid: format!("urn:veeam:Repository:{id}"),
            href: None,
            links: up(server),
            capacity: Some(free_mb * 2 * MB),
            free_space: Some(free_mb * MB),
            kind: Some("WindowsLocal".into()),
        }
    }

    fn pool(id: &str, server: &str) -> xml::CloudGatewayPool {
        let mut p: xml::CloudGatewayPool = xml::from_xml(&format!(
            r#"<CloudGatewayPool xmlns="http://www.veeam.com/ent/v1.0" Name="pool" UID="urn:veeam:CloudGatewayPool:{id}"></CloudGatewayPool>"#
        ))
        .unwrap();
        p.links = up(server);
        p
    }

    fn tenant(name: &str, server: &str, quota: u64, used: u64) -> xml::CloudTenant {
        let mut t: xml::CloudTenant = xml::from_xml(&format!(
            r#"<CloudTenant xmlns="http://www.veeam.com/ent/v1.0" Name="{name}" UID="urn:veeam:CloudTenant:{TENANT}"><Resources><CloudTenantResource Id="{QUOTA}"><RepositoryQuota><DisplayName>Cloud</DisplayName><RepositoryUid>urn:veeam:Repository:{REPO1}</RepositoryUid><Quota>{quota}</Quota><UsedQuota>{used}</UsedQuota></RepositoryQuota></CloudTenantResource></Resources></CloudTenant>"#
        ))
        .unwrap();
        t.links = up(server);
        t
    }

    fn inventory() -> Inventory {
        Inventory {
            tenants: Some(vec![tenant("Taken Ltd", VBR1, 2048, 1500)]),
            tenant: Some(Some(tenant("Taken Ltd", VBR1, 2048, 1500))),
            repositories: Some(vec![repo(REPO1, VBR1, 10_000), repo(REPO2, VBR2, 10_000)]),
            pools: Some(vec![pool(POOL1, VBR1), pool(POOL2, VBR2)]),
        }
    }

    fn quota(repository: &str, mb: i64) -> NewBackupResource {
        NewBackupResource {
            name: ResourceName::parse("Cloud").unwrap(),
            repository: RepositoryUid::parse(repository).unwrap(),
            quota_mb: QuotaMb::parse(mb).unwrap(),
            wan_accelerator: None,
        }
    }

    fn create(name: &str, quotas: Vec<NewBackupResource>, pools: &[&str]) -> Command {
        Command::CreateCloudTenant(NewCloudTenant {
            backup_server: BackupServerUid::parse(VBR1).unwrap(),
            name: TenantName::parse(name).unwrap(),
            description: None,
            password: None,
            enabled: true,
            lease_expires_at: None,
            backup_resources: quotas,
            max_concurrent_tasks: None,
            throttling: None,
            backup_protection_days: None,
            cloud_gateway_pools: pools
                .iter()
                .map(|p| CloudGatewayPoolUid::parse(p).unwrap())
                .collect(),
            failover_to_other_gateways: None,
        })
    }

    fn resize(id: &str, mb: i64) -> Command {
        Command::UpdateCloudTenant(
            Uuid::parse_str(TENANT).unwrap(),
            CloudTenantChange {
                backup_resources: vec![QuotaResize {
                    id: Uuid::parse_str(id).unwrap(),
                    quota_mb: QuotaMb::parse(mb).unwrap(),
                }],
                ..Default::default()
            },
        )
    }

    fn fields(v: &Verdict) -> Vec<&str> {
        v.conflicts.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn each_rule_names_its_field() {
        let inv = inventory();
        let add = |repo: &str, mb| {
            Command::CreateCloudTenantBackupResource(NewTenantBackupResource {
                tenant: Uuid::parse_str(TENANT).unwrap(),
                resource: quota(repo, mb),
            })
        };
        let cases: Vec<(&str, Command, Vec<&str>)> = vec![
            ("a free name", create("New Ltd", vec![], &[]), vec![]),
            (
                "a taken name, any case",
                create("TAKEN ltd", vec![], &[]),
                vec!["name"],
            ),
            (
                "a repository of another server",
                create("New Ltd", vec![quota(REPO2, 1024)], &[]),
                vec!["backup_resources[0].repository_uid"],
            ),
            (
                "an unknown repository",
                create(
                    "New Ltd",
                    vec![quota("3f2a1c10-0000-4000-8000-0000000000ff", 1024)],
                    &[],
                ),
                vec!["backup_resources[0].repository_uid"],
            ),
            (
                "a pool of another server, an unknown one",
                create(
                    "New Ltd",
                    vec![],
                    &[POOL1, POOL2, "3f2a1c10-0000-4000-8000-0000000000ff"],
                ),
                vec!["cloud_gateway_pool_uids[1]", "cloud_gateway_pool_uids[2]"],
            ),
            (
                "a second quota on one repository",
                add(REPO1, 1024),
                vec!["repository_uid"],
            ),
            (
                "a quota on another server's repository",
                add(REPO2, 1024),
                vec!["repository_uid"],
            ),
            ("a resize above what is used", resize(QUOTA, 1600), vec![]),
            (
                "a resize below what is used",
                resize(QUOTA, 1024),
                vec!["backup_resources[0].quota_mb"],
            ),
            (
                "a resize of another tenant's quota",
                resize("3f2a1c10-0000-4000-8000-0000000000ee", 4096),
                vec!["backup_resources[0].id"],
            ),
        ];
        for (what, command, expected) in cases {
            let v = check(&command, &inv, false);
            assert_eq!(fields(&v), expected, "{what}: {v:?}");
            assert_eq!(v.missing, None, "{what}");
        }
    }

    #[test]
    fn capacity_is_a_warning_unless_strict() {
        let inv = inventory();
        let big = create("New Ltd", vec![quota(REPO1, 20_000)], &[]);
        let v = check(&big, &inv, false);
        assert!(v.conflicts.is_empty());
        assert_eq!(v.warnings.len(), 1);
        assert!(
            v.warnings[0].starts_with("backup_resources[0].quota_mb: 20000 MB is more than"),
            "{:?}",
            v.warnings
        );
        let v = check(&big, &inv, true);
        assert_eq!(fields(&v), vec!["backup_resources[0].quota_mb"]);
        assert!(v.warnings.is_empty());
        // A resize counts only what it adds: 2048 → 12000 adds 9952 MB of 10000 free.
        assert!(
            check(&resize(QUOTA, 12_000), &inv, true)
                .conflicts
                .is_empty()
        );
        assert_eq!(check(&resize(QUOTA, 12_100), &inv, false).warnings.len(), 1);
    }

    #[test]
    fn a_missing_tenant_or_quota_is_not_found() {
        let mut inv = inventory();
        let delete_quota = |id: &str| {
            Command::DeleteCloudTenantBackupResource(TenantBackupResource {
                tenant: Uuid::parse_str(TENANT).unwrap(),
                resource: Uuid::parse_str(id).unwrap(),
            })
        };
        assert_eq!(check(&delete_quota(QUOTA), &inv, false), Verdict::default());
        assert!(check(&delete_quota(TENANT), &inv, false).missing.is_some());
        inv.tenant = Some(None);
        let delete =
            Command::DeleteCloudTenant(Uuid::parse_str(TENANT).unwrap(), TenantDeletion::default());
        for command in [delete, resize(QUOTA, 4096), delete_quota(QUOTA)] {
            let v = check(&command, &inv, false);
            assert_eq!(
                v.missing,
                Some(format!("no cloud tenant {TENANT}")),
                "{command:?}"
            );
        }
    }

    #[test]
    fn what_is_needed_is_read_and_nothing_more() {
        assert_eq!(needs(&create("a", vec![], &[])), vec![Need::Tenants]);
        assert_eq!(
            needs(&create("a", vec![quota(REPO1, 1024)], &[POOL1])),
            vec![Need::Tenants, Need::Repositories, Need::Pools]
        );
        let id = Uuid::parse_str(TENANT).unwrap();
        assert_eq!(
            needs(&Command::UpdateCloudTenant(
                id,
                CloudTenantChange::default()
            )),
            vec![Need::Tenant(id)]
        );
    }
}

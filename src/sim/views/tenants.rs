//! Tenants, their storage quotas and repositories as EM writes them (em-api.md §16.2, §16.9).

use chrono::{DateTime, Utc};

use super::{Hrefs, link, uid, up_link};
use crate::sim::render::{Node, Scalar};
use crate::sim::state::{MB, Quota, Repository, Tenant, World};

/// What EM writes for a tenant that never connected.
const NEVER: &str = "1753-01-01T00:00:00Z";

pub fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn tenant_ref(h: &Hrefs, world: &World, t: &Tenant, root: &'static str) -> Node {
    let me = h.at(&format!("cloud/tenants/{}", t.id));
    Node::new(root)
        .attr("Type", "CloudTenantReference")
        .attr("Href", me.clone())
        .attr("Name", t.name.clone())
        .attr("UID", uid("CloudTenant", t.id))
        .child(Node::links(vec![
            up_link(h, world, t.backup_server),
            link(
                format!("{me}?format=Entity"),
                Some(&t.name),
                Some("CloudTenant"),
                "Alternate",
            ),
        ]))
}

/// The entity in the order of §16.2: no `VmCount`, pools only when there are some, the
/// failover flag only once set, the password always empty.
pub fn tenant_entity(h: &Hrefs, world: &World, t: &Tenant) -> Node {
    let me = h.at(&format!("cloud/tenants/{}", t.id));
    let links = vec![
        up_link(h, world, t.backup_server),
        link(
            me.clone(),
            Some(&t.name),
            Some("CloudTenantReference"),
            "Alternate",
        ),
        link(
            me.clone(),
            Some(&t.name),
            Some("CloudTenantReference"),
            "Edit",
        ),
        link(
            format!("{me}/resources"),
            None,
            Some("CloudTenantResourceList"),
            "Down",
        ),
        link(
            format!("{me}/resources"),
            None,
            Some("CloudTenantResource"),
            "Create",
        ),
        link(me.clone(), None, None, "Delete"),
        link(
            format!("{me}/gatewayPools"),
            None,
            Some("CloudGatewayPoolReferenceList"),
            "Down",
        ),
    ];
    let lease = match t.lease_expires {
        None => Node::empty("LeaseOptions").attr_value("Enabled", Scalar::Bool(false)),
        Some(at) => Node::empty("LeaseOptions")
            .attr_value("Enabled", Scalar::Bool(true))
            .attr("ExpirationDate", utc(at)),
    };
    let resources = world
        .quotas(t)
        .map(|q| quota(h, world, t, q, false))
        .collect();
    let int = |name, v: i64| Node::value(name, Scalar::Int(v));
    let bool = |name, v: bool| Node::value(name, Scalar::Bool(v));
    let mut node = Node::new("CloudTenant")
        .attr("Href", format!("{me}?format=Entity"))
        .attr("Type", "CloudTenant")
        .attr("Name", t.name.clone())
        .attr("UID", uid("CloudTenant", t.id))
        .child(Node::links(links))
        .child(Node::blank("Password"))
        .child(Node::text("Description", t.description.clone()))
        .child(bool("Enabled", t.enabled))
        .child(lease)
        .child(Node::list_always(
            "Resources",
            "CloudTenantResource",
            resources,
        ))
        .child(Node::text("LastResult", "Success"))
        .child(Node::text("LastActive", NEVER))
        .child(Node::list("ComputeResources", "ComputeResource", vec![]))
        .child(bool("ThrottlingEnabled", t.throttling_enabled))
        .child(int("ThrottlingSpeedLimit", t.throttling_speed_limit))
        .child(Node::text(
            "ThrottlingSpeedUnit",
            t.throttling_speed_unit.as_em(),
        ))
        .child(int("PublicIpCount", t.public_ip_count))
        .child(int("BackupCount", 0))
        .child(int("ReplicaCount", 0))
        .child(int("MaxConcurrentTasks", t.max_concurrent_tasks))
        .child(int("WorkStationBackupCount", 0))
        .child(int("ServerBackupCount", 0))
        .child(bool("BackupProtectionEnabled", t.backup_protection_enabled))
        .child(int("BackupProtectionPeriod", t.backup_protection_period))
        .child(Node::new("TenantType").child(
            Node::new("StandaloneTenant").child(
                Node::new("TenantCredentials").child(Node::text("Username", t.name.clone())),
            ),
        ));
    let pools: Vec<Node> = world
        .pools_of_tenant(t.id)
        .into_iter()
        .map(|p| Node::text("CloudGatewayPoolUid", uid("CloudGatewayPool", p.id)))
        .collect();
    if !pools.is_empty() {
        node = node.child(Node::list(
            "CloudGatewayPools",
            "CloudGatewayPoolUid",
            pools,
        ));
    }
    if let Some(failover) = t.failover_to_others_gateways_if_fail {
        node = node.child(bool("FailoverToOthersGatewaysIfFail", failover));
    }
    node
}

/// A `CloudTenantResource`; inside the tenant entity without links.
pub fn quota(h: &Hrefs, world: &World, t: &Tenant, q: &Quota, with_links: bool) -> Node {
    let me = h.at(&format!("cloud/tenants/{}/resources/{}", t.id, q.id));
    let mut node = Node::new("CloudTenantResource")
        .attr("Type", "CloudTenantResource")
        .attr("Href", me.clone())
        .attr("Id", q.id.to_string());
    if with_links {
        let server = world
            .backup_server(t.backup_server)
            .map(|b| b.name.clone())
            .unwrap_or_default();
        node = node.child(Node::links(vec![
            link(me, Some(&q.name), Some("CloudTenantResource"), "Delete"),
            link(
                h.at(&format!("cloud/tenants/{}?format=Entity", t.id)),
                Some(&t.name),
                Some("CloudTenant"),
                "Up",
            ),
            link(
                h.at(&format!("backupServers/{}?format=Entity", t.backup_server)),
                Some(&server),
                Some("BackupServer"),
                "Up",
            ),
        ]));
    }
    let mut repository_quota = Node::new("RepositoryQuota")
        .child(Node::text("DisplayName", q.name.clone()))
        .child(Node::text("RepositoryUid", uid("Repository", q.repository)));
    if let Some(wan) = q.wan_accelerator {
        repository_quota =
            repository_quota.child(Node::text("WanAcceleratorUid", uid("WanAccelerator", wan)));
    }
    node.child(
        repository_quota
            .child(Node::value("Quota", Scalar::Int(q.quota_mb)))
            .child(Node::value("UsedQuota", Scalar::Int(q.used_mb))),
    )
}

pub fn tenant_resources(h: &Hrefs, world: &World, t: &Tenant) -> Node {
    let items = world
        .quotas(t)
        .map(|q| quota(h, world, t, q, true))
        .collect();
    Node::list_always("CloudTenantResources", "CloudTenantResource", items)
}

pub fn repository_ref(h: &Hrefs, world: &World, r: &Repository, root: &'static str) -> Node {
    let me = h.at(&format!("repositories/{}", r.id));
    Node::new(root)
        .attr("Type", "RepositoryReference")
        .attr("Href", me.clone())
        .attr("Name", r.name.clone())
        .attr("UID", uid("Repository", r.id))
        .child(Node::links(vec![
            up_link(h, world, r.backup_server),
            link(
                format!("{me}?format=Entity"),
                Some(&r.name),
                Some("Repository"),
                "Alternate",
            ),
        ]))
}

/// Sizes in bytes, as EM reports them.
pub fn repository_entity(h: &Hrefs, world: &World, r: &Repository) -> Node {
    let me = h.at(&format!("repositories/{}", r.id));
    Node::new("Repository")
        .attr("Href", format!("{me}?format=Entity"))
        .attr("Type", "Repository")
        .attr("Name", r.name.clone())
        .attr("UID", uid("Repository", r.id))
        .child(Node::links(vec![
            up_link(h, world, r.backup_server),
            link(me, Some(&r.name), Some("RepositoryReference"), "Alternate"),
        ]))
        .child(Node::value(
            "Capacity",
            Scalar::Int(r.capacity_mb.saturating_mul(MB)),
        ))
        .child(Node::value(
            "FreeSpace",
            Scalar::Int(world.repository_free_mb(r).saturating_mul(MB)),
        ))
        .child(Node::text("Kind", r.kind.as_em()))
}

//! EM's objects as callers see them: bare guid ids with the full UID beside, snake_case names,
//! related objects named as well as identified.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::domain::{NetworkType, SpeedUnit};
use crate::em::xml;

/// Another EM object, named.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObjectRef {
    pub id: Uuid,
    pub uid: String,
    #[schema(required = true)]
    pub name: Option<String>,
}

impl ObjectRef {
    fn from_link(link: &xml::Link, kind: &str) -> Option<Self> {
        let id = Uuid::parse_str(xml::id_of(&link.href)).ok()?;
        Some(ObjectRef {
            id,
            uid: format!("urn:veeam:{kind}:{id}"),
            name: link.name.clone().filter(|n| !n.is_empty()),
        })
    }

    fn from_uid(uid: &str, names: &HashMap<Uuid, String>) -> Option<Self> {
        let id = Uuid::parse_str(xml::id_of(uid)).ok()?;
        Some(ObjectRef {
            id,
            uid: uid.to_string(),
            name: names.get(&id).cloned(),
        })
    }
}

pub fn guid(uid: &str) -> Uuid {
    Uuid::parse_str(xml::id_of(uid)).unwrap_or_default()
}

/// A cloud gateway as EM reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "4b0c5e24-df15-4263-b510-acad4fe73406", "uid": "urn:veeam:CloudGateway:4b0c5e24-df15-4263-b510-acad4fe73406",
    "name": "gw01.example.local", "backup_server": {"id": "29e5d158-1f58-44bc-bbaa-2752d787a91d",
    "uid": "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d", "name": "vbr01.example.local"},
    "enabled": true, "network_type": "direct", "external_ip": "gw01.example.local", "external_port": 6180,
    "internal_port": 6180, "description": "Frankfurt", "pool": null}))]
pub struct CloudGatewayView {
    pub id: Uuid,
    pub uid: String,
    /// The server's DNS name or IP address.
    pub name: String,
    #[schema(required = true)]
    pub backup_server: Option<ObjectRef>,
    #[schema(required = true)]
    pub enabled: Option<bool>,
    pub network_type: NetworkType,
    #[schema(required = true)]
    pub external_ip: Option<String>,
    #[schema(required = true)]
    pub external_port: Option<u16>,
    #[schema(required = true)]
    pub internal_port: Option<u16>,
    #[schema(required = true)]
    pub description: Option<String>,
    /// The pool the gateway is in, if any.
    #[schema(required = true)]
    pub pool: Option<ObjectRef>,
}

impl From<&xml::CloudGateway> for CloudGatewayView {
    fn from(g: &xml::CloudGateway) -> Self {
        CloudGatewayView {
            id: guid(&g.uid),
            uid: g.uid.clone(),
            name: g.name.clone(),
            backup_server: g
                .links
                .find("Up", Some("BackupServerReference"))
                .and_then(|l| ObjectRef::from_link(l, "BackupServer")),
            enabled: g.enabled,
            network_type: match g.network_mode {
                xml::NetworkMode::Direct => NetworkType::Direct,
                xml::NetworkMode::Nat => NetworkType::Nat,
            },
            external_ip: g.external_ip.clone(),
            external_port: g.external_port,
            internal_port: g.internal_port,
            description: g.description.clone(),
            pool: g
                .links
                .find("Related", Some("CloudGatewayPoolReference"))
                .and_then(|l| ObjectRef::from_link(l, "CloudGatewayPool")),
        }
    }
}

/// A cloud gateway pool with its gateways and tenants.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CloudGatewayPoolView {
    pub id: Uuid,
    pub uid: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(required = true)]
    pub backup_server: Option<ObjectRef>,
    pub cloud_gateways: Vec<ObjectRef>,
    pub cloud_tenants: Vec<ObjectRef>,
}

impl CloudGatewayPoolView {
    pub fn of(p: &xml::CloudGatewayPool, names: &HashMap<Uuid, String>) -> Self {
        CloudGatewayPoolView {
            id: guid(&p.uid),
            uid: p.uid.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            backup_server: p
                .links
                .find("Up", Some("BackupServerReference"))
                .and_then(|l| ObjectRef::from_link(l, "BackupServer")),
            cloud_gateways: p
                .cloud_gateways
                .uids
                .iter()
                .filter_map(|u| ObjectRef::from_uid(u, names))
                .collect(),
            cloud_tenants: p
                .cloud_tenants
                .uids
                .iter()
                .filter_map(|u| ObjectRef::from_uid(u, names))
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupServerView {
    /// The bare guid.
    pub id: Uuid,
    /// EM's UID, as `backup_server_uid` takes it.
    pub uid: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(required = true)]
    pub port: Option<u16>,
    #[schema(required = true)]
    pub version: Option<String>,
}

impl From<xml::BackupServer> for BackupServerView {
    fn from(b: xml::BackupServer) -> Self {
        BackupServerView {
            id: guid(&b.uid),
            uid: b.uid,
            name: b.name,
            description: b.description,
            port: b.port,
            version: b.version,
        }
    }
}

/// A Cloud Connect tenant with its storage quotas, as EM reports it. Never its password.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "3f2a1c10-0000-4000-8000-00000000e901", "uid": "urn:veeam:CloudTenant:3f2a1c10-0000-4000-8000-00000000e901",
    "name": "abc-company", "description": "ABC Company", "enabled": true, "lease_expires_at": null,
    "backup_server": {"id": "29e5d158-1f58-44bc-bbaa-2752d787a91d", "uid": "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d", "name": "vbr01.example.local"},
    "backup_resources": [{"id": "3f2a1c10-0000-4000-8000-00000000e911", "name": "Cloud Repository",
        "repository": {"id": "3f2a1c10-0000-4000-8000-00000000a101", "uid": "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101", "name": "Cloud Repo 01"},
        "quota_mb": 307200, "used_mb": 0, "wan_accelerator_uid": null}],
    "max_concurrent_tasks": 2, "throttling": null, "backup_protection_days": 7,
    "cloud_gateway_pool_uids": ["urn:veeam:CloudGatewayPool:3f2a1c10-0000-4000-8000-0000000000c1"],
    "cloud_gateway_pools": [{"id": "3f2a1c10-0000-4000-8000-0000000000c1", "uid": "urn:veeam:CloudGatewayPool:3f2a1c10-0000-4000-8000-0000000000c1", "name": "EU pool"}],
    "failover_to_other_gateways": true, "backup_count": 0, "replica_count": 0,
    "last_active_at": null, "last_result": "Success"}))]
pub struct CloudTenantView {
    pub id: Uuid,
    pub uid: String,
    /// The tenant's user name.
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    #[schema(required = true)]
    pub enabled: Option<bool>,
    /// When the tenant's lease ends; null: no lease.
    #[schema(required = true)]
    pub lease_expires_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub backup_server: Option<ObjectRef>,
    /// Storage quotas on cloud repositories.
    pub backup_resources: Vec<BackupResourceView>,
    #[schema(required = true)]
    pub max_concurrent_tasks: Option<u32>,
    /// null: not throttled.
    #[schema(required = true)]
    pub throttling: Option<ThrottlingView>,
    /// Insider protection: days deleted backups are kept; null: off.
    #[schema(required = true)]
    pub backup_protection_days: Option<u32>,
    /// Pools assigned to the tenant.
    pub cloud_gateway_pool_uids: Vec<String>,
    /// The same pools, named.
    pub cloud_gateway_pools: Vec<ObjectRef>,
    /// Whether the tenant may fail over to gateways outside its pools.
    #[schema(required = true)]
    pub failover_to_other_gateways: Option<bool>,
    #[schema(required = true)]
    pub backup_count: Option<u32>,
    #[schema(required = true)]
    pub replica_count: Option<u32>,
    /// When the tenant last connected; null: never.
    #[schema(required = true)]
    pub last_active_at: Option<DateTime<Utc>>,
    /// EM's result of the tenant's last session (`Success`, …).
    #[schema(required = true)]
    pub last_result: Option<String>,
}

/// A storage quota on a cloud repository (MB = 2^20 bytes).
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupResourceView {
    /// The id in `/v1/cloud-tenants/{id}/backup-resources/{resource_id}`.
    pub id: Uuid,
    /// The repository's name as the tenant sees it.
    pub name: String,
    #[schema(required = true)]
    pub repository: Option<ObjectRef>,
    pub quota_mb: u64,
    #[schema(required = true)]
    pub used_mb: Option<u64>,
    #[schema(required = true)]
    pub wan_accelerator_uid: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThrottlingView {
    pub speed_limit: u32,
    pub unit: SpeedUnit,
}

impl CloudTenantView {
    /// `names`: repositories' and pools' names by id, to name what the tenant refers to.
    pub fn of(t: &xml::CloudTenant, names: &HashMap<Uuid, String>) -> Self {
        let unit = match t.throttling_speed_unit {
            Some(xml::ThrottlingSpeedUnit::Mbps) => Some(SpeedUnit::Mbps),
            Some(xml::ThrottlingSpeedUnit::KBps) => Some(SpeedUnit::KBps),
            Some(xml::ThrottlingSpeedUnit::MBps) => Some(SpeedUnit::MBps),
            _ => None,
        };
        let throttling = match (t.throttling_enabled, t.throttling_speed_limit, unit) {
            (Some(true), Some(speed_limit), Some(unit)) => {
                Some(ThrottlingView { speed_limit, unit })
            }
            _ => None,
        };
        CloudTenantView {
            id: guid(&t.uid),
            uid: t.uid.clone(),
            name: t.name.clone(),
            description: t.description.clone(),
            enabled: t.enabled,
            lease_expires_at: t.lease_options.and_then(|l| l.expires()),
            backup_server: t
                .links
                .find("Up", Some("BackupServerReference"))
                .and_then(|l| ObjectRef::from_link(l, "BackupServer")),
            backup_resources: t
                .resources
                .items
                .iter()
                .map(|r| BackupResourceView::of(r, names))
                .collect(),
            max_concurrent_tasks: t.max_concurrent_tasks,
            throttling,
            backup_protection_days: t
                .backup_protection_period
                .filter(|_| t.backup_protection_enabled == Some(true)),
            cloud_gateway_pool_uids: t.cloud_gateway_pools.uids.clone(),
            cloud_gateway_pools: t
                .cloud_gateway_pools
                .uids
                .iter()
                .filter_map(|u| ObjectRef::from_uid(u, names))
                .collect(),
            failover_to_other_gateways: t.failover_to_others_gateways_if_fail,
            backup_count: t.backup_count,
            replica_count: t.replica_count,
            last_active_at: t.last_active,
            last_result: t.last_result.clone(),
        }
    }
}

impl BackupResourceView {
    pub fn of(r: &xml::CloudTenantResource, names: &HashMap<Uuid, String>) -> Self {
        let q = &r.repository_quota;
        BackupResourceView {
            id: r.id,
            name: q.display_name.clone(),
            repository: ObjectRef::from_uid(&q.repository_uid, names),
            quota_mb: q.quota,
            used_mb: q.used_quota,
            wan_accelerator_uid: q.wan_accelerator_uid.clone().filter(|w| !w.is_empty()),
        }
    }
}

/// A backup repository a storage quota can be put on (MB = 2^20 bytes; EM reports bytes).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "3f2a1c10-0000-4000-8000-00000000a101", "uid": "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101",
    "name": "Cloud Repo 01", "kind": "WindowsLocal", "capacity_mb": 1029623, "free_mb": 840962,
    "backup_server": {"id": "29e5d158-1f58-44bc-bbaa-2752d787a91d", "uid": "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d", "name": "vbr01.example.local"}}))]
pub struct RepositoryView {
    pub id: Uuid,
    pub uid: String,
    pub name: String,
    /// EM's kind: `WindowsLocal`, `LinuxLocal`, `CifsShare`, …, `Extendable` (scale-out).
    #[schema(required = true)]
    pub kind: Option<String>,
    #[schema(required = true)]
    pub capacity_mb: Option<u64>,
    #[schema(required = true)]
    pub free_mb: Option<u64>,
    #[schema(required = true)]
    pub backup_server: Option<ObjectRef>,
}

impl From<&xml::Repository> for RepositoryView {
    fn from(r: &xml::Repository) -> Self {
        const MB: u64 = 1 << 20;
        RepositoryView {
            id: guid(&r.uid),
            uid: r.uid.clone(),
            name: r.name.clone(),
            kind: r.kind.clone(),
            capacity_mb: r.capacity.map(|b| b / MB),
            free_mb: r.free_space.map(|b| b / MB),
            backup_server: r
                .links
                .find("Up", Some("BackupServerReference"))
                .and_then(|l| ObjectRef::from_link(l, "BackupServer")),
        }
    }
}

/// A page of a list EM returns whole: sorted by id, continued after the cursor's id.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One page type per entity, each listing `$ref`s to the entity's one schema: a generated client
/// gets one class per entity, not a copy inside every page.
macro_rules! pages {
    ($($page:ident of $item:ident),+ $(,)?) => {$(
        #[doc = concat!("A page of `", stringify!($item), "`s, sorted by id.")]
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $page {
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; null on the last.
            #[schema(required = true)]
            pub next_cursor: Option<String>,
        }

        impl From<Page<$item>> for $page {
            fn from(page: Page<$item>) -> Self {
                $page { items: page.items, next_cursor: page.next_cursor }
            }
        }
    )+};
}

pages!(
    CloudGatewayPage of CloudGatewayView,
    CloudGatewayPoolPage of CloudGatewayPoolView,
    BackupServerPage of BackupServerView,
    CloudTenantPage of CloudTenantView,
    RepositoryPage of RepositoryView,
);

/// `limit` and `cursor` of the lists EM returns whole.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: `Query::paging` reads them.
pub struct Paging {
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

/// The `?name=` filter of the lists: a name containing it, in any case.
pub struct NameContains(String);

impl NameContains {
    pub fn matches(&self, name: &str) -> bool {
        name.to_lowercase().contains(&self.0)
    }
}

/// Query-string reading: every parameter named, every problem reported at once.
pub struct Query {
    pairs: Vec<(String, String)>,
    errors: crate::domain::FieldErrors,
}

impl Query {
    pub fn of(req: &actix_web::HttpRequest) -> Self {
        Query {
            pairs: form_urlencoded::parse(req.query_string().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            errors: crate::domain::FieldErrors::new(),
        }
    }

    /// The parameter's value, parsed; consumed so that leftovers can be refused.
    pub fn take<T>(&mut self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let at = self.pairs.iter().position(|(k, _)| k == name)?;
        let (_, v) = self.pairs.remove(at);
        self.errors.check(name, parse(&v))
    }

    /// `limit`: 1 to `max`, `default` when absent.
    pub fn limit(&mut self, default: usize, max: usize) -> usize {
        self.take("limit", |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("must be a number from 1 to {max}"))
        })
        .unwrap_or(default)
    }

    /// `cursor`: the id of the last item of the previous page, so that any id is a place to
    /// continue from. (The base64 form given out before is still read.)
    pub fn cursor(&mut self) -> Option<Uuid> {
        self.take("cursor", |v| {
            Uuid::parse_str(v)
                .ok()
                .or_else(|| {
                    use base64::Engine;
                    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(v)
                        .ok()?;
                    Uuid::parse_str(std::str::from_utf8(&decoded).ok()?).ok()
                })
                .ok_or_else(|| "must be the next_cursor of a previous page".to_string())
        })
    }

    /// `name`: only names containing it, in any case.
    pub fn name(&mut self) -> Option<NameContains> {
        self.take("name", |v| Ok(NameContains(v.to_lowercase())))
    }

    /// A `true`/`false` parameter.
    pub fn flag(&mut self, name: &str) -> Option<bool> {
        self.take(name, |v| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("must be true or false".into()),
        })
    }

    /// `limit` (1..=500, default 100) and an id `cursor`.
    pub fn paging(&mut self) -> (usize, Option<Uuid>) {
        let limit = self.limit(100, 500);
        (limit, self.cursor())
    }

    pub fn finish(mut self) -> Result<(), super::problem::ApiError> {
        for (k, _) in std::mem::take(&mut self.pairs) {
            self.errors.add(k, "is not a known query parameter");
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(super::problem::ApiError::Malformed {
                detail: "invalid query parameters".into(),
                errors: self.errors.into_vec(),
            })
        }
    }
}

/// Sorts by id and cuts one page after `cursor`.
pub fn page<T>(
    mut items: Vec<T>,
    id: impl Fn(&T) -> Uuid,
    limit: usize,
    cursor: Option<Uuid>,
) -> Page<T> {
    items.sort_by_key(|i| id(i));
    let start = cursor.map_or(0, |c| items.partition_point(|i| id(i) <= c));
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next_cursor = more
        .then(|| rest.last().map(|i| id(i).to_string()))
        .flatten();
    Page {
        items: rest,
        next_cursor,
    }
}

/// A UID filter value: urn or bare guid of the given kind.
pub fn uid_filter<K: crate::domain::UidKind>(v: &str) -> Result<Uuid, String> {
    crate::domain::Uid::<K>::parse(v).map(|u| u.id())
}

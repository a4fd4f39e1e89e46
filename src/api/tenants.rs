//! `/v1/cloud-tenants`: onboard, change, suspend and remove Cloud Connect tenants with their
//! storage quotas (EM's side: em-api.md §16). Every write is one EM request and a task; before
//! it is sent, `tasks::precheck` refuses what EM would only fail later.

use std::collections::{BTreeMap, HashMap, HashSet};

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{Body, Reader, Request, Writer};
use super::gateways::{path_id, required};
use super::problem::{ApiError, Problem, Problems};
use super::tasks::{submit_with, submit_without_body};
use super::views::{CloudTenantPage, CloudTenantView, Paging, Query, guid, page, uid_filter};
use super::{AppState, request};
use crate::domain::{
    BackupServer, BackupServerUid, CloudGatewayPool, CloudTenant, CloudTenantChange, Count,
    Description, Edit, FieldErrors, Metadata, NewBackupResource, NewCloudTenant,
    NewTenantBackupResource, QuotaMb, QuotaResize, RepositoryUid, ResourceName, SpeedUnit,
    TaskView, TenantBackupResource, TenantName, TenantPassword, Throttling, WanAcceleratorUid,
    lease_end, parse_uid_list,
};
use crate::tasks::Command;
use crate::tasks::command::TenantDeletion;

/// A new storage quota on a cloud repository (EM's `CreateCloudTenantResourceSpec`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Cloud Repository",
    "repository_uid": "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101",
    "quota_mb": 307200, "wan_accelerator_uid": null}))]
pub struct BackupResourceRequest {
    /// The repository's name as the tenant sees it.
    #[schema(required = true, nullable = false, value_type = ResourceName)]
    pub name: Option<String>,
    /// A repository of the tenant's backup server (`GET /v1/repositories`).
    #[schema(required = true, nullable = false, value_type = RepositoryUid)]
    pub repository_uid: Option<String>,
    /// MB (2^20 bytes), 1024 to 2147483647.
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(
        required = true,
        nullable = false,
        minimum = 1024,
        maximum = 2147483647
    )]
    pub quota_mb: Option<i64>,
    /// A WAN accelerator of the same backup server; null: none.
    #[schema(value_type = Option<WanAcceleratorUid>)]
    pub wan_accelerator_uid: Option<String>,
}

/// Throttling of the tenant's traffic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"speed_limit": 10, "unit": "MBps"}))]
pub struct ThrottlingRequest {
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(required = true, nullable = false, minimum = 1, maximum = 2147483647)]
    pub speed_limit: Option<i64>,
    /// `Mbps` (megabits), `KBps` or `MBps` (bytes): case matters, as in EM.
    #[schema(required = true, nullable = false, value_type = SpeedUnit)]
    pub unit: Option<String>,
}

/// Onboards a tenant (EM's `CreateCloudTenantSpec`): its storage quotas, gateway pools, lease,
/// throttling, concurrency and insider protection in one call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "backup_server_uid": "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d",
    "name": "abc-company", "description": "ABC Company", "password": "s3cret-Pa55",
    "enabled": true, "lease_expires_at": "2030-12-31T00:00:00Z",
    "backup_resources": [{"name": "Cloud Repository",
        "repository_uid": "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a101",
        "quota_mb": 307200, "wan_accelerator_uid": null}],
    "max_concurrent_tasks": 2, "throttling": {"speed_limit": 10, "unit": "MBps"},
    "backup_protection_days": 7,
    "cloud_gateway_pool_uids": ["urn:veeam:CloudGatewayPool:3f2a1c10-0000-4000-8000-0000000000c1"],
    "failover_to_other_gateways": true, "metadata": {"order": "42"}}))]
pub struct CreateCloudTenantRequest {
    #[schema(required = true, nullable = false, value_type = BackupServerUid)]
    pub backup_server_uid: Option<String>,
    /// The tenant's user name, unique on the backup server (any letter case).
    #[schema(required = true, nullable = false, value_type = TenantName)]
    pub name: Option<String>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    #[schema(required = true, nullable = false, value_type = TenantPassword)]
    pub password: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// When the tenant's lease ends (in the future); null: no lease.
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub lease_expires_at: Option<String>,
    /// Storage quotas, at most one per repository.
    #[schema(value_type = Option<Vec<BackupResourceRequest>>)]
    pub backup_resources: Option<Vec<BackupResourceRequest>>,
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub max_concurrent_tasks: Option<i64>,
    /// null: not throttled.
    #[schema(value_type = Option<ThrottlingRequest>)]
    pub throttling: Option<ThrottlingRequest>,
    /// Insider protection: days deleted backups are kept; null: off.
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub backup_protection_days: Option<i64>,
    /// Pools of the same backup server whose gateways the tenant uses; absent or `[]`: EM picks.
    #[schema(value_type = Option<Vec<crate::domain::CloudGatewayPoolUid>>)]
    pub cloud_gateway_pool_uids: Option<Vec<String>>,
    /// Whether the tenant may fail over to gateways outside its pools when those are down.
    pub failover_to_other_gateways: Option<bool>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<BTreeMap<String, String>>,
}

fn parse_lease(e: &mut FieldErrors, field: &str, text: &str) -> Option<DateTime<Utc>> {
    let at = e.check(
        field,
        DateTime::parse_from_rfc3339(text)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| "must be an RFC 3339 date-time, e.g. 2030-12-31T00:00:00Z".to_string()),
    )?;
    e.check(field, lease_end(at, Utc::now()))
}

/// A nullable PATCH field: absent keeps, `null` clears, a value (if it parsed) sets; `None`
/// when the value did not parse (its error is recorded).
fn edit<T>(given: Option<Option<Option<T>>>) -> Option<Edit<T>> {
    match given {
        None => Some(Edit::Keep),
        Some(None) => Some(Edit::Clear),
        Some(Some(v)) => v.map(Edit::Set),
    }
}

fn parse_count(e: &mut FieldErrors, field: &str, n: Option<i64>) -> Option<Option<Count>> {
    match n {
        None => Some(None),
        Some(n) => e.check(field, Count::parse(n)).map(Some),
    }
}

fn parse_throttling(e: &mut FieldErrors, field: &str, t: &ThrottlingRequest) -> Option<Throttling> {
    let limit = match t.speed_limit {
        Some(n) => e.check(&format!("{field}.speed_limit"), Count::parse(n)),
        None => {
            e.add(format!("{field}.speed_limit"), "is required");
            None
        }
    };
    let unit = required(e, &format!("{field}.unit"), &t.unit).and_then(|u| {
        e.check(
            &format!("{field}.unit"),
            SpeedUnit::parse(u).ok_or_else(|| format!("must be {}", SpeedUnit::choices())),
        )
    });
    Some(Throttling {
        speed_limit: limit?,
        unit: unit?,
    })
}

fn parse_resource(
    e: &mut FieldErrors,
    field: &str,
    r: &BackupResourceRequest,
) -> Option<NewBackupResource> {
    let f = |name: &str| {
        if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        }
    };
    let name =
        required(e, &f("name"), &r.name).and_then(|n| e.check(&f("name"), ResourceName::parse(n)));
    let repository = required(e, &f("repository_uid"), &r.repository_uid)
        .and_then(|u| e.check(&f("repository_uid"), RepositoryUid::parse(u)));
    let quota_mb = match r.quota_mb {
        Some(n) => e.check(&f("quota_mb"), QuotaMb::parse(n)),
        None => {
            e.add(f("quota_mb"), "is required");
            None
        }
    };
    let wan_accelerator = match r.wan_accelerator_uid.as_deref() {
        None => Some(None),
        Some(w) => e
            .check(&f("wan_accelerator_uid"), WanAcceleratorUid::parse(w))
            .map(Some),
    };
    Some(NewBackupResource {
        name: name?,
        repository: repository?,
        quota_mb: quota_mb?,
        wan_accelerator: wan_accelerator?,
    })
}

impl Request for CreateCloudTenantRequest {
    type Value = (NewCloudTenant, Metadata);

    fn parse(self) -> Result<Self::Value, ApiError> {
        let mut e = FieldErrors::new();
        let backup_server = required(&mut e, "backup_server_uid", &self.backup_server_uid)
            .and_then(|v| e.check("backup_server_uid", BackupServerUid::parse(v)));
        let name = required(&mut e, "name", &self.name)
            .and_then(|v| e.check("name", TenantName::parse(v)));
        let password = required(&mut e, "password", &self.password)
            .and_then(|v| e.check("password", TenantPassword::parse(v)));
        let description = match &self.description {
            Some(d) => e.check("description", Description::parse(d)).map(Some),
            None => Some(None),
        };
        let lease = match &self.lease_expires_at {
            Some(t) => parse_lease(&mut e, "lease_expires_at", t).map(Some),
            None => Some(None),
        };
        let mut resources = Vec::new();
        let mut repositories = HashSet::new();
        for (i, r) in self.backup_resources.iter().flatten().enumerate() {
            let field = format!("backup_resources[{i}]");
            if let Some(r) = parse_resource(&mut e, &field, r) {
                if !repositories.insert(r.repository.id()) {
                    e.add(
                        format!("{field}.repository_uid"),
                        "names a repository another quota of this request is on: a tenant \
                         has at most one quota per repository",
                    );
                }
                resources.push(r);
            }
        }
        let max_tasks = parse_count(&mut e, "max_concurrent_tasks", self.max_concurrent_tasks);
        let protection = parse_count(
            &mut e,
            "backup_protection_days",
            self.backup_protection_days,
        );
        let throttling = match &self.throttling {
            Some(t) => parse_throttling(&mut e, "throttling", t).map(Some),
            None => Some(None),
        };
        let pools = parse_uid_list::<CloudGatewayPool>(
            "cloud_gateway_pool_uids",
            self.cloud_gateway_pool_uids.as_deref().unwrap_or_default(),
            0,
            &mut e,
        );
        let metadata = Metadata::parse(self.metadata.unwrap_or_default(), &mut e);
        match (
            backup_server,
            name,
            password,
            description,
            lease,
            max_tasks,
            protection,
            throttling,
        ) {
            (
                Some(backup_server),
                Some(name),
                Some(password),
                Some(description),
                Some(lease_expires_at),
                Some(max_concurrent_tasks),
                Some(backup_protection_days),
                Some(throttling),
            ) if e.is_empty() => Ok((
                NewCloudTenant {
                    backup_server,
                    name,
                    description,
                    password: Some(password),
                    enabled: self.enabled.unwrap_or(true),
                    lease_expires_at,
                    backup_resources: resources,
                    max_concurrent_tasks,
                    throttling,
                    backup_protection_days,
                    cloud_gateway_pools: pools,
                    failover_to_other_gateways: self.failover_to_other_gateways,
                },
                metadata,
            )),
            _ => Err(ApiError::Invalid(e.into_vec())),
        }
    }
}

/// A quota's new size.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "3f2a1c10-0000-4000-8000-00000000e911", "quota_mb": 409600}))]
pub struct QuotaResizeRequest {
    /// The quota's id (`backup_resources[].id` of the tenant).
    #[schema(required = true, nullable = false, value_type = Uuid)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(
        required = true,
        nullable = false,
        minimum = 1024,
        maximum = 2147483647
    )]
    pub quota_mb: Option<i64>,
}

/// Changes a tenant (EM's PUT of the whole entity): fields left out keep what EM has; `null`
/// turns a lease, throttling or insider protection off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": false, "description": "suspended: unpaid invoice 4711",
    "backup_resources": [{"id": "3f2a1c10-0000-4000-8000-00000000e911", "quota_mb": 409600}]}),
    min_properties = 1)]
pub struct UpdateCloudTenantRequest {
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    /// false suspends the tenant (its sessions end); true resumes it.
    pub enabled: Option<bool>,
    /// A new password.
    #[schema(value_type = Option<TenantPassword>)]
    pub password: Option<String>,
    /// A new end of the lease; null: no lease.
    #[serde(default, deserialize_with = "request::present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub lease_expires_at: Option<Option<String>>,
    /// null: not throttled.
    #[serde(default, deserialize_with = "request::present")]
    #[schema(value_type = Option<ThrottlingRequest>)]
    pub throttling: Option<Option<ThrottlingRequest>>,
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub max_concurrent_tasks: Option<i64>,
    /// null: insider protection off.
    #[serde(default, deserialize_with = "request::present_whole_number")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 2147483647)]
    pub backup_protection_days: Option<Option<i64>>,
    /// Replaces the tenant's pools; `[]`: none (EM picks gateways).
    #[schema(value_type = Option<Vec<crate::domain::CloudGatewayPoolUid>>)]
    pub cloud_gateway_pool_uids: Option<Vec<String>>,
    pub failover_to_other_gateways: Option<bool>,
    /// Quotas to resize (at least one); the others are kept. New quotas are added with
    /// `POST /v1/cloud-tenants/{id}/backup-resources`.
    #[schema(value_type = Option<Vec<QuotaResizeRequest>>, min_items = 1)]
    pub backup_resources: Option<Vec<QuotaResizeRequest>>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl request::CrossFieldRules for UpdateCloudTenantRequest {
    fn rules() -> Vec<serde_json::Value> {
        let any = |f: &str| serde_json::json!({"required": [f]});
        vec![serde_json::json!({"anyOf": [
            request::given("description", "string"),
            request::given("enabled", "boolean"),
            request::given("password", "string"),
            any("lease_expires_at"),
            any("throttling"),
            request::given("max_concurrent_tasks", "integer"),
            any("backup_protection_days"),
            request::given("cloud_gateway_pool_uids", "array"),
            request::given("failover_to_other_gateways", "boolean"),
            request::given("backup_resources", "array"),
        ]})]
    }
}

impl Request for UpdateCloudTenantRequest {
    type Value = (CloudTenantChange, Metadata);

    fn parse(self) -> Result<Self::Value, ApiError> {
        let mut e = FieldErrors::new();
        let password = self
            .password
            .as_deref()
            .and_then(|p| e.check("password", TenantPassword::parse(p)));
        let lease = edit(self.lease_expires_at.as_ref().map(|l| {
            l.as_deref()
                .map(|t| parse_lease(&mut e, "lease_expires_at", t))
        }));
        let throttling = edit(self.throttling.as_ref().map(|t| {
            t.as_ref()
                .map(|t| parse_throttling(&mut e, "throttling", t))
        }));
        let protection = edit(
            self.backup_protection_days
                .map(|d| d.map(|n| e.check("backup_protection_days", Count::parse(n)))),
        );
        let max_tasks = parse_count(&mut e, "max_concurrent_tasks", self.max_concurrent_tasks);
        if self.backup_resources.as_ref().is_some_and(Vec::is_empty) {
            e.add(
                "backup_resources",
                "must list at least one quota to resize (leave it out to keep them all)",
            );
        }
        let mut resizes = Vec::new();
        let mut seen = HashSet::new();
        for (i, r) in self.backup_resources.iter().flatten().enumerate() {
            let field = format!("backup_resources[{i}]");
            let id = required(&mut e, &format!("{field}.id"), &r.id).and_then(|id| {
                e.check(
                    &format!("{field}.id"),
                    Uuid::parse_str(id)
                        .ok()
                        .filter(|_| id.len() == 36)
                        .ok_or_else(|| "must be a quota's id (a guid)".to_string()),
                )
            });
            let quota_mb = match r.quota_mb {
                Some(n) => e.check(&format!("{field}.quota_mb"), QuotaMb::parse(n)),
                None => {
                    e.add(format!("{field}.quota_mb"), "is required");
                    None
                }
            };
            if let (Some(id), Some(quota_mb)) = (id, quota_mb) {
                if !seen.insert(id) {
                    e.add(format!("{field}.id"), "names a quota listed before");
                }
                resizes.push(QuotaResize { id, quota_mb });
            }
        }
        let change = CloudTenantChange {
            description: self
                .description
                .as_deref()
                .and_then(|d| e.check("description", Description::parse(d))),
            enabled: self.enabled,
            password_changed: password.is_some(),
            password,
            lease_expires_at: lease.unwrap_or_default(),
            throttling: throttling.unwrap_or_default(),
            max_concurrent_tasks: max_tasks.flatten(),
            backup_protection_days: protection.unwrap_or_default(),
            cloud_gateway_pools: self.cloud_gateway_pool_uids.as_deref().map(|l| {
                parse_uid_list::<CloudGatewayPool>("cloud_gateway_pool_uids", l, 0, &mut e)
            }),
            failover_to_other_gateways: self.failover_to_other_gateways,
            backup_resources: resizes,
        };
        let metadata = Metadata::parse(self.metadata.unwrap_or_default(), &mut e);
        if e.is_empty() && change == CloudTenantChange::default() {
            e.add("body", "names nothing to change");
        }
        if !e.is_empty() {
            return Err(ApiError::Invalid(e.into_vec()));
        }
        Ok((change, metadata))
    }
}

/// A new storage quota for an existing tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Cloud Repository 2",
    "repository_uid": "urn:veeam:Repository:3f2a1c10-0000-4000-8000-00000000a102",
    "quota_mb": 102400, "wan_accelerator_uid": null, "metadata": {"order": "43"}}))]
pub struct CreateBackupResourceRequest {
    #[schema(required = true, nullable = false, value_type = ResourceName)]
    pub name: Option<String>,
    #[schema(required = true, nullable = false, value_type = RepositoryUid)]
    pub repository_uid: Option<String>,
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(
        required = true,
        nullable = false,
        minimum = 1024,
        maximum = 2147483647
    )]
    pub quota_mb: Option<i64>,
    #[schema(value_type = Option<WanAcceleratorUid>)]
    pub wan_accelerator_uid: Option<String>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl Request for CreateBackupResourceRequest {
    type Value = (NewBackupResource, Metadata);

    fn parse(self) -> Result<Self::Value, ApiError> {
        let mut e = FieldErrors::new();
        let resource = parse_resource(
            &mut e,
            "",
            &BackupResourceRequest {
                name: self.name,
                repository_uid: self.repository_uid,
                quota_mb: self.quota_mb,
                wan_accelerator_uid: self.wan_accelerator_uid,
            },
        );
        let metadata = Metadata::parse(self.metadata.unwrap_or_default(), &mut e);
        match resource {
            Some(r) if e.is_empty() => Ok((r, metadata)),
            _ => Err(ApiError::Invalid(e.into_vec())),
        }
    }
}

/// `?strict_capacity=true`: a quota beyond its repository's free space is refused (409)
/// instead of sent on with a warning.
fn strict_capacity(req: &HttpRequest) -> Result<bool, ApiError> {
    let mut q = Query::of(req);
    let strict = q.flag("strict_capacity").unwrap_or(false);
    q.finish()?;
    Ok(strict)
}

/// Names for repository and pool UIDs, from EM's lists.
async fn names(state: &AppState) -> Result<HashMap<Uuid, String>, ApiError> {
    let (repositories, pools) =
        tokio::join!(state.em.repositories(), state.em.cloud_gateway_pools());
    let mut names = HashMap::new();
    for r in repositories? {
        names.insert(guid(&r.uid), r.name);
    }
    for p in pools? {
        names.insert(guid(&p.uid), p.name);
    }
    Ok(names)
}

/// Lists tenants with their storage quotas (size, use, repository), counts and last activity.
#[utoipa::path(get, path = "/v1/cloud-tenants", tag = "cloud tenants",
    operation_id = "listCloudTenants",
    params(
        ("backup_server_uid" = Option<Uuid>, Query, description = "Only tenants of this backup server (its guid; the UID is accepted too)"),
        ("name" = Option<String>, Query, description = "Only names containing this (case-insensitive)"),
        ("enabled" = Option<bool>, Query, description = "Only enabled (true) or suspended (false) tenants"),
        Paging,
    ),
    responses(
        (status = 200, body = CloudTenantPage, description = "One page, sorted by id"),
        Problems::<400, 502>,
    ))]
pub async fn list(
    _: Reader,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = Query::of(&req);
    let server = q.take("backup_server_uid", uid_filter::<BackupServer>);
    let name = q.name();
    let enabled = q.flag("enabled");
    let (limit, cursor) = q.paging();
    q.finish()?;
    let (tenants, names) = tokio::join!(state.em.cloud_tenants(), names(&state));
    let names = names?;
    let items: Vec<CloudTenantView> = tenants?
        .iter()
        .map(|t| CloudTenantView::of(t, &names))
        .filter(|t| server.is_none_or(|s| t.backup_server.as_ref().is_some_and(|b| b.id == s)))
        .filter(|t| enabled.is_none_or(|e| t.enabled == Some(e)))
        .filter(|t| name.as_ref().is_none_or(|n| n.matches(&t.name)))
        .collect();
    Ok(HttpResponse::Ok().json(CloudTenantPage::from(page(items, |t| t.id, limit, cursor))))
}

/// Reads one tenant with its storage quotas.
#[utoipa::path(get, path = "/v1/cloud-tenants/{id}", tag = "cloud tenants",
    operation_id = "getCloudTenant",
    params(("id" = Uuid, Path, description = "The tenant's guid (its UID is accepted too)")),
    responses(
        (status = 200, body = CloudTenantView, description = "The tenant"),
        Problems::<404, 502>,
    ))]
pub async fn get(
    _: Reader,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<CloudTenant>(&id, "cloud tenant")?;
    let (tenant, names) = tokio::join!(state.em.cloud_tenant(id), names(&state));
    let tenant = tenant?.ok_or_else(|| ApiError::NotFound(format!("no cloud tenant {id}")))?;
    Ok(HttpResponse::Ok().json(CloudTenantView::of(&tenant, &names?)))
}

/// Onboards a tenant with its storage quotas and gateway pools in one call. Answers at once
/// with a task; the password goes to EM and nowhere else.
#[utoipa::path(post, path = "/v1/cloud-tenants", tag = "cloud tenants",
    operation_id = "createCloudTenant", request_body = CreateCloudTenantRequest,
    params(("strict_capacity" = Option<bool>, Query, description = "true: a quota larger than its repository's free space is refused (409) instead of sent on with a warning in the task")),
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task (`resource` becomes the tenant)",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "Malformed, or EM refused the request (the problem's `em` holds EM's message)"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "Conflicts with EM's objects (`errors` names each field): the name is taken on that backup server, a repository or pool is unknown or on another backup server; or a request with this `Idempotency-Key` is still in progress"),
        Problems::<502>,
    ))]
pub async fn create(
    key: Writer,
    body: Body<CreateCloudTenantRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let strict = strict_capacity(&req)?;
    submit_with(&req, &state, &key, body, Command::CreateCloudTenant, strict).await
}

/// Changes a tenant: suspend or resume it, set its password, lease, throttling, concurrency,
/// insider protection, pools, or resize its quotas. Answers at once with a task.
#[utoipa::path(patch, path = "/v1/cloud-tenants/{id}", tag = "cloud tenants",
    operation_id = "updateCloudTenant",
    params(
        ("id" = Uuid, Path, description = "The tenant's guid (its UID is accepted too)"),
        ("strict_capacity" = Option<bool>, Query, description = "true: growing a quota beyond its repository's free space is refused (409) instead of sent on with a warning"),
    ),
    request_body = UpdateCloudTenantRequest,
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "Malformed, or EM refused the request (the problem's `em` holds EM's message)"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "Conflicts with EM's objects (`errors` names each field): a quota that is not the tenant's, a size below what is used, a pool unknown or on another backup server; or a request with this `Idempotency-Key` is still in progress"),
        Problems::<404, 502>,
    ))]
pub async fn update(
    key: Writer,
    body: Body<UpdateCloudTenantRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<CloudTenant>(&id, "cloud tenant")?;
    let strict = strict_capacity(&req)?;
    submit_with(
        &req,
        &state,
        &key,
        body,
        |change| Command::UpdateCloudTenant(id, change),
        strict,
    )
    .await
}

/// Removes a tenant. Its backups stay on the repositories unless `delete_backups=true`.
/// Answers at once with a task.
#[utoipa::path(delete, path = "/v1/cloud-tenants/{id}", tag = "cloud tenants",
    operation_id = "deleteCloudTenant",
    params(
        ("id" = Uuid, Path, description = "The tenant's guid (its UID is accepted too)"),
        ("delete_backups" = Option<bool>, Query, description = "true: the tenant's backups are deleted too (default false: they stay)"),
    ),
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        Problems::<400, 404, 502>,
    ))]
pub async fn delete(
    key: Writer,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<CloudTenant>(&id, "cloud tenant")?;
    let mut q = Query::of(&req);
    let delete_backups = q.flag("delete_backups").unwrap_or(false);
    q.finish()?;
    let command = Command::DeleteCloudTenant(id, TenantDeletion { delete_backups });
    submit_without_body(&req, &state, &key, command).await
}

/// Adds a storage quota to a tenant. Answers at once with a task (`resource` becomes the
/// quota).
#[utoipa::path(post, path = "/v1/cloud-tenants/{id}/backup-resources", tag = "cloud tenants",
    operation_id = "createCloudTenantBackupResource",
    params(
        ("id" = Uuid, Path, description = "The tenant's guid (its UID is accepted too)"),
        ("strict_capacity" = Option<bool>, Query, description = "true: a quota larger than its repository's free space is refused (409) instead of sent on with a warning"),
    ),
    request_body = CreateBackupResourceRequest,
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "Malformed, or EM refused the request (the problem's `em` holds EM's message)"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "Conflicts with EM's objects: the tenant already has a quota on that repository, or the repository is unknown or on another backup server; or a request with this `Idempotency-Key` is still in progress"),
        Problems::<404, 502>,
    ))]
pub async fn create_resource(
    key: Writer,
    body: Body<CreateBackupResourceRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path_id::<CloudTenant>(&id, "cloud tenant")?;
    let strict = strict_capacity(&req)?;
    submit_with(
        &req,
        &state,
        &key,
        body,
        |resource| {
            Command::CreateCloudTenantBackupResource(NewTenantBackupResource { tenant, resource })
        },
        strict,
    )
    .await
}

/// Removes a storage quota; the backups in it stay on the repository. Answers at once with a
/// task.
#[utoipa::path(delete, path = "/v1/cloud-tenants/{id}/backup-resources/{resource_id}",
    tag = "cloud tenants", operation_id = "deleteCloudTenantBackupResource",
    params(
        ("id" = Uuid, Path, description = "The tenant's guid (its UID is accepted too)"),
        ("resource_id" = Uuid, Path, description = "The quota's id"),
    ),
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        Problems::<404, 502>,
    ))]
pub async fn delete_resource(
    key: Writer,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, resource) = path.into_inner();
    let tenant = path_id::<CloudTenant>(&tenant, "cloud tenant")?;
    let resource = Uuid::parse_str(&resource)
        .ok()
        .filter(|_| resource.len() == 36)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no storage quota {resource} on cloud tenant {tenant}"
            ))
        })?;
    let command =
        Command::DeleteCloudTenantBackupResource(TenantBackupResource { tenant, resource });
    submit_without_body(&req, &state, &key, command).await
}

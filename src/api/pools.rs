//! `/v1/cloud-gateway-pools`.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use std::collections::HashMap;

use uuid::Uuid;

use crate::tasks::Command;

use super::extract::{Body, Reader, Request, Writer};
use super::gateways::{path_id, required};
use super::problem::{ApiError, Problem, Problems};
use super::tasks::{submit, submit_without_body};
use super::views::{
    CloudGatewayPoolPage, CloudGatewayPoolView, Paging, Query, guid, page, uid_filter,
};
use super::{AppState, request};
use crate::domain::{
    BackupServerUid, CloudGateway, CloudGatewayPoolChange, CloudGatewayUid, CloudTenant,
    CloudTenantUid, Description, FieldErrors, Metadata, NewCloudGatewayPool, PoolName, TaskView,
    parse_uid_list,
};

/// Creates a cloud gateway pool (EM's `CreateCloudGatewayPoolSpec`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "backup_server_uid": "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d",
    "name": "GatewayPool 1", "description": "EU tenants",
    "cloud_gateway_uids": ["urn:veeam:CloudGateway:3e4e6d17-ee2a-430f-807c-8d92af2a5551"],
    "cloud_tenant_uids": ["urn:veeam:CloudTenant:5cf540af-512a-5ba8-9f12-77fba51207e0"],
    "metadata": {}}))]
pub struct CreateCloudGatewayPoolRequest {
    /// The backup server: `urn:veeam:BackupServer:<guid>` or the bare guid.
    #[schema(required = true, nullable = false, value_type = BackupServerUid)]
    pub backup_server_uid: Option<String>,
    /// Unique on the backup server.
    #[schema(required = true, nullable = false, value_type = PoolName)]
    pub name: Option<String>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    /// At least one (a gateway listed twice counts once); a gateway can be in only one pool.
    #[schema(required = true, nullable = false, min_items = 1, value_type = Vec<CloudGatewayUid>)]
    pub cloud_gateway_uids: Option<Vec<String>>,
    /// Tenants the pool is assigned to (may be empty).
    #[schema(value_type = Option<Vec<CloudTenantUid>>)]
    pub cloud_tenant_uids: Option<Vec<String>>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl Request for CreateCloudGatewayPoolRequest {
    type Value = (NewCloudGatewayPool, Metadata);

    fn parse(self) -> Result<Self::Value, ApiError> {
        let mut e = FieldErrors::new();
        let backup_server = required(&mut e, "backup_server_uid", &self.backup_server_uid)
            .and_then(|v| e.check("backup_server_uid", BackupServerUid::parse(v)));
        let name =
            required(&mut e, "name", &self.name).and_then(|v| e.check("name", PoolName::parse(v)));
        let description = match &self.description {
            Some(d) => e.check("description", Description::parse(d)).map(Some),
            None => Some(None),
        };
        let gateways = match &self.cloud_gateway_uids {
            Some(list) => parse_uid_list::<CloudGateway>("cloud_gateway_uids", list, 1, &mut e),
            None => {
                e.add("cloud_gateway_uids", "is required");
                Vec::new()
            }
        };
        let tenants = parse_uid_list::<CloudTenant>(
            "cloud_tenant_uids",
            self.cloud_tenant_uids.as_deref().unwrap_or_default(),
            0,
            &mut e,
        );
        let metadata = Metadata::parse(self.metadata.unwrap_or_default(), &mut e);
        match (backup_server, name, description) {
            (Some(backup_server), Some(name), Some(description)) if e.is_empty() => Ok((
                NewCloudGatewayPool {
                    backup_server,
                    name,
                    description,
                    gateways,
                    tenants,
                },
                metadata,
            )),
            _ => Err(ApiError::Invalid(e.into_vec())),
        }
    }
}

/// Creates a cloud gateway pool from existing gateways. Answers at once with a task.
#[utoipa::path(post, path = "/v1/cloud-gateway-pools", tag = "cloud gateway pools",
    operation_id = "createCloudGatewayPool", request_body = CreateCloudGatewayPoolRequest,
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "Malformed, or EM refused the request (the problem's `em` holds EM's message)"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "A field names an object Enterprise Manager does not have (`errors` says which), or a request with this `Idempotency-Key` is still in progress"),
        Problems::<502>,
    ))]
pub async fn create(
    key: Writer,
    body: Body<CreateCloudGatewayPoolRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    submit(&req, &state, &key, body, Command::CreateCloudGatewayPool).await
}

/// Changes a pool. Lists given replace the pool's lists; fields left out keep what EM has.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "EU pool (primary)", "cloud_tenant_uids": []}), min_properties = 1)]
pub struct UpdateCloudGatewayPoolRequest {
    #[schema(value_type = Option<PoolName>)]
    pub name: Option<String>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    /// At least one; replaces the pool's gateways.
    #[schema(min_items = 1, value_type = Option<Vec<CloudGatewayUid>>)]
    pub cloud_gateway_uids: Option<Vec<String>>,
    /// Replaces the pool's tenants (`[]`: none).
    #[schema(value_type = Option<Vec<CloudTenantUid>>)]
    pub cloud_tenant_uids: Option<Vec<String>>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl request::CrossFieldRules for UpdateCloudGatewayPoolRequest {
    fn rules() -> Vec<serde_json::Value> {
        vec![request::one_of_given(&[
            ("name", "string"),
            ("description", "string"),
            ("cloud_gateway_uids", "array"),
            ("cloud_tenant_uids", "array"),
        ])]
    }
}

impl Request for UpdateCloudGatewayPoolRequest {
    type Value = (CloudGatewayPoolChange, Metadata);

    fn parse(self) -> Result<Self::Value, ApiError> {
        let mut e = FieldErrors::new();
        let change = CloudGatewayPoolChange {
            name: self
                .name
                .as_deref()
                .and_then(|n| e.check("name", PoolName::parse(n))),
            description: self
                .description
                .as_deref()
                .and_then(|d| e.check("description", Description::parse(d))),
            gateways: self
                .cloud_gateway_uids
                .as_deref()
                .map(|l| parse_uid_list::<CloudGateway>("cloud_gateway_uids", l, 1, &mut e)),
            tenants: self
                .cloud_tenant_uids
                .as_deref()
                .map(|l| parse_uid_list::<CloudTenant>("cloud_tenant_uids", l, 0, &mut e)),
        };
        let metadata = Metadata::parse(self.metadata.unwrap_or_default(), &mut e);
        if e.is_empty() && change == CloudGatewayPoolChange::default() {
            e.add("body", "names nothing to change");
        }
        if !e.is_empty() {
            return Err(ApiError::Invalid(e.into_vec()));
        }
        Ok((change, metadata))
    }
}

/// Names for gateway and tenant UIDs, from EM's reference lists.
async fn names(state: &AppState) -> Result<HashMap<Uuid, String>, ApiError> {
    let (gateways, tenants) = tokio::join!(state.em.cloud_gateways(), state.em.cloud_tenants());
    let mut names: HashMap<Uuid, String> = HashMap::new();
    for g in gateways? {
        names.insert(guid(&g.uid), g.name);
    }
    for t in tenants? {
        names.insert(guid(&t.uid), t.name);
    }
    Ok(names)
}

/// Lists cloud gateway pools with their gateways and tenants.
#[utoipa::path(get, path = "/v1/cloud-gateway-pools", tag = "cloud gateway pools",
    operation_id = "listCloudGatewayPools",
    params(
        ("backup_server_uid" = Option<Uuid>, Query, description = "Only pools of this backup server (its guid; the UID is accepted too)"),
        ("tenant_uid" = Option<Uuid>, Query, description = "Only pools assigned to this tenant (its guid; the UID is accepted too)"),
        ("gateway_uid" = Option<Uuid>, Query, description = "Only the pool holding this gateway (its guid; the UID is accepted too)"),
        ("name" = Option<String>, Query, description = "Only names containing this (case-insensitive)"),
        Paging,
    ),
    responses(
        (status = 200, body = CloudGatewayPoolPage, description = "One page, sorted by id"),
        Problems::<400, 502>,
    ))]
pub async fn list(
    _: Reader,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = Query::of(&req);
    let server = q.take(
        "backup_server_uid",
        uid_filter::<crate::domain::BackupServer>,
    );
    let tenant = q.take("tenant_uid", uid_filter::<CloudTenant>);
    let gateway = q.take("gateway_uid", uid_filter::<CloudGateway>);
    let name = q.name();
    let (limit, cursor) = q.paging();
    q.finish()?;
    let (pools, names) = tokio::join!(state.em.cloud_gateway_pools(), names(&state));
    let names = names?;
    let items: Vec<CloudGatewayPoolView> = pools?
        .iter()
        .map(|p| CloudGatewayPoolView::of(p, &names))
        .filter(|p| server.is_none_or(|s| p.backup_server.as_ref().is_some_and(|b| b.id == s)))
        .filter(|p| tenant.is_none_or(|t| p.cloud_tenants.iter().any(|x| x.id == t)))
        .filter(|p| gateway.is_none_or(|g| p.cloud_gateways.iter().any(|x| x.id == g)))
        .filter(|p| name.as_ref().is_none_or(|n| n.matches(&p.name)))
        .collect();
    Ok(HttpResponse::Ok().json(CloudGatewayPoolPage::from(page(
        items,
        |p| p.id,
        limit,
        cursor,
    ))))
}

/// Reads one pool with its gateways and tenants.
#[utoipa::path(get, path = "/v1/cloud-gateway-pools/{id}", tag = "cloud gateway pools",
    operation_id = "getCloudGatewayPool",
    params(("id" = Uuid, Path, description = "The pool's guid (its UID is accepted too)")),
    responses(
        (status = 200, body = CloudGatewayPoolView, description = "The pool"),
        Problems::<404, 502>,
    ))]
pub async fn get(
    _: Reader,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<crate::domain::CloudGatewayPool>(&id, "cloud gateway pool")?;
    let (pool, names) = tokio::join!(state.em.cloud_gateway_pool(id), names(&state));
    let pool = pool?.ok_or_else(|| ApiError::NotFound(format!("no cloud gateway pool {id}")))?;
    Ok(HttpResponse::Ok().json(CloudGatewayPoolView::of(&pool, &names?)))
}

/// Changes a pool (EM's PUT of the whole entity). Answers at once with a task.
#[utoipa::path(patch, path = "/v1/cloud-gateway-pools/{id}", tag = "cloud gateway pools",
    operation_id = "updateCloudGatewayPool",
    params(("id" = Uuid, Path, description = "The pool's guid (its UID is accepted too)")),
    request_body = UpdateCloudGatewayPoolRequest,
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "Malformed, or EM refused the request (the problem's `em` holds EM's message)"),
        Problems::<404, 502>,
    ))]
pub async fn update(
    key: Writer,
    body: Body<UpdateCloudGatewayPoolRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<crate::domain::CloudGatewayPool>(&id, "cloud gateway pool")?;
    submit(&req, &state, &key, body, |change| {
        Command::UpdateCloudGatewayPool(id, change)
    })
    .await
}

/// Deletes a pool; its gateways stay. Answers at once with a task.
#[utoipa::path(delete, path = "/v1/cloud-gateway-pools/{id}", tag = "cloud gateway pools",
    operation_id = "deleteCloudGatewayPool",
    params(("id" = Uuid, Path, description = "The pool's guid (its UID is accepted too)")),
    responses(
        (status = 202, body = TaskView, description = "Accepted; `Location` names the task",
            headers(("Location" = String, description = "/v1/tasks/{id}"))),
        Problems::<404, 502>,
    ))]
pub async fn delete(
    key: Writer,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<crate::domain::CloudGatewayPool>(&id, "cloud gateway pool")?;
    submit_without_body(&req, &state, &key, Command::DeleteCloudGatewayPool(id)).await
}

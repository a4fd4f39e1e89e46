//! What a portal needs to fill in UIDs: `/v1/backup-servers` and `/v1/cloud-tenants`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::problem::{ApiError, Problem};
use super::{AppState, caller};
use crate::domain::Scope;
use crate::em::xml;

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupServerView {
    /// The bare guid.
    pub id: Uuid,
    /// EM's UID, as `backup_server_uid` takes it.
    pub uid: String,
    pub name: String,
    pub description: Option<String>,
    pub port: Option<u16>,
    pub version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CloudTenantView {
    pub id: Uuid,
    pub uid: String,
    pub name: String,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// Pools assigned to the tenant.
    pub cloud_gateway_pool_uids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupServerList {
    pub items: Vec<BackupServerView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CloudTenantList {
    pub items: Vec<CloudTenantView>,
}

fn guid(uid: &str) -> Uuid {
    Uuid::parse_str(xml::id_of(uid)).unwrap_or_default()
}

/// Lists the backup servers EM manages.
#[utoipa::path(get, path = "/v1/backup-servers", tag = "inventory",
    responses(
        (status = 200, body = BackupServerList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
pub async fn backup_servers(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let items = state
        .em
        .backup_servers()
        .await?
        .into_iter()
        .map(|b| BackupServerView {
            id: guid(&b.uid),
            uid: b.uid,
            name: b.name,
            description: b.description,
            port: b.port,
            version: b.version,
        })
        .collect();
    Ok(HttpResponse::Ok().json(BackupServerList { items }))
}

/// Lists the Cloud Connect tenants.
#[utoipa::path(get, path = "/v1/cloud-tenants", tag = "inventory",
    responses(
        (status = 200, body = CloudTenantList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = [])))]
pub async fn cloud_tenants(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let items = state
        .em
        .cloud_tenants()
        .await?
        .into_iter()
        .map(|t| CloudTenantView {
            id: guid(&t.uid),
            uid: t.uid,
            name: t.name,
            description: t.description,
            enabled: t.enabled,
            cloud_gateway_pool_uids: t.cloud_gateway_pools.uids,
        })
        .collect();
    Ok(HttpResponse::Ok().json(CloudTenantList { items }))
}

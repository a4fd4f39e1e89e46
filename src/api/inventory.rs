//! What a portal needs to fill in UIDs: backup servers and Cloud Connect tenants.

use actix_web::{HttpRequest, HttpResponse, web};

use super::gateways::path_id;
use super::problem::{ApiError, Problems};
use super::views::{BackupServerView, CloudTenantView, Page, Query, page, uid_filter};
use super::{AppState, caller};
use crate::domain::{BackupServer, CloudTenant, Scope};

/// Lists the backup servers EM manages.
#[utoipa::path(get, path = "/v1/backup-servers", tag = "inventory",
    params(
        ("name" = Option<String>, Query, description = "Only names containing this (case-insensitive)"),
        ("limit" = Option<u32>, Query, description = "1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Page<BackupServerView>),
        Problems::<401, 503>,
    ),
    security(("api_key" = [])))]
pub async fn backup_servers(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let mut q = Query::of(&req);
    let name = q.take("name", |v| Ok(v.to_lowercase()));
    let (limit, cursor) = q.paging();
    q.finish()?;
    let items: Vec<BackupServerView> = state
        .em
        .backup_servers()
        .await?
        .into_iter()
        .map(BackupServerView::from)
        .filter(|b| {
            name.as_ref()
                .is_none_or(|n| b.name.to_lowercase().contains(n))
        })
        .collect();
    Ok(HttpResponse::Ok().json(page(items, |b| b.id, limit, cursor)))
}

/// Reads one backup server.
#[utoipa::path(get, path = "/v1/backup-servers/{id}", tag = "inventory",
    params(("id" = String, Path, description = "The backup server's guid or UID")),
    responses(
        (status = 200, body = BackupServerView),
        Problems::<401, 404>,
    ),
    security(("api_key" = [])))]
pub async fn backup_server(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let id = path_id::<BackupServer>(&id, "backup server")?;
    let server = state
        .em
        .backup_server(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no backup server {id}")))?;
    Ok(HttpResponse::Ok().json(BackupServerView::from(server)))
}

/// Lists the Cloud Connect tenants.
#[utoipa::path(get, path = "/v1/cloud-tenants", tag = "inventory",
    params(
        ("backup_server_uid" = Option<String>, Query, description = "Only tenants of this backup server"),
        ("name" = Option<String>, Query, description = "Only names containing this (case-insensitive)"),
        ("limit" = Option<u32>, Query, description = "1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Page<CloudTenantView>),
        Problems::<401, 503>,
    ),
    security(("api_key" = [])))]
pub async fn cloud_tenants(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let mut q = Query::of(&req);
    let server = q.take("backup_server_uid", uid_filter::<BackupServer>);
    let name = q.take("name", |v| Ok(v.to_lowercase()));
    let (limit, cursor) = q.paging();
    q.finish()?;
    let items: Vec<CloudTenantView> = state
        .em
        .cloud_tenants()
        .await?
        .into_iter()
        .map(CloudTenantView::from)
        .filter(|t| server.is_none_or(|s| t.backup_server.as_ref().is_some_and(|b| b.id == s)))
        .filter(|t| {
            name.as_ref()
                .is_none_or(|n| t.name.to_lowercase().contains(n))
        })
        .collect();
    Ok(HttpResponse::Ok().json(page(items, |t| t.id, limit, cursor)))
}

/// Reads one tenant.
#[utoipa::path(get, path = "/v1/cloud-tenants/{id}", tag = "inventory",
    params(("id" = String, Path, description = "The tenant's guid or UID")),
    responses(
        (status = 200, body = CloudTenantView),
        Problems::<401, 404>,
    ),
    security(("api_key" = [])))]
pub async fn cloud_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Read).await?;
    let id = path_id::<CloudTenant>(&id, "cloud tenant")?;
    let tenant = state
        .em
        .cloud_tenant(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cloud tenant {id}")))?;
    Ok(HttpResponse::Ok().json(CloudTenantView::from(tenant)))
}

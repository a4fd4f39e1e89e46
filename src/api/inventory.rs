//! What a portal needs to fill in UIDs: backup servers and the repositories quotas go on.

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::extract::Reader;
use super::gateways::path_id;
use super::problem::{ApiError, Problems};
use super::views::{
    BackupServerPage, BackupServerView, Paging, Query, RepositoryPage, RepositoryView, page,
    uid_filter,
};
use crate::domain::BackupServer;

/// Lists the backup servers EM manages.
#[utoipa::path(get, path = "/v1/backup-servers", tag = "inventory",
    operation_id = "listBackupServers",
    params(
        ("name" = Option<String>, Query, description = "Only names containing this (case-insensitive)"),
        Paging,
    ),
    responses(
        (status = 200, body = BackupServerPage, description = "One page, sorted by id"),
        Problems::<400, 502>,
    ))]
pub async fn backup_servers(
    _: Reader,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = Query::of(&req);
    let name = q.name();
    let (limit, cursor) = q.paging();
    q.finish()?;
    let items: Vec<BackupServerView> = state
        .em
        .backup_servers()
        .await?
        .into_iter()
        .map(BackupServerView::from)
        .filter(|b| name.as_ref().is_none_or(|n| n.matches(&b.name)))
        .collect();
    Ok(HttpResponse::Ok().json(BackupServerPage::from(page(items, |b| b.id, limit, cursor))))
}

/// Reads one backup server.
#[utoipa::path(get, path = "/v1/backup-servers/{id}", tag = "inventory",
    operation_id = "getBackupServer",
    params(("id" = Uuid, Path, description = "The backup server's guid (its UID is accepted too)")),
    responses(
        (status = 200, body = BackupServerView, description = "The backup server"),
        Problems::<404, 502>,
    ))]
pub async fn backup_server(
    _: Reader,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id::<BackupServer>(&id, "backup server")?;
    let server = state
        .em
        .backup_server(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no backup server {id}")))?;
    Ok(HttpResponse::Ok().json(BackupServerView::from(server)))
}

/// Lists backup repositories, where storage quotas go.
#[utoipa::path(get, path = "/v1/repositories", tag = "inventory",
    operation_id = "listRepositories",
    params(
        ("backup_server_uid" = Option<Uuid>, Query, description = "Only repositories of this backup server (its guid; the UID is accepted too)"),
        ("name" = Option<String>, Query, description = "Only names containing this (case-insensitive)"),
        Paging,
    ),
    responses(
        (status = 200, body = RepositoryPage, description = "One page, sorted by id"),
        Problems::<400, 502>,
    ))]
pub async fn repositories(
    _: Reader,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = Query::of(&req);
    let server = q.take("backup_server_uid", uid_filter::<BackupServer>);
    let name = q.name();
    let (limit, cursor) = q.paging();
    q.finish()?;
    let items: Vec<RepositoryView> = state
        .em
        .repositories()
        .await?
        .iter()
        .map(RepositoryView::from)
        .filter(|r| server.is_none_or(|s| r.backup_server.as_ref().is_some_and(|b| b.id == s)))
        .filter(|r| name.as_ref().is_none_or(|n| n.matches(&r.name)))
        .collect();
    Ok(HttpResponse::Ok().json(RepositoryPage::from(page(items, |r| r.id, limit, cursor))))
}

//! The HTTP API: JSON in, problem+json out, every `/v1` route behind an API key.

mod gateways;
mod health;
pub mod idempotency;
mod inventory;
mod keys;
pub mod openapi;
mod pools;
pub mod problem;
mod request;
mod tasks;
mod views;
mod webhooks;

use std::sync::Arc;

use actix_web::{HttpRequest, web};
use secrecy::SecretString;

use crate::access::Authenticator;
use crate::domain::Scope;
use crate::em::EmClient;
use crate::operations::Operations;
use crate::store::{ApiKeyRecord, Store};
use problem::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub em: Arc<EmClient>,
    pub operations: Operations,
    pub auth: Authenticator,
    pub webhooks: WebhookSettings,
    /// An Idempotency-Key claim this old whose request never reached EM may be taken over.
    pub idempotency_stale: std::time::Duration,
}

pub struct WebhookSettings {
    pub allow_private: bool,
    /// Wakes the deliverer (a retry asked for through the API).
    pub wake: Arc<tokio::sync::Notify>,
}

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/cloud-gateways", web::post().to(gateways::create))
            .route("/cloud-gateways", web::get().to(gateways::list))
            .route("/cloud-gateways/{id}", web::get().to(gateways::get))
            .route("/cloud-gateways/{id}", web::patch().to(gateways::update))
            .route("/cloud-gateways/{id}", web::delete().to(gateways::delete))
            .route("/cloud-gateway-pools", web::post().to(pools::create))
            .route("/cloud-gateway-pools", web::get().to(pools::list))
            .route("/cloud-gateway-pools/{id}", web::get().to(pools::get))
            .route("/cloud-gateway-pools/{id}", web::patch().to(pools::update))
            .route("/cloud-gateway-pools/{id}", web::delete().to(pools::delete))
            .route("/tasks", web::get().to(tasks::list))
            .route("/tasks/{id}", web::get().to(tasks::get))
            .route("/backup-servers", web::get().to(inventory::backup_servers))
            .route(
                "/backup-servers/{id}",
                web::get().to(inventory::backup_server),
            )
            .route("/cloud-tenants", web::get().to(inventory::cloud_tenants))
            .route(
                "/cloud-tenants/{id}",
                web::get().to(inventory::cloud_tenant),
            )
            .route("/webhooks", web::post().to(webhooks::create))
            .route("/webhooks", web::get().to(webhooks::list))
            .route("/webhooks/{id}", web::get().to(webhooks::get))
            .route("/webhooks/{id}", web::delete().to(webhooks::delete))
            .route(
                "/webhooks/{id}/rotate-secret",
                web::post().to(webhooks::rotate_secret),
            )
            .route(
                "/webhooks/{id}/deliveries",
                web::get().to(webhooks::deliveries),
            )
            .route(
                "/webhooks/{id}/deliveries/{delivery_id}/retry",
                web::post().to(webhooks::retry),
            )
            .route("/api-keys", web::post().to(keys::create))
            .route("/api-keys", web::get().to(keys::list))
            .route("/api-keys/{id}", web::delete().to(keys::revoke)),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(metrics))
    .route("/openapi.json", web::get().to(openapi::serve))
    .service(
        utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
            .config(utoipa_swagger_ui::Config::from("/openapi.json")),
    )
    .route("/docs", web::get().to(openapi::docs_redirect))
    .default_service(web::to(not_found));
}

async fn metrics() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render())
}

/// Counts and times every request by its route pattern (never its concrete path).
pub async fn record_metrics(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let res = next.call(req).await?;
    crate::telemetry::http_request(&route, &method, res.status().as_u16(), started.elapsed());
    Ok(res)
}

/// The most header bytes (names and values) a request may carry.
pub const MAX_HEADERS: usize = 16 * 1024;
/// The longest path and query accepted.
pub const MAX_URI: usize = 4 * 1024;

/// Bounds the request head before any handler runs: 431 for oversized headers, 414 for an
/// oversized path.
pub async fn limit_request_head(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::ResponseError;
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.as_bytes().len())
        .sum();
    let problem = if header_bytes > MAX_HEADERS {
        Some(ApiError::HeadTooLarge(
            "the request headers are larger than 16 KiB",
        ))
    } else if req.uri().to_string().len() > MAX_URI {
        Some(ApiError::UriTooLong)
    } else {
        None
    };
    match problem {
        Some(e) => Ok(req.into_response(e.error_response())),
        None => next.call(req).await,
    }
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// The calling API key, which must allow `needed`.
pub async fn caller(
    req: &HttpRequest,
    state: &AppState,
    needed: Scope,
) -> Result<ApiKeyRecord, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "send Authorization: Bearer <api key>",
        ))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| SecretString::from(t.trim().to_string()))
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be Bearer <api key>",
        ))?;
    let key = state
        .auth
        .check(&token)
        .await?
        .ok_or(ApiError::Unauthorized(
            "the API key is unknown, revoked or expired",
        ))?;
    if !key.scope.allows(needed) {
        return Err(ApiError::Forbidden {
            have: key.scope,
            needed,
        });
    }
    Ok(key)
}

//! The HTTP API: JSON in, problem+json out, every `/v1` route behind an API key.

pub mod extract;
mod gateways;
mod health;
pub mod idempotency;
mod inventory;
mod keys;
pub mod openapi;
mod pools;
pub mod problem;
mod request;
pub mod span;
mod tasks;
mod tenants;
mod views;
mod webhooks;

use std::sync::Arc;

use actix_web::{HttpRequest, web};

use crate::access::Authenticator;
use crate::clock::Clock;
use crate::em::EmClient;
use crate::store::Store;
use crate::tasks::{Replay, Submitter};
use problem::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub em: Arc<EmClient>,
    pub clock: Clock,
    /// Writes that become tasks.
    pub submitter: Submitter,
    /// Idempotency-Keys.
    pub replay: Replay,
    pub auth: Authenticator,
    pub webhooks: WebhookSettings,
    /// How long a client may take to send a request body.
    pub body_timeout: std::time::Duration,
}

pub struct WebhookSettings {
    pub allow_private: bool,
    /// Subscriptions one owner may have.
    pub per_owner: u32,
    /// Wakes the deliverer (a retry asked for through the API).
    pub wake: Arc<tokio::sync::Notify>,
}

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // One scope per family and one resource per path: actix matches `{id}` paths by regex, in
    // order, so a flat list of routes costs a regex test per route on every request.
    cfg.service(
        web::scope("/v1")
            .service(
                web::scope("/tasks")
                    .service(web::resource("").get(tasks::list))
                    .service(web::resource("/{id}").get(tasks::get)),
            )
            .service(
                web::scope("/cloud-gateways")
                    .service(web::resource("").get(gateways::list).post(gateways::create))
                    .service(
                        web::resource("/{id}")
                            .get(gateways::get)
                            .patch(gateways::update)
                            .delete(gateways::delete),
                    ),
            )
            .service(
                web::scope("/cloud-gateway-pools")
                    .service(web::resource("").get(pools::list).post(pools::create))
                    .service(
                        web::resource("/{id}")
                            .get(pools::get)
                            .patch(pools::update)
                            .delete(pools::delete),
                    ),
            )
            .service(
                web::scope("/backup-servers")
                    .service(web::resource("").get(inventory::backup_servers))
                    .service(web::resource("/{id}").get(inventory::backup_server)),
            )
            .service(
                web::scope("/cloud-tenants")
                    .service(web::resource("").get(tenants::list).post(tenants::create))
                    .service(
                        web::resource("/{id}")
                            .get(tenants::get)
                            .patch(tenants::update)
                            .delete(tenants::delete),
                    )
                    .service(web::resource("/{id}/backup-resources").post(tenants::create_resource))
                    .service(
                        web::resource("/{id}/backup-resources/{resource_id}")
                            .delete(tenants::delete_resource),
                    ),
            )
            .service(web::resource("/repositories").get(inventory::repositories))
            .service(
                web::scope("/webhooks")
                    .service(web::resource("").get(webhooks::list).post(webhooks::create))
                    .service(
                        web::resource("/{id}")
                            .get(webhooks::get)
                            .delete(webhooks::delete),
                    )
                    .service(web::resource("/{id}/rotate-secret").post(webhooks::rotate_secret))
                    .service(web::resource("/{id}/deliveries").get(webhooks::deliveries))
                    .service(
                        web::resource("/{id}/deliveries/{delivery_id}/retry").post(webhooks::retry),
                    ),
            )
            .service(
                web::scope("/api-keys")
                    .service(web::resource("").get(keys::list).post(keys::create))
                    .service(web::resource("/{id}").delete(keys::revoke)),
            )
            .default_service(web::to(not_found)),
    )
    // Resources, not bare routes: another method on a known path is 405 with `Allow`, not 404.
    .service(web::resource("/healthz").get(health::healthz))
    .service(web::resource("/readyz").get(health::readyz))
    .service(web::resource("/metrics").get(metrics))
    .service(web::resource("/openapi.json").get(openapi::serve))
    .service(
        utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
            .config(utoipa_swagger_ui::Config::from("/openapi.json")),
    )
    .service(web::resource("/docs").get(openapi::docs_redirect))
    .default_service(web::to(not_found));
}

async fn metrics() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render())
}

/// The route pattern a request matched (`None`: no route), found once per request by the root
/// span and kept in the request's extensions for the metrics.
#[derive(Debug, Clone)]
pub struct MatchedRoute(pub Option<String>);

/// Counts and times every request by its route pattern (never its concrete path).
pub async fn record_metrics(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = crate::telemetry::method_label(req.method());
    let res = next.call(req).await?;
    use actix_web::HttpMessage as _;
    // The root span found the route already: matching it costs a regex per route.
    let found = res.request().extensions().get::<MatchedRoute>().cloned();
    let route = found
        .map_or_else(|| res.request().match_pattern(), |r| r.0)
        .unwrap_or_else(|| "unmatched".to_string());
    crate::telemetry::http_request(&route, method, res.status().as_u16(), started.elapsed());
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

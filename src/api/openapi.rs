//! The OpenAPI 3.1 document, generated from the handlers; `openapi/openapi.json` is a
//! committed copy that a test keeps equal.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{gateways, health, inventory, keys, pools, problem, tasks, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "em-gateway",
        description = "A JSON API in front of Veeam Backup Enterprise Manager: Cloud Connect gateways and pools, tasks that EM settles, and signed webhooks.\n\nEvery `/v1` route needs `Authorization: Bearer <api key>`. Scopes nest: `read` ⊂ `write` ⊂ `admin`. Errors are `application/problem+json`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        gateways::create,
        gateways::list,
        gateways::get,
        gateways::update,
        gateways::delete,
        pools::create,
        pools::list,
        pools::get,
        pools::update,
        pools::delete,
        tasks::get,
        tasks::list,
        inventory::backup_servers,
        inventory::backup_server,
        inventory::cloud_tenants,
        inventory::cloud_tenant,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::deliveries,
        webhooks::retry,
        keys::create,
        keys::list,
        keys::revoke,
        health::healthz,
        health::readyz,
    ),
    components(schemas(problem::Problem, crate::domain::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "cloud gateways", description = "Cloud Connect gateways"),
        (name = "cloud gateway pools", description = "Groups of gateways assigned to tenants"),
        (name = "tasks", description = "Writes accepted and followed until EM settles them"),
        (name = "inventory", description = "Backup servers and tenants, for filling in UIDs"),
        (name = "webhooks", description = "Signed notifications when tasks settle (Standard Webhooks)"),
        (name = "api keys", description = "Key management (admin scope)"),
        (name = "operations", description = "Health and readiness, without authentication"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("emgw_…")
                    .description(Some(
                        "An API key from `em-gateway keys create` or `POST /v1/api-keys`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served and as committed.
pub fn document() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "/docs/"))
        .finish()
}

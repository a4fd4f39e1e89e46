//! The OpenAPI 3.1 document, generated from the handlers; `openapi/openapi.json` is a
//! committed copy that a test keeps equal.
//!
//! Handlers document what is theirs (their bodies, their own answers). What every route of a
//! kind shares — the API key, the database behind it, `Idempotency-Key` on writes, the limits on
//! request bodies, `Retry-After`, the link from a 202 to its task — is written once, here, by
//! [`Conventions`], so it cannot be forgotten on a new route.

use actix_web::HttpResponse;
use serde_json::json;
use utoipa::openapi::link::Link;
use utoipa::openapi::path::{Operation, Parameter, PathItem};
use utoipa::openapi::schema::{Components, Schema};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Header, RefOr};
use utoipa::{Modify, OpenApi};

use super::problem::{meaning, problem_response};
use super::request::CrossFieldRules;
use super::{gateways, health, inventory, keys, pools, problem, tasks, tenants, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "em-gateway",
        description = "A JSON API in front of Veeam Backup Enterprise Manager: Cloud Connect tenants with their storage quotas, gateways and pools, tasks that EM settles, and signed webhooks.\n\nEvery `/v1` route needs `Authorization: Bearer <api key>`. Scopes nest: `read` ⊂ `write` ⊂ `admin`. Errors are `application/problem+json` (RFC 9457). Every POST, PATCH and DELETE takes an `Idempotency-Key`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
        contact(name = "em-gateway maintainers", url = "https://em-gateway.dev"),
    ),
    servers((url = "/", description = "The gateway serving this document")),
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
        inventory::repositories,
        tenants::create,
        tenants::list,
        tenants::get,
        tenants::update,
        tenants::delete,
        tenants::create_resource,
        tenants::delete_resource,
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
    components(schemas(problem::Problem, crate::domain::FieldError, crate::domain::TaskEvent)),
    modifiers(&Conventions),
    tags(
        (name = "cloud gateways", description = "Cloud Connect gateways"),
        (name = "cloud gateway pools", description = "Groups of gateways assigned to tenants"),
        (name = "tasks", description = "Writes accepted and followed until EM settles them"),
        (name = "cloud tenants", description = "Onboard, change, suspend and remove Cloud Connect tenants with their storage quotas"),
        (name = "inventory", description = "Backup servers and repositories, for filling in UIDs"),
        (name = "webhooks", description = "Signed notifications when tasks settle (Standard Webhooks)"),
        (name = "api keys", description = "Key management (admin scope)"),
        (name = "operations", description = "Health and readiness, without authentication"),
    )
)]
pub struct ApiDoc;

/// The security scheme every `/v1` route uses.
const API_KEY: &str = "api_key";

/// What every route of a kind shares, written into each of its operations.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY,
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
        add_rules::<gateways::CreateCloudGatewayRequest>(components);
        add_rules::<gateways::UpdateCloudGatewayRequest>(components);
        add_rules::<pools::UpdateCloudGatewayPoolRequest>(components);
        add_rules::<tenants::UpdateCloudTenantRequest>(components);
        // Values that differ only in case (`Mbps`, `MBps`) are one name to generators that
        // upper-case enum members (openapi-python-client refuses the document): name them.
        name_members::<crate::domain::SpeedUnit>(
            components,
            &[
                "MEGABITS_PER_SECOND",
                "KILOBYTES_PER_SECOND",
                "MEGABYTES_PER_SECOND",
            ],
        );
        openapi.security = Some(vec![api_key()]);
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                if path.starts_with("/v1/") {
                    v1_operation(method, operation);
                } else {
                    // Health and readiness are open: say so, or the global requirement applies.
                    operation.security = Some(Vec::new());
                }
                // Every request's head is bounded before any route sees it.
                for status in [414, 431] {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| problem_response(meaning(status)).into());
                }
            }
        }
        openapi.webhooks = Some(from_json(webhooks()));
    }
}

/// Merges a request's cross-field rules into its schema. One `allOf` key: the extension map
/// is a hash map, so one key keeps the document's bytes the same from run to run.
fn add_rules<T: CrossFieldRules>(components: &mut Components) {
    if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(T::name().as_ref()) {
        object
            .extensions
            .get_or_insert_with(Default::default)
            .insert("allOf".into(), serde_json::Value::Array(T::rules()));
    }
}

/// `x-enum-varnames` (OpenAPI Generator's extension, read by openapi-python-client too): the
/// names generated code gives an enum's members, in the order of its values.
fn name_members<T: utoipa::ToSchema>(components: &mut Components, names: &[&str]) {
    if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(T::name().as_ref()) {
        object
            .extensions
            .get_or_insert_with(Default::default)
            .insert("x-enum-varnames".into(), json!(names));
    }
}

fn api_key() -> SecurityRequirement {
    SecurityRequirement::new(API_KEY, Vec::<String>::new())
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("post", &mut item.post),
        ("put", &mut item.put),
        ("patch", &mut item.patch),
        ("delete", &mut item.delete),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
}

fn v1_operation(method: &str, operation: &mut Operation) {
    operation.security = Some(vec![api_key()]);
    // The key is checked against the database: any route may find either missing. Two
    // `Authorization` headers are malformed on any route.
    let mut shared = vec![400, 401, 503];
    let write = method != "get";
    if write {
        // A read key may not write; the Idempotency-Key header has its own answers.
        shared.extend([403, 409, 422]);
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        parameters.push(RefOr::T(from_json::<Parameter>(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Your id for this operation (IETF httpapi draft): a repeat within 24 hours gets the first answer again, with `Idempotent-Replayed: true`, and does nothing twice. Scoped to the API key.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 257,
                       "pattern": super::idempotency::KEY_PATTERN}
        }))));
    }
    if let Some(RefOr::T(body)) = &mut operation.request_body {
        shared.extend([408, 413, 415]);
        // An `Option<T>` body means the body may be left out, not that it may be `null`.
        for content in body.content.values_mut() {
            if let RefOr::T(content) = content
                && let Some(schema) = &mut content.schema
            {
                drop_null_alternative(schema);
            }
        }
    }
    let responses = &mut operation.responses.responses;
    for status in shared {
        responses
            .entry(status.to_string())
            .or_insert_with(|| problem_response(meaning(status)).into());
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let status: u16 = status.parse().unwrap_or(0);
        if status == 503 {
            response.headers.insert(
                "Retry-After".into(),
                RefOr::T(from_json::<Header>(json!({
                    "description": "Seconds to wait before trying again",
                    "schema": {"type": "integer", "minimum": 1}
                }))),
            );
        }
        // A 408 is answered before the body, so before any Idempotency-Key is claimed.
        if write && status < 500 && status != 408 {
            response.headers.insert(
                "Idempotent-Replayed".into(),
                RefOr::T(from_json::<Header>(json!({
                    "description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`",
                    "schema": {"type": "string", "enum": ["true"]}
                }))),
            );
        }
        if status == 202 && answers_a_task(response) {
            response.links.insert(
                "GetTask".into(),
                RefOr::T(from_json::<Link>(json!({
                    "operationId": "getTask",
                    "parameters": {"id": "$response.body#/id"},
                    "description": "Follow the task this write became until EM settles it"
                }))),
            );
        }
    }
}

/// `oneOf: [{type: null}, X]` → `X`.
fn drop_null_alternative(schema: &mut RefOr<utoipa::openapi::schema::Schema>) {
    let Ok(value) = serde_json::to_value(&*schema) else {
        return;
    };
    let alternatives = value["oneOf"].as_array().cloned().unwrap_or_default();
    if let [a, b] = alternatives.as_slice() {
        let other = if a["type"] == "null" {
            b
        } else if b["type"] == "null" {
            a
        } else {
            return;
        };
        if let Ok(other) = serde_json::from_value(other.clone()) {
            *schema = other;
        }
    }
}

fn answers_a_task(response: &utoipa::openapi::response::Response) -> bool {
    response.content.values().any(|content| {
        serde_json::to_value(content)
            .is_ok_and(|c| c["schema"]["$ref"] == "#/components/schemas/TaskView")
    })
}

/// The webhook requests the gateway sends (OpenAPI 3.1 `webhooks`).
fn webhooks() -> serde_json::Value {
    let event = |id: &str, summary: &str| {
        json!({"post": {
            "operationId": id,
            "tags": ["webhooks"],
            "summary": summary,
            "description": "Sent to every subscription whose `event_types` include this event (an empty list means all). Signed per the Standard Webhooks specification: the signature is `v1,` + base64(HMAC-SHA256(key, `{webhook-id}.{webhook-timestamp}.{body}`)), keyed with the base64-decoded secret after `whsec_`. Delivered at least once: retried on any non-2xx answer or timeout on `EMGW_WEBHOOK_RETRY_SCHEDULE`.",
            "security": [],
            "parameters": [
                {"name": "webhook-id", "in": "header", "required": true,
                 "description": "The event's id, the same on every retry: drop duplicates by it",
                 "schema": {"type": "string"}, "example": "msg_0193a5c48f2e7cc19d7e3b1f3c2a9e10"},
                {"name": "webhook-timestamp", "in": "header", "required": true,
                 "description": "When this attempt was signed, in Unix seconds; refuse old ones",
                 "schema": {"type": "string", "pattern": "^[0-9]+$"}, "example": "1795950002"},
                {"name": "webhook-signature", "in": "header", "required": true,
                 "description": "Space-separated `v1,<base64>` signatures: two while a secret rotation overlaps; any one may match",
                 "schema": {"type": "string"}, "example": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="}
            ],
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/TaskEvent"}}}},
            "responses": {
                "2XX": {"description": "Delivered"},
                "410": {"description": "Gone: the subscription is disabled and nothing more is sent to it"},
                "default": {"description": "Any other answer, or none within the timeout: retried later (a `Retry-After` in seconds is honoured up to an hour)"}
            }
        }})
    };
    json!({
        "task.succeeded": event("taskSucceeded", "A task succeeded"),
        "task.failed": event("taskFailed", "A task failed"),
    })
}

/// A piece of the document written as JSON; the pieces are constants, so a mistake shows in the
/// tests that read the document.
fn from_json<T: serde::de::DeserializeOwned + Default>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    fn document() -> Value {
        serde_json::from_str(&super::document()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for section in ["paths", "webhooks"] {
            for (path, item) in doc[section].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    out.push((method.to_uppercase(), path.clone(), op.clone()));
                }
            }
        }
        out
    }

    /// Generators that name enum members by upper-casing values (openapi-python-client) refuse
    /// two values that differ only in case unless `x-enum-varnames` names every member.
    #[test]
    fn enum_members_have_distinct_names_in_upper_case() {
        let doc = document();
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            let Some(values) = schema["enum"].as_array() else {
                continue;
            };
            let names: Vec<String> = match schema["x-enum-varnames"].as_array() {
                Some(given) => {
                    assert_eq!(given.len(), values.len(), "{name}: one name per value");
                    given
                        .iter()
                        .map(|n| n.as_str().unwrap().to_uppercase())
                        .collect()
                }
                None => values
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_uppercase())
                    .collect(),
            };
            let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
            assert_eq!(distinct.len(), names.len(), "{name}: {names:?}");
        }
    }

    #[test]
    fn operation_ids_are_unique_and_descriptive() {
        let doc = document();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (method, path, op) in operations(&doc) {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
                .to_string();
            // Descriptive: a verb and a noun, camelCase (`createCloudGateway`, `listTasks`).
            assert!(
                id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().any(|c| c.is_ascii_uppercase()),
                "{method} {path}: operationId {id:?} is not verbNoun"
            );
            if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                panic!("operationId {id:?} is used by {other} and {method} {path}");
            }
        }
    }

    #[test]
    fn every_response_is_described() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.trim().is_empty()),
                    "{method} {path} {status} has no description"
                );
            }
        }
    }

    #[test]
    fn writes_take_an_idempotency_key_and_tasks_link_to_their_task() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            if !path.starts_with("/v1/") || method == "GET" {
                continue;
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            assert!(
                params.iter().any(|p| p["name"] == "Idempotency-Key"),
                "{method} {path} does not document Idempotency-Key"
            );
            if op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
                == "#/components/schemas/TaskView"
            {
                assert_eq!(
                    op["responses"]["202"]["links"]["GetTask"]["operationId"], "getTask",
                    "{method} {path}"
                );
            }
            assert!(
                op["responses"]["503"]["headers"]["Retry-After"].is_object(),
                "{method} {path}: 503 without Retry-After"
            );
        }
    }

    #[test]
    fn open_routes_say_they_need_no_key() {
        let doc = document();
        for path in ["/healthz", "/readyz"] {
            assert_eq!(doc["paths"][path]["get"]["security"], serde_json::json!([]));
        }
        assert_eq!(doc["info"]["license"]["identifier"], "Apache-2.0");
        assert!(doc["servers"][0]["url"].is_string());
    }
}

//! `/v1/api-keys`: key management for admins, beside the `em-gateway keys` commands.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::problem::{ApiError, Problem, Problems};
use super::{AppState, caller, idempotency, request};
use crate::access;
use crate::domain::{FieldErrors, Scope};
use crate::store::ApiKeyRecord;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "provisioning portal", "scope": "write", "expires_in_days": 90}))]
pub struct CreateApiKeyRequest {
    /// Who or what uses the key.
    #[schema(required = true, nullable = false, value_type = ApiKeyName)]
    pub name: Option<String>,
    #[schema(required = true, nullable = false, value_type = Scope)]
    pub scope: Option<Scope>,
    /// 1 to 3650; absent: never expires.
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
}

/// An API key's name, as `access::check_name` takes it.
pub struct ApiKeyName;

impl utoipa::PartialSchema for ApiKeyName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::domain::name_schema("Who or what uses the key", 100, "provisioning portal")
    }
}

impl utoipa::ToSchema for ApiKeyName {}

/// An API key. `key` is present only in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    #[schema(value_type = Uuid)]
    pub id: String,
    pub name: String,
    pub scope: Scope,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// The key itself: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Recorded at most once a minute.
    #[schema(required = true)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            scope: k.scope,
            prefix: k.prefix.clone(),
            key: None,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// Every API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
}

/// Creates an API key; the answer shows it, once.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api keys", operation_id = "createApiKey",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, body = ApiKeyView, description = "Created; `key` holds the key, shown only here",
            headers(("Location" = String, description = "/v1/api-keys/{id}"))),
    ))]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let admin = caller(&req, &state, Scope::Admin).await?;
    let body = request::body(&req, payload).await?;
    idempotency::once(&req, &state, &admin.id, &body, |_| async {
        let body: CreateApiKeyRequest = request::parse(&body)?;
        let mut e = FieldErrors::new();
        let name = match body.name.as_deref() {
            Some(n) => e.check("name", access::check_name(n).map_err(|err| err.to_string())),
            None => {
                e.add("name", "is required");
                None
            }
        };
        if body.scope.is_none() {
            e.add("scope", "is required (read, write or admin)");
        }
        let expires_at = match body.expires_in_days {
            None => None,
            Some(d) if (1..=3650).contains(&d) => Some(Utc::now() + chrono::Duration::days(d)),
            Some(_) => {
                e.add("expires_in_days", "must be from 1 to 3650");
                None
            }
        };
        let (Some(name), Some(scope), true) = (name, body.scope, e.is_empty()) else {
            return Err(ApiError::Invalid(e.into_vec()));
        };
        let issued = access::issue(&state.store, &name, scope, expires_at)
            .await
            .map_err(|err| match err {
                access::KeyError::Store(s) => ApiError::Store(s),
                other => ApiError::Conflict(other.to_string()),
            })?;
        let mut view = ApiKeyView::from(&issued.record);
        view.key = Some(issued.token.expose_secret().to_string());
        Ok(HttpResponse::Created()
            .insert_header(("Location", format!("/v1/api-keys/{}", issued.record.id)))
            .json(view))
    })
    .await
}

/// Lists API keys (never the keys themselves).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api keys", operation_id = "listApiKeys",
    responses(
        (status = 200, body = ApiKeyList, description = "Every key, revoked and expired ones included"),
        Problems::<403>,
    ))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller(&req, &state, Scope::Admin).await?;
    let items = state
        .store
        .list_api_keys()
        .await?
        .iter()
        .map(ApiKeyView::from)
        .collect();
    Ok(HttpResponse::Ok().json(ApiKeyList { items }))
}

/// Revokes an API key, at once on this replica and within seconds on the others.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api keys", operation_id = "revokeApiKey",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "The key making the call is the last admin key: revoking it would lock every admin out; or a request with this `Idempotency-Key` is still in progress"),
        Problems::<404>,
    ))]
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let admin = caller(&req, &state, Scope::Admin).await?;
    idempotency::once(&req, &state, &admin.id, b"", |_| async {
        // The caller is an active admin key, so only revoking itself can leave none.
        if *id == admin.id && state.store.active_admin_keys().await? <= 1 {
            return Err(ApiError::Conflict(
                "this is the last admin key: revoking it would leave nobody able to manage keys; \
                 create another admin key first"
                    .into(),
            ));
        }
        if !state.auth.revoke(&id).await? {
            return Err(ApiError::NotFound(format!("no active API key {id}")));
        }
        Ok(HttpResponse::NoContent().finish())
    })
    .await
}

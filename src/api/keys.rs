//! `/v1/api-keys`: key management for admins, beside the `em-gateway keys` commands.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::{Admin, Body, Request};
use super::idempotency::{once, once_vetted};
use super::problem::{ApiError, Problem, Problems};
use super::request;
use super::views::Query;
use crate::access;
use crate::domain::{ApiKeyId, FieldErrors, Owner, Scope};
use crate::store::{ApiKeyRecord, StoredAnswer};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "provisioning portal", "scope": "write", "owner": "portal-eu", "expires_in_days": 90}))]
pub struct CreateApiKeyRequest {
    /// Who or what uses the key.
    #[schema(required = true, nullable = false, value_type = ApiKeyName)]
    pub name: Option<String>,
    #[schema(required = true, nullable = false, value_type = Scope)]
    pub scope: Option<Scope>,
    /// The team or system the key belongs to: a `read` or `write` key sees and acts only on its
    /// owner's tasks and webhooks. Absent: `default`.
    #[serde(default, deserialize_with = "request::present")]
    #[schema(nullable = false, value_type = Owner)]
    pub owner: Option<Option<String>>,
    /// 1 to 3650; absent: never expires.
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<i64>,
}

/// A key to issue.
pub struct KeySpec {
    name: String,
    scope: Scope,
    owner: Owner,
    /// `None`: for ever.
    expires_in: Option<std::time::Duration>,
}

impl Request for CreateApiKeyRequest {
    type Value = KeySpec;

    fn parse(self) -> Result<Self::Value, ApiError> {
        let mut e = FieldErrors::new();
        let name = match self.name.as_deref() {
            Some(n) => e.check("name", access::check_name(n).map_err(|err| err.to_string())),
            None => {
                e.add("name", "is required");
                None
            }
        };
        if self.scope.is_none() {
            e.add("scope", "is required (read, write or admin)");
        }
        let owner = match &self.owner {
            None => Some(Owner::default()),
            Some(None) => {
                e.add(
                    "owner",
                    "must be an owner's name (leave it out for `default`)",
                );
                None
            }
            Some(Some(o)) => e.check("owner", Owner::parse(o)),
        };
        let expires_in = match self.expires_in_days {
            None => None,
            Some(d @ 1..=3650) => {
                Some(std::time::Duration::from_secs(d.unsigned_abs() * 24 * 3600))
            }
            Some(_) => {
                e.add("expires_in_days", "must be from 1 to 3650");
                None
            }
        };
        match (name, self.scope, owner) {
            (Some(name), Some(scope), Some(owner)) if e.is_empty() => Ok(KeySpec {
                name,
                scope,
                owner,
                expires_in,
            }),
            _ => Err(ApiError::Invalid(e.into_vec())),
        }
    }
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
    pub id: ApiKeyId,
    pub name: String,
    pub scope: Scope,
    pub owner: Owner,
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
            id: k.id,
            name: k.name.clone(),
            scope: k.scope,
            owner: k.owner.clone(),
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

/// Why a kept answer to a key's creation is not sent again: the key it holds no longer works.
pub const WITHDRAWN: &str = "the API key this request created has been revoked or has expired; \
     its secret is not shown again";

/// A replayed creation hands the key out again only while it works: a revoked key's secret
/// stays withdrawn, whoever holds the `Idempotency-Key`.
async fn still_usable(state: &AppState, stored: &StoredAnswer) -> Result<(), ApiError> {
    let created = serde_json::from_str::<serde_json::Value>(&stored.body)
        .ok()
        .and_then(|v| {
            v.get("id")
                .and_then(|i| i.as_str())
                .and_then(ApiKeyId::parse)
        });
    let Some(id) = created else {
        // A refusal kept as the answer: no key in it.
        return Ok(());
    };
    match state.store.api_key(id).await? {
        Some(key) if key.usable(state.clock.now()) => Ok(()),
        _ => Err(ApiError::Gone(WITHDRAWN.into())),
    }
}

/// Creates an API key; the answer shows it, once.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api keys", operation_id = "createApiKey",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, body = ApiKeyView, description = "Created; `key` holds the key, shown only here (and to a repeat with the same `Idempotency-Key` while the key works)",
            headers(("Location" = String, description = "/v1/api-keys/{id}"))),
        (status = 410, body = Problem, content_type = "application/problem+json",
            description = "A repeat with the same `Idempotency-Key` of a creation whose key has since been revoked or has expired: its secret is not shown again"),
    ))]
pub async fn create(
    admin: Admin,
    body: Body<CreateApiKeyRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let vet = |stored: StoredAnswer| {
        let state = state.clone();
        async move { still_usable(&state, &stored).await }
    };
    once_vetted(&req, &state, admin.id, &body.bytes()?, vet, |_| async {
        let spec = body.parse()?;
        let now = state.clock.now();
        let expires_at = spec.expires_in.map(|d| (now + d).to_datetime());
        let issued = access::issue(
            &state.store,
            &spec.name,
            spec.scope,
            spec.owner,
            expires_at,
            now,
        )
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
    params(("owner" = Option<Owner>, Query, description = "Only this owner's keys")),
    responses(
        (status = 200, body = ApiKeyList, description = "Every key, revoked and expired ones included"),
        Problems::<400>,
        Problems::<403>,
    ))]
pub async fn list(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = Query::of(&req);
    let owner = q.take("owner", Owner::parse);
    q.finish()?;
    let items = state
        .store
        .list_api_keys(owner.as_ref())
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
    admin: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    once(&req, &state, admin.id, b"", |_| async {
        let missing = || ApiError::NotFound(format!("no active API key {id}"));
        let key = ApiKeyId::parse(&id).ok_or_else(missing)?;
        // The caller is an active admin key, so only revoking itself can leave none.
        if key == admin.id && state.store.active_admin_keys(state.clock.now()).await? <= 1 {
            return Err(ApiError::Conflict(
                "this is the last admin key: revoking it would leave nobody able to manage keys; \
                 create another admin key first"
                    .into(),
            ));
        }
        if !state.auth.revoke(key).await? {
            return Err(missing());
        }
        Ok(HttpResponse::NoContent().finish())
    })
    .await
}

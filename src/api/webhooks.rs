//! `/v1/webhooks`: subscriptions, secret rotation, the delivery log and manual retries.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use reqwest::Url;

use super::extract::{Body, OptionalBody, Reader, Request, Writer};
use super::idempotency::once;
use super::problem::{ApiError, Problem, Problems};
use super::views::Query;
use super::{AppState, request};
use crate::clock::Timestamp;
use crate::domain::{
    DeliveryId, DeliveryState, Description, EventId, EventType, FieldError, FieldErrors, Listing,
    Owner, TaskId, Visibility, WebhookId,
};
use crate::store::{DeliveryRecord, NewWebhook, WebhookRecord};
use crate::webhooks::{signature, target};

/// Subscribes a URL to task events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://portal.example.com/hooks/em", "event_types": ["task.succeeded", "task.failed"], "description": "portal"}))]
pub struct CreateWebhookRequest {
    /// An http(s) URL on the public internet (private addresses need
    /// `EMGW_WEBHOOK_ALLOW_PRIVATE=true`).
    #[schema(required = true, nullable = false, value_type = String, format = "uri",
        max_length = 2048, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z][^/?#@\s]*([/?#]\S*)?$")]
    pub url: Option<String>,
    /// The events to send; empty or absent: all.
    #[schema(value_type = Option<Vec<EventType>>)]
    pub event_types: Option<Vec<String>>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
}

/// A subscription. The secret is shown only when created or rotated.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(value_type = Uuid)]
    pub id: WebhookId,
    pub url: String,
    /// Empty: every event.
    pub event_types: Vec<EventType>,
    #[schema(required = true)]
    pub description: Option<String>,
    /// Whose tasks' events it receives: the owner of the key that subscribed.
    pub owner: Owner,
    /// `whsec_…`; only in the answers to create and rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Until then, deliveries are signed with the previous secret too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Set when the endpoint answered 410 Gone: nothing more is sent to it.
    #[schema(required = true)]
    pub disabled_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl WebhookView {
    fn of(w: &WebhookRecord, with_secret: bool, now: Timestamp) -> Self {
        WebhookView {
            id: w.id,
            url: w.url.clone(),
            event_types: w.event_types.clone(),
            description: w.description.clone(),
            owner: w.owner.clone(),
            secret: with_secret.then(|| w.secret.expose_secret().to_string()),
            previous_secret_expires_at: w.previous_secret_until.filter(|t| *t > now.to_datetime()),
            disabled_at: w.disabled_at,
            disabled_reason: w.disabled_reason.clone(),
            created_at: w.created_at,
        }
    }
}

/// Every subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// How to rotate a subscription's secret.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"overlap_seconds": 86400}))]
pub struct RotateSecretRequest {
    /// How long the old secret keeps signing too, 0 to 604800 (default 86400).
    #[serde(default, deserialize_with = "request::whole_number")]
    #[schema(minimum = 0, maximum = 604800)]
    pub overlap_seconds: Option<i64>,
}

/// One HTTP try of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1 for the first try.
    #[schema(minimum = 1)]
    pub attempt: u32,
    /// The consumer's HTTP status; null when no answer came.
    #[schema(required = true, minimum = 100, maximum = 599)]
    pub status_code: Option<u16>,
    /// What went wrong (the start of the consumer's answer, or the connection error).
    #[schema(required = true)]
    pub error: Option<String>,
    pub duration_ms: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// One event's delivery to one subscription, with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    #[schema(value_type = Uuid)]
    pub id: DeliveryId,
    /// The `webhook-id` header of every attempt.
    #[schema(value_type = String)]
    pub event_id: EventId,
    pub event_type: EventType,
    #[schema(value_type = Uuid)]
    pub task_id: TaskId,
    pub state: DeliveryState,
    /// When the next attempt is due; null unless pending.
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<AttemptView>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            task_id: d.task_id,
            state: d.state,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            attempts: d
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    status_code: a.status_code,
                    error: a.error,
                    duration_ms: a.duration_ms,
                    started_at: a.started_at,
                    finished_at: a.finished_at,
                })
                .collect(),
        }
    }
}

/// A delivery queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetriedDelivery {
    #[schema(value_type = Uuid)]
    pub id: DeliveryId,
    pub state: DeliveryState,
}

/// A subscription as the request names it: an id that is not one is a subscription that does
/// not exist.
/// A subscription the key may see; another owner's is answered as if it did not exist.
async fn find(
    state: &AppState,
    visibility: &Visibility,
    id: &str,
) -> Result<WebhookRecord, ApiError> {
    let missing = || ApiError::NotFound(format!("no webhook {id}"));
    let id = WebhookId::parse(id).ok_or_else(missing)?;
    state
        .store
        .webhook(id)
        .await?
        .filter(|w| visibility.sees(&w.owner))
        .ok_or_else(missing)
}

/// A subscription request, checked (but for the address policy, which the service's settings
/// decide: see [`create`]).
pub struct WebhookSpec {
    url: Url,
    event_types: Vec<EventType>,
    description: Option<Description>,
}

impl Request for CreateWebhookRequest {
    type Value = WebhookSpec;

    fn parse(self) -> Result<WebhookSpec, ApiError> {
        let mut e = FieldErrors::new();
        let url = match self.url.as_deref() {
            Some(u) => e.check("url", target::check_url(u, true)),
            None => {
                e.add("url", "is required");
                None
            }
        };
        let mut event_types = Vec::new();
        for (i, t) in self.event_types.unwrap_or_default().iter().enumerate() {
            match EventType::parse(t) {
                Some(t) if !event_types.contains(&t) => event_types.push(t),
                Some(_) => {}
                None => e.add(
                    format!("event_types[{i}]"),
                    format!("must be {}", EventType::choices()),
                ),
            }
        }
        event_types.sort_by_key(|t| t.as_str());
        let description = self
            .description
            .as_deref()
            .and_then(|d| e.check("description", Description::parse(d)));
        match url {
            Some(url) if e.is_empty() => Ok(WebhookSpec {
                url,
                event_types,
                description,
            }),
            _ => Err(ApiError::Invalid(e.into_vec())),
        }
    }
}

impl Request for RotateSecretRequest {
    type Value = i64;

    fn parse(self) -> Result<i64, ApiError> {
        let overlap = self.overlap_seconds.unwrap_or(DEFAULT_OVERLAP);
        if !(0..=MAX_OVERLAP).contains(&overlap) {
            let mut e = FieldErrors::new();
            e.add(
                "overlap_seconds",
                format!("must be from 0 to {MAX_OVERLAP}"),
            );
            return Err(ApiError::Invalid(e.into_vec()));
        }
        Ok(overlap)
    }
}

/// How long the old secret keeps signing by default, and at most (seconds).
const DEFAULT_OVERLAP: i64 = 86_400;
const MAX_OVERLAP: i64 = 604_800;

/// Subscribes a URL to task events; the answer holds the signing secret, once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "createWebhook",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, body = WebhookView, description = "Subscribed; the answer holds the signing secret, shown only here",
            headers(("Location" = String, description = "/v1/webhooks/{id}"))),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "The key's owner already has the most subscriptions allowed (`EMGW_WEBHOOKS_PER_OWNER`), or a request with this `Idempotency-Key` is still in progress"),
    ))]
pub async fn create(
    key: Writer,
    body: Body<CreateWebhookRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    once(&req, &state, key.id, &body.bytes()?, |_| async {
        let spec = body.parse()?;
        // Checked again at every connection, by address: see `webhooks::target`.
        if let Err(message) = target::check_address(&spec.url, state.webhooks.allow_private) {
            return Err(ApiError::Invalid(vec![FieldError {
                field: "url".into(),
                message,
            }]));
        }
        let secret = signature::new_secret().map_err(|err| ApiError::Conflict(err.to_string()))?;
        let now = state.clock.now();
        let hook = state
            .store
            .insert_webhook(
                &NewWebhook {
                    url: spec.url.to_string(),
                    event_types: spec.event_types,
                    description: spec.description.map(|d| d.as_str().to_string()),
                    secret,
                    api_key_id: Some(key.id),
                    owner: key.owner.clone(),
                },
                state.webhooks.per_owner,
                now,
            )
            .await?
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "owner {} already has {} webhook subscriptions, the most allowed \
                     (EMGW_WEBHOOKS_PER_OWNER); delete one first",
                    key.owner, state.webhooks.per_owner
                ))
            })?;
        Ok(HttpResponse::Created()
            .insert_header(("Location", format!("/v1/webhooks/{}", hook.id)))
            .json(WebhookView::of(&hook, true, now)))
    })
    .await
}

/// Lists subscriptions (never their secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "listWebhooks",
    params(("owner" = Option<Owner>, Query, description = "Only this owner's subscriptions (an admin key sees every owner's; any other key only its own)")),
    responses(
        (status = 200, body = WebhookList, description = "The subscriptions the key may see"),
        Problems::<400>,
    ))]
pub async fn list(
    key: Reader,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut q = Query::of(&req);
    let owner = q.take("owner", Owner::parse);
    q.finish()?;
    let listing = key.visibility().list(owner);
    if listing == Listing::Nothing {
        return Ok(HttpResponse::Ok().json(WebhookList { items: Vec::new() }));
    }
    let now = state.clock.now();
    let items = state
        .store
        .list_webhooks(listing.owner())
        .await?
        .iter()
        .map(|w| WebhookView::of(w, false, now))
        .collect();
    Ok(HttpResponse::Ok().json(WebhookList { items }))
}

/// Reads one subscription.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "getWebhook",
    params(("id" = Uuid, Path, description = "The subscription's id")),
    responses(
        (status = 200, body = WebhookView, description = "The subscription (without its secret)"),
        Problems::<404>,
    ))]
pub async fn get(
    key: Reader,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let hook = find(&state, &key.visibility(), &id).await?;
    Ok(HttpResponse::Ok().json(WebhookView::of(&hook, false, state.clock.now())))
}

/// Deletes a subscription; its pending deliveries are dropped.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", operation_id = "deleteWebhook",
    params(("id" = Uuid, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Deleted, with its pending deliveries"),
        Problems::<404>,
    ))]
pub async fn delete(
    key: Writer,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    once(&req, &state, key.id, b"", |_| async {
        let hook = find(&state, &key.visibility(), &id).await?;
        if !state.store.delete_webhook(hook.id).await? {
            return Err(ApiError::NotFound(format!("no webhook {id}")));
        }
        Ok(HttpResponse::NoContent().finish())
    })
    .await
}

/// Issues a new secret. During the overlap both secrets sign every delivery (the
/// `webhook-signature` header carries two `v1,` entries), so consumers can switch without loss.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    operation_id = "rotateWebhookSecret",
    params(("id" = Uuid, Path, description = "The subscription's id")),
    request_body(content = Option<RotateSecretRequest>, description = "Optional: without a body the old secret keeps signing for 86400 s"),
    responses(
        (status = 200, body = WebhookView, description = "The new secret, shown once"),
        Problems::<404>,
    ))]
pub async fn rotate_secret(
    key: Writer,
    body: OptionalBody<RotateSecretRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    once(&req, &state, key.id, &body.bytes()?, |_| async {
        let overlap = body.parse()?.unwrap_or(DEFAULT_OVERLAP);
        let missing = || ApiError::NotFound(format!("no webhook {id}"));
        let hook = find(&state, &key.visibility(), &id).await?;
        let secret = signature::new_secret().map_err(|err| ApiError::Conflict(err.to_string()))?;
        let now = state.clock.now();
        let until = now + std::time::Duration::from_secs(overlap.unsigned_abs());
        let hook = state
            .store
            .rotate_webhook_secret(hook.id, &secret, until, now)
            .await?
            .ok_or_else(missing)?;
        Ok(HttpResponse::Ok().json(WebhookView::of(&hook, true, now)))
    })
    .await
}

/// The delivery log: each delivery with every attempt, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    operation_id = "listWebhookDeliveries",
    params(
        ("id" = Uuid, Path, description = "The subscription's id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1 to 200 (default 50)"),
        ("cursor" = Option<Uuid>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, body = DeliveryPage, description = "One page, newest first"),
        Problems::<400, 404>,
    ))]
pub async fn deliveries(
    key: Reader,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let hook = find(&state, &key.visibility(), &id).await?;
    let mut q = Query::of(&req);
    let limit = q.limit(50, 200);
    let before = q.cursor().map(DeliveryId::from_uuid);
    q.finish()?;
    let mut items = state
        .store
        .list_deliveries(
            hook.id,
            before,
            u32::try_from(limit + 1).unwrap_or(u32::MAX),
        )
        .await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = more
        .then(|| items.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(DeliveryPage {
        items: items.into_iter().map(DeliveryView::from).collect(),
        next_cursor,
    }))
}

/// Sends a delivery again now, whatever became of it.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    operation_id = "retryWebhookDelivery",
    params(
        ("id" = Uuid, Path, description = "The subscription's id"),
        ("delivery_id" = Uuid, Path, description = "The delivery's id"),
    ),
    responses(
        (status = 202, body = RetriedDelivery, description = "Queued: the delivery is pending and goes at once"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "The subscription is disabled, or a request with this `Idempotency-Key` is still in progress"),
        Problems::<404>,
    ))]
pub async fn retry(
    key: Writer,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, delivery_id) = path.into_inner();
    let visibility = key.visibility();
    once(&req, &state, key.id, b"", |_| {
        retry_now(&state, &visibility, &id, &delivery_id)
    })
    .await
}

async fn retry_now(
    state: &AppState,
    visibility: &Visibility,
    id: &str,
    delivery_id: &str,
) -> Result<HttpResponse, ApiError> {
    let hook = find(state, visibility, id).await?;
    if hook.disabled_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "webhook {id} is disabled ({}); create a new subscription",
            hook.disabled_reason.unwrap_or_default()
        )));
    }
    let missing = || ApiError::NotFound(format!("no delivery {delivery_id} for webhook {id}"));
    let delivery = DeliveryId::parse(delivery_id).ok_or_else(missing)?;
    if !state
        .store
        .retry_delivery(hook.id, delivery, state.clock.now())
        .await?
    {
        return Err(missing());
    }
    state.webhooks.wake.notify_one();
    Ok(HttpResponse::Accepted().json(RetriedDelivery {
        id: delivery,
        state: DeliveryState::Pending,
    }))
}

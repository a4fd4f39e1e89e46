//! Every error the HTTP API answers, as `application/problem+json` (RFC 9457).
//! Nothing a client sends maps to a 500.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{FieldError, Scope};
use crate::em::EmError;
use crate::em::error::retry_after_secs;
use crate::store::StoreError;
use crate::tasks::SubmitError;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"type": "https://em-gateway.dev/problems/invalid-request", "title": "The request is invalid", "status": 422, "detail": "1 field is invalid", "errors": [{"field": "network_type", "message": "must be direct or nat"}]}))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// One entry per invalid field, at most 100: the first ones found, in the request's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 100)]
    pub errors: Vec<FieldError>,
    /// How many invalid fields `errors` leaves out (it lists 100); absent when it lists all.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1)]
    pub errors_omitted: Option<usize>,
    /// What Enterprise Manager answered, when EM refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub em: Option<EmRefusal>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmRefusal {
    /// EM's HTTP status.
    pub status: u16,
    /// EM's own message.
    pub message: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this API key's scope is {have}; this call needs {needed}")]
    Forbidden { have: Scope, needed: Scope },
    #[error("{0}")]
    NotFound(String),
    /// Broken JSON, unknown fields, wrong types: 400.
    #[error("{detail}")]
    Malformed {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// Well-formed but invalid values: 422.
    #[error("{}", invalid_detail(.0))]
    Invalid(Vec<FieldError>),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    HeadTooLarge(&'static str),
    #[error("the request path is longer than 4 KiB")]
    UriTooLong,
    #[error("{0}")]
    Conflict(String),
    /// The request names EM objects that EM does not have, or conflicts with them: 409.
    #[error("{}", conflict_detail(.0))]
    ConflictsWithEm(Vec<FieldError>),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyMismatch,
    /// What the request would show is withdrawn for good: 410.
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Em(#[from] EmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The most `errors` entries one answer lists: a body of 5,000 bad items would otherwise be
/// answered with half a megabyte that no one reads past the first screen.
pub const MAX_LISTED_ERRORS: usize = 100;

/// The entries an answer lists, and how many more there were.
fn listed(errors: &[FieldError]) -> (&[FieldError], Option<usize>) {
    let shown = errors.len().min(MAX_LISTED_ERRORS);
    let omitted = errors.len() - shown;
    (&errors[..shown], (omitted > 0).then_some(omitted))
}

/// `"3 fields are invalid"`, and what is left out of the list when it was cut.
fn many_detail(errors: &[FieldError], what: &str) -> String {
    match errors {
        [one] => format!("{}: {}", one.field, one.message),
        many => match listed(many) {
            (_, None) => format!("{} fields {what}", many.len()),
            (shown, Some(omitted)) => format!(
                "{} fields {what}; the first {} are listed, {omitted} more {} not",
                many.len(),
                shown.len(),
                if omitted == 1 { "is" } else { "are" }
            ),
        },
    }
}

fn conflict_detail(errors: &[FieldError]) -> String {
    many_detail(errors, "conflict with Enterprise Manager's objects")
}

fn invalid_detail(errors: &[FieldError]) -> String {
    many_detail(errors, "are invalid")
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Em(e) => ApiError::Em(e),
            SubmitError::Store(e) => ApiError::Store(e),
            SubmitError::NotFound(m) => ApiError::NotFound(m),
            SubmitError::Conflicts(errors) => ApiError::ConflictsWithEm(errors),
        }
    }
}

impl ApiError {
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Unauthorized(_) => ("unauthorized", "A valid API key is required"),
            ApiError::Forbidden { .. } => ("forbidden", "The API key's scope is too small"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Malformed { .. } => ("malformed-request", "The request is malformed"),
            ApiError::Invalid(_) => ("invalid-request", "The request is invalid"),
            ApiError::TooLarge(_) => ("payload-too-large", "The request body is too large"),
            ApiError::BodyTimeout(_) => ("request-timeout", "The request body came too slowly"),
            ApiError::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            ApiError::HeadTooLarge(_) => ("headers-too-large", "Request headers too large"),
            ApiError::UriTooLong => ("uri-too-long", "Request path too long"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::ConflictsWithEm(_) => (
                "conflict-with-em",
                "The request conflicts with Enterprise Manager's objects",
            ),
            ApiError::IdempotencyMismatch => ("idempotency-key-reused", "Idempotency-Key reused"),
            ApiError::Gone(_) => ("gone", "Gone"),
            ApiError::Em(EmError::Refused { .. }) => {
                ("em-refused", "Enterprise Manager refused the request")
            }
            ApiError::Em(EmError::Unreachable(_)) => {
                ("em-unavailable", "Enterprise Manager is unavailable")
            }
            ApiError::Em(EmError::LogonRefused { .. }) => (
                "em-logon-refused",
                "Enterprise Manager refused the gateway's credentials",
            ),
            ApiError::Em(_) => (
                "em-bad-answer",
                "Enterprise Manager's answer could not be understood",
            ),
            ApiError::Store(_) => ("database-unavailable", "The database is unavailable"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Malformed { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UriTooLong => StatusCode::URI_TOO_LONG,
            ApiError::Conflict(_) | ApiError::ConflictsWithEm(_) => StatusCode::CONFLICT,
            ApiError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Em(e) => match e {
                // EM's own client errors reach the caller as they are (EM found the request bad).
                EmError::Refused { status, .. }
                    if (400..500).contains(status) && *status != 401 =>
                {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                // Refused credentials: unavailable until the logon back-off allows a try and
                // someone fixes the password.
                EmError::Refused { status: 503, .. }
                | EmError::Unreachable(_)
                | EmError::LogonRefused { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            },
            ApiError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (slug, title) = self.kind();
        let (errors, errors_omitted) = match self {
            ApiError::Malformed { errors, .. }
            | ApiError::Invalid(errors)
            | ApiError::ConflictsWithEm(errors) => {
                let (shown, omitted) = listed(errors);
                (shown.to_vec(), omitted)
            }
            _ => (Vec::new(), None),
        };
        let em = match self {
            ApiError::Em(
                EmError::Refused { status, message }
                | EmError::LogonRefused {
                    status, message, ..
                },
            ) => Some(EmRefusal {
                status: *status,
                message: message.clone(),
            }),
            _ => None,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, %status, "request failed");
        }
        let body = Problem {
            type_: format!("https://em-gateway.dev/problems/{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
            errors_omitted,
            em,
        };
        let mut resp = HttpResponse::build(status);
        resp.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The logon back-off knows when the next try is; otherwise a guess.
            let retry_after = match self {
                ApiError::Em(e) => e.retry_in().map(retry_after_secs),
                _ => None,
            };
            resp.insert_header((header::RETRY_AFTER, retry_after.unwrap_or(5)));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come: the connection cannot carry another request.
            resp.force_close();
        }
        resp.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

/// What a problem answer with this status means on any route; a route with more to say about a
/// status writes its own tuple instead.
pub fn meaning(status: u16) -> &'static str {
    match status {
        400 => {
            "Malformed: broken JSON, an unknown field, a wrong type, an unknown query parameter, a bad `Idempotency-Key` header or more than one `Authorization` header"
        }
        401 => "No API key, or one that is unknown, revoked or expired",
        403 => "The API key's scope is too small for this call",
        404 => "No such object",
        409 => "A request with this `Idempotency-Key` is still in progress; retry shortly",
        408 => {
            "The request body did not arrive within `EMGW_BODY_TIMEOUT_MS` (10 s by default); the connection is closed"
        }
        413 => "The request body is larger than 64 KiB",
        414 => "The request path and query are longer than 4 KiB",
        415 => "The request body must be `application/json`",
        431 => "The request headers are larger than 16 KiB",
        422 => {
            "Invalid values (one `errors` entry per field), or an `Idempotency-Key` reused for another request"
        }
        502 => "Enterprise Manager answered something the gateway cannot read",
        503 => {
            "Enterprise Manager or the database is unavailable; retry after `Retry-After` seconds"
        }
        _ => "A problem",
    }
}

/// A problem+json answer, documented with `description`.
pub fn problem_response(description: &str) -> utoipa::openapi::response::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// The problem answers a route documents in the common words of [`meaning`], by status:
/// `responses(…, Problems::<404, 502>)` (unused places stay 0). Answers every route can give
/// (401, 503, and the write and body answers) are added by `openapi::Conventions`.
pub struct Problems<
    const A: u16,
    const B: u16 = 0,
    const C: u16 = 0,
    const D: u16 = 0,
    const E: u16 = 0,
    const F: u16 = 0,
    const G: u16 = 0,
>;

impl<
    const A: u16,
    const B: u16,
    const C: u16,
    const D: u16,
    const E: u16,
    const F: u16,
    const G: u16,
> utoipa::IntoResponses for Problems<A, B, C, D, E, F, G>
{
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        [A, B, C, D, E, F, G]
            .into_iter()
            .filter(|status| *status != 0)
            .map(|status| (status.to_string(), problem_response(meaning(status)).into()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix_web::body::MessageBody;

    use super::*;

    fn answer(e: EmError) -> (StatusCode, Option<String>, serde_json::Value) {
        let resp = ApiError::Em(e).error_response();
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.into_body().try_into_bytes().unwrap_or_default();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    fn field_errors(n: usize) -> Vec<FieldError> {
        (0..n)
            .map(|i| FieldError {
                field: format!("cloud_gateway_uids[{i}]"),
                message: "must be a guid".into(),
            })
            .collect()
    }

    #[test]
    fn at_most_100_field_errors_are_listed_and_the_rest_counted() {
        // (invalid fields, entries listed, errors_omitted, detail)
        let cases = [
            (1, 1, None, "cloud_gateway_uids[0]: must be a guid"),
            (2, 2, None, "2 fields are invalid"),
            (100, 100, None, "100 fields are invalid"),
            (
                101,
                100,
                Some(1),
                "101 fields are invalid; the first 100 are listed, 1 more is not",
            ),
            (
                5000,
                100,
                Some(4900),
                "5000 fields are invalid; the first 100 are listed, 4900 more are not",
            ),
        ];
        for (n, shown, omitted, detail) in cases {
            let resp = ApiError::Invalid(field_errors(n)).error_response();
            let body = resp.into_body().try_into_bytes().unwrap_or_default();
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let errors = problem["errors"].as_array().unwrap();
            assert_eq!(errors.len(), shown, "{n}");
            assert_eq!(
                errors[0]["field"], "cloud_gateway_uids[0]",
                "the first ones"
            );
            assert_eq!(problem["errors_omitted"].as_u64(), omitted, "{n}");
            assert_eq!(problem["detail"], detail, "{n}");
        }
    }

    #[test]
    fn refused_credentials_are_503_until_the_next_logon() {
        let (status, retry_after, problem) = answer(EmError::LogonRefused {
            status: 401,
            message: "Invalid user name or password.".into(),
            retry_in: Duration::from_millis(11_200),
        });
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            retry_after.as_deref(),
            Some("12"),
            "seconds left, rounded up"
        );
        assert_eq!(
            problem["type"],
            "https://em-gateway.dev/problems/em-logon-refused"
        );
        assert_eq!(
            problem["title"],
            "Enterprise Manager refused the gateway's credentials"
        );
        assert_eq!(
            problem["em"],
            serde_json::json!({"status": 401, "message": "Invalid user name or password."})
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .ends_with("next logon in 12 s"),
            "{problem}"
        );
        let (_, retry_after, _) = answer(EmError::LogonRefused {
            status: 403,
            message: "Access denied.".into(),
            retry_in: Duration::from_millis(10),
        });
        assert_eq!(retry_after.as_deref(), Some("1"), "never 0");
        // EM unreachable keeps its answer.
        let (status, retry_after, problem) = answer(EmError::Unreachable("refused".into()));
        assert_eq!(
            (status, retry_after.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("5"))
        );
        assert_eq!(
            problem["type"],
            "https://em-gateway.dev/problems/em-unavailable"
        );
    }
}

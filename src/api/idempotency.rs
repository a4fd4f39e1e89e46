//! `Idempotency-Key` (IETF httpapi draft) on every POST, PATCH and DELETE, as HTTP: reading the
//! header, running a write through [`tasks::Replay`](crate::tasks::Replay), and sending or
//! keeping answers as the bytes they were. What a key means lives in `tasks::replay`.

use std::future::Future;

use actix_web::body::MessageBody;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::AppState;
use super::problem::ApiError;
use crate::domain::{ApiKeyId, FieldError};
use crate::store::{IdempotencyKey, StoredAnswer};
use crate::tasks::{Decision, replay};

pub const HEADER: &str = "Idempotency-Key";
/// Lower case, as `HeaderName::from_static` requires; sent as `Idempotent-Replayed`.
const REPLAYED: &str = "idempotent-replayed";

fn key_of(req: &HttpRequest, api_key_id: ApiKeyId) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let Some(text) = value.to_str().ok().and_then(parse_key) else {
        return Err(ApiError::Malformed {
            detail: format!("{HEADER} {KEY_RULE}"),
            errors: vec![FieldError {
                field: HEADER.into(),
                message: KEY_RULE.into(),
            }],
        });
    };
    Ok(Some(IdempotencyKey {
        api_key_id,
        key: text.to_string(),
    }))
}

const KEY_RULE: &str = "must be 1 to 255 printable ASCII characters without quotes, optionally \
     in double quotes (a Structured Field string), not starting or ending with a space";

/// The key in a header value: bare, or as the draft's Structured Field string (in quotes).
/// Exactly [`KEY_PATTERN`].
fn parse_key(value: &str) -> Option<&str> {
    let key = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let printable = |b: u8| (0x20..0x7f).contains(&b) && b != b'"';
    let ok = (1..=255).contains(&key.len())
        && key.bytes().all(printable)
        && !key.starts_with(' ')
        && !key.ends_with(' ');
    ok.then_some(key)
}

/// [`parse_key`] as a JSON Schema pattern.
pub const KEY_PATTERN: &str =
    r#"^("[!#-~]([ !#-~]{0,253}[!#-~])?"|[!#-~]([ !#-~]{0,253}[!#-~])?)$"#;

/// A stored answer, sent as the first time.
pub fn respond(stored: &StoredAnswer) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::ACCEPTED);
    let mut resp = HttpResponse::build(status);
    if let Some(location) = &stored.location {
        resp.insert_header(("Location", location.clone()));
    }
    let content_type = if status.is_client_error() || status.is_server_error() {
        "application/problem+json"
    } else {
        "application/json"
    };
    resp.content_type(content_type).body(stored.body.clone())
}

fn replayed(mut resp: HttpResponse) -> HttpResponse {
    resp.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static(REPLAYED),
        HeaderValue::from_static("true"),
    );
    resp
}

/// Runs a write at most once per key. `run` gets the key to record its task under.
pub async fn once<F, Fut>(
    req: &HttpRequest,
    state: &AppState,
    api_key_id: ApiKeyId,
    body: &[u8],
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(Option<IdempotencyKey>) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    once_vetted(req, state, api_key_id, body, |_| async { Ok(()) }, run).await
}

/// [`once`], with a check of a kept answer before it is sent again: `vet` may refuse to replay
/// it (an answer that carried a secret that has since been withdrawn).
pub async fn once_vetted<V, VFut, F, Fut>(
    req: &HttpRequest,
    state: &AppState,
    api_key_id: ApiKeyId,
    body: &[u8],
    vet: V,
    run: F,
) -> Result<HttpResponse, ApiError>
where
    V: FnOnce(StoredAnswer) -> VFut,
    VFut: Future<Output = Result<(), ApiError>>,
    F: FnOnce(Option<IdempotencyKey>) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(key) = key_of(req, api_key_id)? else {
        return run(None).await;
    };
    let request = replay::request_bytes(
        req.method().as_str(),
        req.uri().path(),
        req.query_string(),
        body,
    );
    match state.replay.claim(&key, &request).await? {
        Decision::Run => {}
        Decision::Answer(stored) => {
            vet(stored.clone()).await?;
            return Ok(replayed(respond(&stored)));
        }
        Decision::Mismatch => return Err(ApiError::IdempotencyMismatch),
        Decision::InProgress => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still in progress; retry shortly".into(),
            ));
        }
    }
    let resp = run(Some(key.clone()))
        .await
        .unwrap_or_else(|e| e.error_response());
    let status = resp.status();
    let location = resp
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (head, body) = resp.into_parts();
    let bytes = body.try_into_bytes().unwrap_or_default();
    let stored = StoredAnswer {
        status: status.as_u16(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        location,
    };
    state.replay.finish(&key, &stored).await?;
    Ok(head.set_body(actix_web::body::BoxBody::new(bytes)))
}

#[cfg(test)]
mod tests {
    use super::parse_key;

    #[test]
    fn keys_are_bare_or_quoted_printable_ascii() {
        assert_eq!(parse_key("order-42"), Some("order-42"));
        assert_eq!(parse_key("\"order 42\""), Some("order 42"));
        assert_eq!(parse_key(&"k".repeat(255)), Some("k".repeat(255).as_str()));
        for bad in [
            "",
            "\"\"",
            "\"",
            "\"a",
            "a\"b",
            " a",
            "a ",
            "ä",
            "\"\"a\"\"",
            &"k".repeat(256),
        ] {
            assert_eq!(parse_key(bad), None, "{bad:?}");
        }
    }
}

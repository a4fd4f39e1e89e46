//! `Idempotency-Key` (IETF httpapi draft) on every POST, PATCH and DELETE: scoped to the API
//! key, kept 24 hours. A repeat replays the first answer with `Idempotent-Replayed: true`; the
//! same key with another request is 422; a repeat while the first is still at work is 409.
//! Answers of 500 and above are not kept, so the request can be tried again.

use std::future::Future;

use actix_web::body::MessageBody;
use actix_web::http::header::HeaderValue;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::AppState;
use super::problem::ApiError;
use super::tasks::answer;
use crate::domain::FieldError;
use crate::store::{Claim, IdempotencyKey, StoredAnswer, accepted_answer};

pub const HEADER: &str = "Idempotency-Key";
/// Lower case, as `HeaderName::from_static` requires; sent as `Idempotent-Replayed`.
const REPLAYED: &str = "idempotent-replayed";

fn key_of(req: &HttpRequest, api_key_id: &str) -> Result<Option<IdempotencyKey>, ApiError> {
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
        api_key_id: api_key_id.to_string(),
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

/// What makes two requests "the same": method, path and query, body.
pub fn fingerprint(method: &str, path: &str, query: &str, body: &[u8]) -> String {
    let mut data = Vec::with_capacity(body.len() + 64);
    data.extend_from_slice(method.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(path.as_bytes());
    data.push(b'?');
    data.extend_from_slice(query.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(body);
    crate::em::tls::sha256_hex(&data)
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
    api_key_id: &str,
    body: &[u8],
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(Option<IdempotencyKey>) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(key) = key_of(req, api_key_id)? else {
        return run(None).await;
    };
    let stale_ms = i64::try_from(state.idempotency_stale.as_millis()).unwrap_or(i64::MAX);
    match state
        .store
        .claim_idempotency(
            &key,
            &fingerprint(
                req.method().as_str(),
                req.uri().path(),
                req.query_string(),
                body,
            ),
            stale_ms,
        )
        .await?
    {
        Claim::Replay(stored) => return Ok(replayed(answer(&stored))),
        Claim::Mismatch => {
            return Err(ApiError::IdempotencyMismatch);
        }
        Claim::InProgress {
            task_id,
            started_at,
        } => {
            // The first request died after recording its task (its answer may have been lost
            // with it): that task is the answer, and the poller settles it from EM's objects.
            let stale = started_at < crate::store::now_ms() - stale_ms;
            if let (Some(task_id), true) = (task_id, stale)
                && let Some(task) = state.store.task(task_id).await?
            {
                let stored = accepted_answer(&task);
                state.store.finish_idempotency(&key, &stored).await?;
                return Ok(replayed(answer(&stored)));
            }
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still in progress; retry shortly".into(),
            ));
        }
        Claim::Fresh => {}
    }
    let result = run(Some(key.clone())).await;
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => e.error_response(),
    };
    let status = resp.status();
    if status.is_server_error() {
        state.store.release_idempotency(&key).await?;
        return Ok(resp);
    }
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
    state.store.finish_idempotency(&key, &stored).await?;
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

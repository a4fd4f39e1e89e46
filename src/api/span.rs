//! The span every request's log lines carry: tracing-actix-web's, but for the target it
//! records and what it logs of an error. A query string is where a careless client puts a key
//! (`?api_key=…`), so its values are left out, but for the parameters the routes read that are
//! known to say nothing secret; and an error's text is cut short, as a client chooses its length.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::{RequestId, RootSpanBuilder};

/// The query parameters whose values are logged: filters, paging and flags of the routes.
const HARMLESS: &[&str] = &[
    "backup_server_uid",
    "cursor",
    "delete_backups",
    "enabled",
    "gateway_uid",
    "limit",
    "name",
    "operation",
    "owner",
    "pool_uid",
    "state",
    "strict_capacity",
    "tenant_uid",
];

/// What stands for a value left out.
const HIDDEN: &str = "…";

/// The path and the query, with every value but the harmless ones replaced by [`HIDDEN`]. A
/// part without `=` may be a bare value, so it is hidden whole; so is a name that is not a
/// plain word, which may be a value in the wrong place.
pub fn loggable_target(path: &str, query: &str) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let parts: Vec<String> = query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((name, _)) if is_harmless(name) => part.to_string(),
            Some((name, _)) if is_plain(name) => format!("{name}={HIDDEN}"),
            _ => HIDDEN.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

/// Compared as the routes read it (percent-decoded), so `%6Cimit` is `limit`.
fn is_harmless(name: &str) -> bool {
    form_urlencoded::parse(name.as_bytes())
        .next()
        .is_some_and(|(decoded, _)| HARMLESS.contains(&decoded.as_ref()))
}

fn is_plain(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// tracing-actix-web's root span with [`loggable_target`] as `http.target`.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().copied();
        let route = request.match_pattern();
        request
            .extensions_mut()
            .insert(super::MatchedRoute(route.clone()));
        let info = request.connection_info();
        tracing::info_span!(
            "HTTP request",
            http.method = crate::telemetry::method_label(request.method()),
            http.route = route.as_deref().unwrap_or("default"),
            http.scheme = info.scheme(),
            http.host = info.host(),
            http.client_ip = info.realip_remote_addr().unwrap_or(""),
            http.user_agent = request
                .headers()
                .get("User-Agent")
                .and_then(|h| h.to_str().ok())
                .unwrap_or(""),
            http.target = %loggable_target(request.path(), request.query_string()),
            http.status_code = Empty,
            otel.status_code = Empty,
            request_id = request_id.map(tracing::field::display),
            exception.message = Empty,
            exception.details = Empty,
        )
    }

    /// As tracing-actix-web's, with the event its `emit_event_on_error` would send, but what
    /// is logged of an error is bounded: a problem's field errors are a client's to multiply.
    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, error) = match outcome {
            Ok(response) => (
                response.status(),
                response.response().error().map(|e| e.as_response_error()),
            ),
            Err(e) => (
                e.as_response_error().status_code(),
                Some(e.as_response_error()),
            ),
        };
        // Recorded only for the line logged below: nothing else reads a span's fields, and each
        // record costs every request (52k instructions with tracing-subscriber's own JSON
        // fields, more than the whole of `/healthz` without them).
        let Some(error) = error else {
            return;
        };
        span.record("http.status_code", status.as_u16());
        let failed = !status.is_client_error();
        span.record("otel.status_code", if failed { "ERROR" } else { "OK" });
        let details = bounded(format!("{error:?}"));
        span.record("exception.message", bounded(error.to_string()).as_str());
        span.record("exception.details", details.as_str());
        span.in_scope(|| {
            let prefix = "Error encountered while processing the incoming HTTP request";
            if status.is_client_error() {
                tracing::warn!("{prefix}: {details}");
            } else {
                tracing::error!("{prefix}: {details}");
            }
        });
    }
}

/// The most of an error's text one log field holds.
const MAX_LOGGED: usize = 2048;

/// `text`, cut to [`MAX_LOGGED`] bytes (on a character boundary) with a note of what was cut.
fn bounded(text: String) -> String {
    if text.len() <= MAX_LOGGED {
        return text;
    }
    let end = (0..=MAX_LOGGED)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::{HARMLESS, MAX_LOGGED, bounded, loggable_target};

    #[test]
    fn what_is_logged_of_an_error_is_bounded() {
        let cases = [
            (String::new(), String::new()),
            ("a".repeat(MAX_LOGGED), "a".repeat(MAX_LOGGED)),
            (
                "a".repeat(MAX_LOGGED + 10),
                format!("{}… (10 more bytes)", "a".repeat(MAX_LOGGED)),
            ),
            // A character across the limit is cut whole.
            (
                format!("{}é{}", "a".repeat(MAX_LOGGED - 1), "b".repeat(5)),
                format!("{}… (7 more bytes)", "a".repeat(MAX_LOGGED - 1)),
            ),
        ];
        for (text, logged) in cases {
            assert_eq!(bounded(text.clone()), logged, "{} bytes", text.len());
        }
    }

    /// A new query parameter is logged without its value until someone judges it harmless here;
    /// a name the routes no longer read does not stay on the list.
    #[test]
    fn the_harmless_parameters_are_the_documented_ones() {
        let doc: serde_json::Value =
            serde_json::from_str(&crate::api::openapi::document()).unwrap_or_default();
        let mut documented: Vec<String> = doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|paths| paths.values())
            .filter_map(|item| item.as_object())
            .flat_map(|item| item.values())
            .filter_map(|op| op["parameters"].as_array())
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        documented.sort();
        documented.dedup();
        assert_eq!(
            documented, HARMLESS,
            "judge each query parameter in api/span.rs"
        );
    }

    #[test]
    fn query_values_are_hidden_but_for_harmless_parameters() {
        let cases = [
            ("/v1/tasks", "", "/v1/tasks"),
            ("/v1/tasks", "limit=5", "/v1/tasks?limit=5"),
            (
                "/v1/tasks",
                "api_key=emgw_secret&limit=5",
                "/v1/tasks?api_key=…&limit=5",
            ),
            (
                "/v1/tasks",
                "state=failed&operation=create_cloud_gateway&cursor=0190&owner=ops",
                "/v1/tasks?state=failed&operation=create_cloud_gateway&cursor=0190&owner=ops",
            ),
            (
                "/v1/cloud-gateways",
                "backup_server_uid=x&pool_uid=y&name=eu&enabled=true",
                "/v1/cloud-gateways?backup_server_uid=x&pool_uid=y&name=eu&enabled=true",
            ),
            (
                "/v1/cloud-tenants/1",
                "delete_backups=true&strict_capacity=false",
                "/v1/cloud-tenants/1?delete_backups=true&strict_capacity=false",
            ),
            ("/v1/tasks", "%6Cimit=5", "/v1/tasks?%6Cimit=5"),
            ("/v1/tasks", "Limit=5", "/v1/tasks?Limit=…"),
            ("/v1/tasks", "token=a=b", "/v1/tasks?token=…"),
            ("/v1/tasks", "emgw_secret", "/v1/tasks?…"),
            ("/v1/tasks", "emgw%5Fsecret=", "/v1/tasks?…"),
            ("/v1/tasks", &format!("{}=1", "k".repeat(33)), "/v1/tasks?…"),
            ("/v1/tasks", "limit=5&&key=x&", "/v1/tasks?limit=5&key=…"),
            ("/v1/tasks", "=secret", "/v1/tasks?…"),
        ];
        for (path, query, logged) in cases {
            assert_eq!(loggable_target(path, query), logged, "{query:?}");
        }
    }
}

//! What a handler is handed: the calling API key with the scope it needs, and the request body,
//! read and ready to parse. Handlers never open with the same lines again.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};
use secrecy::SecretString;

use super::AppState;
use super::problem::ApiError;
use super::request;
use crate::domain::{FieldError, Scope, Visibility};
use crate::store::ApiKeyRecord;

/// The scope a route needs.
pub trait Needs {
    const SCOPE: Scope;
}

pub struct ReadScope;
pub struct WriteScope;
pub struct AdminScope;

impl Needs for ReadScope {
    const SCOPE: Scope = Scope::Read;
}
impl Needs for WriteScope {
    const SCOPE: Scope = Scope::Write;
}
impl Needs for AdminScope {
    const SCOPE: Scope = Scope::Admin;
}

/// The calling API key, which allows at least `S`'s scope; else 401 or 403.
pub struct Caller<S>(ApiKeyRecord, PhantomData<S>);

/// A key that may read.
pub type Reader = Caller<ReadScope>;
/// A key that may write.
pub type Writer = Caller<WriteScope>;
/// An admin key.
pub type Admin = Caller<AdminScope>;

impl<S> Caller<S> {
    /// What the key sees of what owners own.
    pub fn visibility(&self) -> Visibility {
        Visibility::of(self.0.scope, &self.0.owner)
    }
}

impl<S> Deref for Caller<S> {
    type Target = ApiKeyRecord;
    fn deref(&self) -> &ApiKeyRecord {
        &self.0
    }
}

impl<S: Needs> FromRequest for Caller<S> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or(ApiError::Unauthorized("the API keys cannot be checked"))?;
            let key = authenticate(&req, state).await?;
            if !key.scope.allows(S::SCOPE) {
                return Err(ApiError::Forbidden {
                    have: key.scope,
                    needed: S::SCOPE,
                });
            }
            Ok(Caller(key, PhantomData))
        })
    }
}

async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<ApiKeyRecord, ApiError> {
    let mut headers = req
        .headers()
        .get_all(actix_web::http::header::AUTHORIZATION);
    let header = headers.next().ok_or(ApiError::Unauthorized(
        "send Authorization: Bearer <api key>",
    ))?;
    // Two keys are no key: which one a proxy or a framework on the way would take differs.
    let count = 1 + headers.count();
    if count > 1 {
        return Err(ApiError::Malformed {
            detail: format!("send one Authorization header, not {count}"),
            errors: vec![FieldError {
                field: "Authorization".into(),
                message: format!("must be sent once; this request has {count}"),
            }],
        });
    }
    let token = header
        .to_str()
        .ok()
        .and_then(bearer_token)
        .map(|t| SecretString::from(t.to_string()))
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be Bearer <api key>",
        ))?;
    state
        .auth
        .check(&token)
        .await?
        .ok_or(ApiError::Unauthorized(
            "the API key is unknown, revoked or expired",
        ))
}

/// The token of `Bearer <token>`. The scheme is case-insensitive and one or more spaces
/// separate it from the token (RFC 9110 §11.4: `auth-scheme 1*SP token68`).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

/// The body deadline of an app without [`AppState`]: the setting's default.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body type: parsed from JSON into the value a handler works with.
pub trait Request: serde::de::DeserializeOwned {
    type Value;
    /// Every field's problem at once (422), or the value.
    fn parse(self) -> Result<Self::Value, ApiError>;
}

/// A JSON body, read (size-limited, JSON only) but not yet parsed: a write claims its
/// Idempotency-Key first, so that a repeat of a refused request gets the first answer back.
/// Reading never fails the extraction: the handler meets the problem after the API key.
pub struct Body<T> {
    read: Result<Bytes, ApiError>,
    kind: PhantomData<T>,
}

impl<T: Request> Body<T> {
    /// The bytes as sent (for the Idempotency-Key fingerprint), or why they could not be read.
    pub fn bytes(&self) -> Result<Bytes, ApiError> {
        self.read.clone()
    }

    /// The value, or every problem with the body (400) or its fields (422).
    pub fn parse(&self) -> Result<T::Value, ApiError> {
        request::parse::<T>(&self.bytes()?)?.parse()
    }
}

impl<T: Request + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = web::Payload::from_request(&req, payload).into_inner();
        let deadline = req
            .app_data::<web::Data<AppState>>()
            .map_or(BODY_TIMEOUT, |state| state.body_timeout);
        Box::pin(async move {
            let read = match payload {
                Ok(payload) => request::body(&req, payload, deadline).await,
                Err(e) => Err(ApiError::Malformed {
                    detail: format!("the request body could not be read: {e}"),
                    errors: Vec::new(),
                }),
            };
            Ok(Body {
                read,
                kind: PhantomData,
            })
        })
    }
}

/// A body that may be left out (no `Content-Length`, or 0): `None` then.
pub struct OptionalBody<T>(Option<Body<T>>);

impl<T: Request> OptionalBody<T> {
    pub fn bytes(&self) -> Result<Bytes, ApiError> {
        self.0.as_ref().map_or(Ok(Bytes::new()), Body::bytes)
    }

    pub fn parse(&self) -> Result<Option<T::Value>, ApiError> {
        self.0.as_ref().map(Body::parse).transpose()
    }
}

impl<T: Request + 'static> FromRequest for OptionalBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let has_body = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "0")
            || req
                .headers()
                .contains_key(actix_web::http::header::TRANSFER_ENCODING);
        if !has_body {
            return Box::pin(async { Ok(OptionalBody(None)) });
        }
        let body = Body::<T>::from_request(req, payload);
        Box::pin(async move { Ok(OptionalBody(Some(body.await?))) })
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_spaces_may_repeat() {
        let cases = [
            ("Bearer emgw_k", Some("emgw_k")),
            ("bearer emgw_k", Some("emgw_k")),
            ("BEARER emgw_k", Some("emgw_k")),
            ("BeArEr emgw_k", Some("emgw_k")),
            ("Bearer   emgw_k", Some("emgw_k")),
            (" Bearer emgw_k ", Some("emgw_k")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearer    ", None),
            ("Bearer\temgw_k", None),
            ("Beareremgw_k", None),
            ("Basic YWRtaW46c2VjcmV0", None),
            ("Bearers emgw_k", None),
            ("emgw_k", None),
            ("", None),
        ];
        for (value, token) in cases {
            assert_eq!(bearer_token(value), token, "{value:?}");
        }
    }
}

//! Reading request bodies: size-limited, time-limited, JSON only, every problem named by field.

use std::time::Duration;

use actix_web::{HttpRequest, web};
use serde::de::DeserializeOwned;

use super::MAX_BODY;
use super::problem::ApiError;
use crate::domain::FieldError;

/// Reads a JSON body's bytes (size-limited; the content type must be JSON), all of it within
/// `deadline`: actix's own deadline covers only the head, so a client that trickles or stalls
/// its body would otherwise hold the connection for good.
pub async fn body(
    req: &HttpRequest,
    payload: web::Payload,
    deadline: Duration,
) -> Result<web::Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let read = tokio::time::timeout(deadline, payload.to_bytes_limited(MAX_BODY)).await;
    let body = match read.map_err(|_| ApiError::BodyTimeout(deadline))? {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return Err(ApiError::Malformed {
                detail: format!("the request body could not be read: {e}"),
                errors: Vec::new(),
            });
        }
        Err(_) => return Err(ApiError::TooLarge(MAX_BODY)),
    };
    Ok(body)
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(malformed)?;
    de.end().map_err(|e| ApiError::Malformed {
        detail: format!(
            "body: {}",
            e.to_string().split(" at line ").next().unwrap_or("")
        ),
        errors: vec![FieldError {
            field: "body".into(),
            message: "trailing characters after the JSON value".into(),
        }],
    })?;
    Ok(value)
}

/// Rules across a request's fields that the schema derive cannot write (`nat` needs
/// `external_ip`; a change must name something to change), written beside the parsing code
/// that enforces them and merged into the request's schema as `allOf` by `openapi`.
pub trait CrossFieldRules: utoipa::ToSchema {
    fn rules() -> Vec<serde_json::Value>;
}

/// The clause "`field` is present and not null" (its value of `json_type`).
pub fn given(field: &str, json_type: &str) -> serde_json::Value {
    serde_json::json!({"required": [field], "properties": {field: {"type": json_type}}})
}

/// The clause "`field` is present and equals `value`".
pub fn equals(field: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"required": [field], "properties": {field: {"const": value}}})
}

/// "At least one of these is present and not null": what a change request must name.
pub fn one_of_given(fields: &[(&str, &str)]) -> serde_json::Value {
    serde_json::json!({"anyOf": fields.iter().map(|(f, t)| given(f, t)).collect::<Vec<_>>()})
}

/// An optional integer field that also takes integral JSON numbers written as decimals
/// (`6180.0`): JSON Schema counts them as integers, and so do many JSON encoders.
/// Use with `#[serde(default, deserialize_with = "request::whole_number")]`.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct Whole;
    impl<'v> serde::de::Visitor<'v> for Whole {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<V: serde::Deserializer<'v>>(self, d: V) -> Result<Self::Value, V::Error> {
            d.deserialize_any(self)
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n))
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
            i64::try_from(n)
                .map(Some)
                .map_err(|_| E::custom("is too large"))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
            // Exactly representable integers only: 2^53 and above are not integers a client meant.
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Ok(Some(n as i64))
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(n), &self))
            }
        }
    }
    d.deserialize_option(Whole)
}

/// A field where `null` means something other than leaving it out (a PATCH's "turn this off"):
/// absent → `None`, `null` → `Some(None)`. Use with `#[serde(default, deserialize_with = …)]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// [`present`] for a [`whole_number`].
pub fn present_whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<i64>>, D::Error> {
    whole_number(d).map(Some)
}

fn malformed(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        // serde_path_to_error names the root "." (or "?" when it never got inside it).
        let at_root = path == "." || path == "?";
        let field = match inner.split('`').nth(1) {
            Some(name) if inner.starts_with("unknown field") && at_root => name.to_string(),
            _ if at_root => "body".to_string(),
            _ => path,
        };
        let message = inner
            .split(" at line ")
            .next()
            .unwrap_or(&inner)
            .to_string();
        ApiError::Malformed {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError { field, message }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        port: Option<u16>,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: Option<String>,
    }

    fn field(body: &str) -> String {
        match parse::<Body>(body.as_bytes()) {
            Err(ApiError::Malformed { errors, .. }) => errors[0].field.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct Numbers {
        #[serde(default, deserialize_with = "super::whole_number")]
        n: Option<i64>,
    }

    #[test]
    fn integers_may_be_written_as_integral_decimals() {
        let n = |body: &str| parse::<Numbers>(body.as_bytes()).map(|b| b.n);
        assert_eq!(n(r#"{"n": 6180}"#).unwrap(), Some(6180));
        assert_eq!(n(r#"{"n": 6180.0}"#).unwrap(), Some(6180));
        assert_eq!(n(r#"{"n": -1e3}"#).unwrap(), Some(-1000));
        assert_eq!(n(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(n(r#"{}"#).unwrap(), None);
        for bad in [
            r#"{"n": 6180.5}"#,
            r#"{"n": "6180"}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": 18446744073709551615}"#,
        ] {
            assert!(matches!(n(bad), Err(ApiError::Malformed { .. })), "{bad}");
        }
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(field(r#"{"port": "x"}"#), "port");
        assert_eq!(field(r#"{"colour": 1}"#), "colour");
        assert_eq!(field(r#"{"inner": {"b": 1}}"#), "inner.b");
        assert_eq!(field(r#"{"port": 1"#), "body");
        assert_eq!(field(r#"{} trailing"#), "body");
        assert_eq!(field(r#"[]"#), "body");
    }
}

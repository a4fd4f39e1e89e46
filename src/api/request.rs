//! Reading request bodies: size-limited, JSON only, every problem named by field.

use actix_web::{HttpRequest, web};
use serde::de::DeserializeOwned;

use super::MAX_BODY;
use super::problem::ApiError;
use crate::domain::FieldError;

/// Reads a JSON body's bytes (size-limited; the content type must be JSON).
pub async fn body(req: &HttpRequest, payload: web::Payload) -> Result<web::Bytes, ApiError> {
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
    let body = match payload.to_bytes_limited(MAX_BODY).await {
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

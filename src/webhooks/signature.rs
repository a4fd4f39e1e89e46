//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
//! the key being the base64-decoded secret after its `whsec_` prefix.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SecureRandom;
use secrecy::{ExposeSecret, SecretString};

pub const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignatureError {
    #[error("a webhook secret must be whsec_ followed by base64")]
    BadSecret,
    #[error("the system random generator failed")]
    Random,
}

/// A new secret: 24 random bytes, as Svix and the specification's examples use.
pub fn new_secret() -> Result<String, SignatureError> {
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SignatureError::Random)?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// One `v1,<signature>` entry.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, SignatureError> {
    let key = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|k| STANDARD.decode(k).ok())
        .ok_or(SignatureError::BadSecret)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let tag = ring::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(tag.as_ref())))
}

/// The `webhook-signature` header: one entry per secret in use (two during a rotation's
/// overlap), separated by spaces.
pub fn header(
    secrets: &[SecretString],
    id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, SignatureError> {
    let parts: Result<Vec<String>, _> = secrets
        .iter()
        .map(|s| sign(s.expose_secret(), id, timestamp, body))
        .collect();
    Ok(parts?.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn reproduces_the_specifications_test_vector() {
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_prefixed_base64() {
        let secret = new_secret().unwrap();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(
            STANDARD
                .decode(&secret[SECRET_PREFIX.len()..])
                .unwrap()
                .len(),
            24
        );
        assert_eq!(sign("nope", "id", 1, "{}"), Err(SignatureError::BadSecret));
    }

    #[test]
    fn a_rotation_sends_both_signatures() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        let both = header(&[a.clone().into(), b.clone().into()], "msg_1", 5, "{}").unwrap();
        assert_eq!(
            both,
            format!(
                "{} {}",
                sign(&a, "msg_1", 5, "{}").unwrap(),
                sign(&b, "msg_1", 5, "{}").unwrap()
            )
        );
    }
}

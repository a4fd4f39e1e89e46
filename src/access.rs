//! API keys: issued as random tokens with a recognisable prefix, stored only as a hash.
//!
//! The tokens carry 256 random bits, so a fast keyed hash (HMAC-SHA256) is the right one: there
//! is nothing to brute-force, and checking a key costs microseconds on every request. The hash
//! key is `EMGW_API_KEY_PEPPER` when set (then a copy of the database alone cannot check keys),
//! else a fixed domain-separation key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use ring::rand::SecureRandom;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::{Clock, Timestamp};
use crate::domain::{ApiKeyId, Owner, Scope};
use crate::store::{ApiKeyRecord, NewApiKey, Store, StoreError};

/// Every key starts with this, so a leaked key is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "emgw_";

/// How long a successful check is remembered. A key revoked elsewhere stops working on this
/// replica within this time; one revoked here stops at once.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// A new key: its record and the token, shown once.
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub token: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("name must be 1 to 100 characters without control characters")]
    BadName,
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

const DEFAULT_PEPPER: &[u8] = b"em-gateway api key v1";

/// The hash key made from `EMGW_API_KEY_PEPPER`; made once, since every request checks a key.
static PEPPER_KEY: std::sync::OnceLock<ring::hmac::Key> = std::sync::OnceLock::new();
static DEFAULT_KEY: std::sync::LazyLock<ring::hmac::Key> =
    std::sync::LazyLock::new(|| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, DEFAULT_PEPPER));

/// Sets the hash key for this process, once, before any key is checked or issued.
pub fn set_pepper(pepper: &SecretString) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pepper.expose_secret().as_bytes());
    let _ = PEPPER_KEY.set(key);
}

/// The stored form of a key.
pub fn hash(token: &str) -> String {
    let key = PEPPER_KEY.get().unwrap_or(&DEFAULT_KEY);
    crate::em::tls::hex(ring::hmac::sign(key, token.as_bytes()).as_ref())
}

pub fn hash_with(pepper: &[u8], token: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pepper);
    crate::em::tls::hex(ring::hmac::sign(&key, token.as_bytes()).as_ref())
}

pub fn check_name(name: &str) -> Result<String, KeyError> {
    let name = name.trim();
    let one_line = crate::domain::check_text(name, crate::domain::Lines::One);
    if name.is_empty() || name.chars().count() > 100 || one_line.is_err() {
        return Err(KeyError::BadName);
    }
    Ok(name.to_string())
}

pub async fn issue(
    store: &Store,
    name: &str,
    scope: Scope,
    owner: Owner,
    expires_at: Option<DateTime<Utc>>,
    now: Timestamp,
) -> Result<IssuedKey, KeyError> {
    let name = check_name(name)?;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Random)?;
    let token = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let key = NewApiKey {
        id: ApiKeyId::new(),
        name,
        scope,
        owner,
        prefix: token.chars().take(KEY_PREFIX.len() + 6).collect(),
        hash: hash(&token),
        expires_at,
    };
    let record = store.insert_api_key(&key, now).await?;
    Ok(IssuedKey {
        record,
        token: SecretString::from(token),
    })
}

/// Checks bearer tokens against the store, with a short cache of good keys.
pub struct Authenticator {
    store: Store,
    clock: Clock,
    cache: Mutex<HashMap<String, (ApiKeyRecord, Instant)>>,
}

impl Authenticator {
    pub fn new(store: Store, clock: Clock) -> Self {
        Authenticator {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key behind a token, if it exists and is usable now.
    pub async fn check(&self, token: &SecretString) -> Result<Option<ApiKeyRecord>, StoreError> {
        let token = token.expose_secret();
        if !token.starts_with(KEY_PREFIX) || token.len() > 200 {
            return Ok(None);
        }
        let hash = hash(token);
        let now = Instant::now();
        let today = self.clock.now();
        if let Some((record, at)) = self.cache().get(&hash).cloned()
            && now.duration_since(at) < CACHE_FOR
            && record.usable(today)
        {
            return Ok(Some(record));
        }
        let record = self.store.api_key_by_hash(&hash).await?;
        match record {
            Some(record) if record.usable(today) => {
                {
                    let mut cache = self.cache();
                    if cache.len() > 10_000 {
                        cache.clear();
                    }
                    cache.insert(hash, (record.clone(), now));
                }
                // Bookkeeping only: a failure here must not refuse a valid key.
                if let Err(e) = self.store.touch_api_key(record.id, today).await {
                    tracing::warn!(error = %e, "could not record an API key's last use");
                }
                Ok(Some(record))
            }
            _ => {
                self.cache().remove(&hash);
                Ok(None)
            }
        }
    }

    /// Revokes a key and forgets it here at once.
    pub async fn revoke(&self, id: ApiKeyId) -> Result<bool, StoreError> {
        let revoked = self.store.revoke_api_key(id, self.clock.now()).await?;
        self.cache().retain(|_, (record, _)| record.id != id);
        Ok(revoked)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ApiKeyRecord, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

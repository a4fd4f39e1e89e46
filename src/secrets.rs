//! The server key: what the database keeps of a secret is sealed with it, so a dump or a backup
//! of the database alone hands out no secret.
//!
//! `EMGW_SECRET_KEY` is 32 random bytes in base64 (`em-gateway secret-key` prints a fresh one).
//! Its key id is derived from it (the first 8 hex digits of a SHA-256), so nothing but the key
//! has to be written down, and a value names the key it was sealed with. The key itself is
//! never used directly: HKDF derives one subkey for sealing and one for fingerprints, so the
//! AEAD key is not also an HMAC key.
//!
//! A sealed value is text, `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, made with
//! XChaCha20-Poly1305 under a random 24-byte nonce (random nonces of that size never repeat in
//! practice). The associated data names the value's place (`webhooks.secret:<id>`), so a value
//! moved to another row or column does not open.
//!
//! Rotation: the new key in `EMGW_SECRET_KEY`, the old ones in `EMGW_SECRET_KEYS_PREVIOUS`.
//! New values are sealed with the new key; old ones still open, and the start-up pass
//! ([`crate::store::Store::seal_stored_secrets`]) seals them again with the new key.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ring::rand::SecureRandom;
use secrecy::{ExposeSecret, SecretString};

/// Every sealed value starts with this; a stored value without it was written in clear (before
/// values were sealed).
pub const SEALED_PREFIX: &str = "sealed:";
const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// How to make a key, for messages that ask for one.
pub const HOW_TO_MAKE_ONE: &str =
    "make one with `em-gateway secret-key` (or `openssl rand -base64 32`)";

/// Why a key or a sealed value was refused. Never carries the key or the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must be {KEY_LEN} random bytes in base64 ({HOW_TO_MAKE_ONE}); got {0}")]
    BadKey(String),
    #[error(
        "a value is sealed with the server key {0}, which is neither EMGW_SECRET_KEY nor among \
         EMGW_SECRET_KEYS_PREVIOUS"
    )]
    UnknownKey(String),
    #[error("a sealed value is damaged, or was moved from its place ({0})")]
    Damaged(String),
    #[error("the system random generator failed")]
    Random,
}

/// One server key: its id and the subkeys derived from it.
#[derive(Clone)]
pub struct ServerKey {
    id: String,
    cipher: XChaCha20Poly1305,
    fingerprint: ring::hmac::Key,
}

impl fmt::Debug for ServerKey {
    /// Only the id: a key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerKey({})", self.id)
    }
}

impl ServerKey {
    /// A key as written in `EMGW_SECRET_KEY`: base64 (standard or URL-safe, padded or not) of 32
    /// bytes, blanks around it ignored.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let bytes = engines
            .iter()
            .find_map(|e| e.decode(text).ok())
            .ok_or_else(|| SecretError::BadKey("text that is not base64".into()))?;
        let bytes: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::BadKey(format!("{} bytes", bytes.len())))?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let mut id_input = b"em-gateway server key id\0".to_vec();
        id_input.extend_from_slice(bytes);
        let id = crate::em::tls::sha256_hex(&id_input)[..8].to_string();
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"em-gateway server key v1")
            .extract(bytes);
        let mut seal = [0u8; KEY_LEN];
        // Expanding 32 bytes of SHA-256 HKDF cannot fail (the limit is 255 × 32).
        let _ = prk
            .expand(&[b"seal".as_slice()], ring::hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut seal));
        let fingerprint = match prk.expand(
            &[b"idempotency fingerprint".as_slice()],
            ring::hmac::HMAC_SHA256,
        ) {
            Ok(okm) => ring::hmac::Key::from(okm),
            Err(_) => ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seal),
        };
        ServerKey {
            id,
            cipher: XChaCha20Poly1305::new(&seal.into()),
            fingerprint,
        }
    }

    /// A fresh key and its text, for `EMGW_SECRET_KEY`.
    pub fn generate() -> Result<(ServerKey, SecretString), SecretError> {
        let mut bytes = [0u8; KEY_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretError::Random)?;
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        Ok((Self::from_bytes(&bytes), SecretString::from(text)))
    }

    /// The key id sealed values name: not secret.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn fingerprint(&self, data: &[u8]) -> String {
        crate::em::tls::hex(ring::hmac::sign(&self.fingerprint, data).as_ref())
    }
}

/// A comma-separated list of keys (`EMGW_SECRET_KEYS_PREVIOUS`).
pub fn parse_keys(text: &str) -> Result<Vec<ServerKey>, SecretError> {
    text.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(ServerKey::parse)
        .collect()
}

/// The current key, which seals, and the previous ones, which still open.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: ServerKey,
    previous: Vec<ServerKey>,
}

impl Keyring {
    pub fn new(current: ServerKey, previous: Vec<ServerKey>) -> Self {
        // The current key among the previous ones would only be tried twice.
        let previous = previous
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Keyring { current, previous }
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// `plain` sealed for `place` (where it is stored: table, column, row).
    pub fn seal(&self, plain: &[u8], place: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Random)?;
        let sealed = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Damaged(place.to_string()))?;
        let mut data = nonce.to_vec();
        data.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{VERSION}:{}:{}",
            self.current.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
        ))
    }

    /// A text sealed with [`Keyring::seal`] for this `place`, opened.
    pub fn open(&self, text: &str, place: &str) -> Result<Vec<u8>, SecretError> {
        let damaged = || SecretError::Damaged(place.to_string());
        let rest = text
            .strip_prefix(SEALED_PREFIX)
            .and_then(|r| r.strip_prefix(VERSION))
            .and_then(|r| r.strip_prefix(':'))
            .ok_or_else(damaged)?;
        let (kid, data) = rest.split_once(':').ok_or_else(damaged)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == kid)
            .ok_or_else(|| SecretError::UnknownKey(kid.chars().take(16).collect()))?;
        let data = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| damaged())?;
        if data.len() < NONCE_LEN {
            return Err(damaged());
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| damaged())?;
        key.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| damaged())
    }

    /// A stored text: opened when sealed, as it is when it was written in clear before values
    /// were sealed (the start-up pass seals those).
    pub fn open_stored(&self, text: &str, place: &str) -> Result<String, SecretError> {
        if !text.starts_with(SEALED_PREFIX) {
            return Ok(text.to_string());
        }
        let plain = self.open(text, place)?;
        String::from_utf8(plain).map_err(|_| SecretError::Damaged(place.to_string()))
    }

    /// Sealed with the current key (nothing left to do for the start-up pass).
    pub fn is_current(&self, text: &str) -> bool {
        text.strip_prefix(SEALED_PREFIX)
            .and_then(|r| r.strip_prefix(VERSION))
            .and_then(|r| r.strip_prefix(':'))
            .and_then(|r| r.strip_prefix(self.current.id.as_str()))
            .is_some_and(|r| r.starts_with(':'))
    }

    /// What a sealed value sealed with the current key starts with (for SQL `LIKE`).
    pub fn current_prefix(&self) -> String {
        format!("{SEALED_PREFIX}{VERSION}:{}:", self.current.id)
    }

    /// The keyed hash of `data` under each key, the current one first: a request fingerprinted
    /// before a rotation still matches.
    pub fn fingerprints(&self, data: &[u8]) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.fingerprint(data))
            .collect()
    }
}

/// Where the server key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `EMGW_SECRET_KEY`.
    Configured,
    /// A file beside the SQLite database (made now when `created`).
    File { path: PathBuf, created: bool },
    /// An in-memory SQLite database: a key that lives as long as it does.
    Ephemeral,
}

/// The keyring a service on `database_url` runs with: `EMGW_SECRET_KEY` when set; on SQLite
/// without it, the key in `<database file>.key` (made on first use, readable by the owner
/// only); on Postgres without it, an error that says how to make one.
pub fn resolve(
    configured: Option<&ServerKey>,
    previous: &[ServerKey],
    database_url: &SecretString,
) -> Result<(Keyring, KeySource), String> {
    if let Some(key) = configured {
        return Ok((
            Keyring::new(key.clone(), previous.to_vec()),
            KeySource::Configured,
        ));
    }
    let url = database_url.expose_secret();
    let Some(path) = sqlite_path(url) else {
        return Err(format!(
            "EMGW_SECRET_KEY is required on PostgreSQL: it seals the webhook signing secrets and \
             the answers kept for Idempotency-Key in the database. {}; give every replica the \
             same one and keep it apart from the database and its backups",
            capitalised(HOW_TO_MAKE_ONE)
        ));
    };
    let (key, source) = match path {
        None => {
            let (key, _) = ServerKey::generate().map_err(|e| e.to_string())?;
            (key, KeySource::Ephemeral)
        }
        Some(db) => {
            let path = PathBuf::from(format!("{}.key", db.display()));
            let (key, created) = key_file(&path)?;
            (key, KeySource::File { path, created })
        }
    };
    Ok((Keyring::new(key, previous.to_vec()), source))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// For a SQLite URL, its file (`None` for an in-memory database); `None` for any other URL.
fn sqlite_path(url: &str) -> Option<Option<PathBuf>> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return Some(None);
    }
    Some(Some(PathBuf::from(path)))
}

/// The key in `path`, made there (mode 0600) if there is none yet.
fn key_file(path: &Path) -> Result<(ServerKey, bool), String> {
    let shown = path.display();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = ServerKey::parse(&text).map_err(|e| format!("the key file {shown}: {e}"))?;
            return Ok((key, false));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot read the key file {shown}: {e}"));
        }
        Err(_) => {}
    }
    let (key, text) = ServerKey::generate().map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(format!("{}\n", text.expose_secret()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write the key file {shown}: {e}"))?;
            Ok((key, true))
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
            let key = ServerKey::parse(&text).map_err(|e| format!("the key file {shown}: {e}"))?;
            Ok((key, false))
        }
        Err(e) => Err(format!("cannot create the key file {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "HxwdHhobGBkWFxQVEhMQEQ4PDA0KCwgJBgcEBQIDAAE=";

    fn ring_of(current: &str, previous: &[&str]) -> Keyring {
        Keyring::new(
            ServerKey::parse(current).unwrap(),
            previous
                .iter()
                .map(|k| ServerKey::parse(k).unwrap())
                .collect(),
        )
    }

    #[test]
    fn a_sealed_value_opens_in_its_place_and_says_nothing_of_itself() {
        let ring = ring_of(KEY_A, &[]);
        let sealed = ring.seal(b"whsec_c2VjcmV0", "webhooks.secret:1").unwrap();
        assert!(sealed.starts_with(&ring.current_prefix()), "{sealed}");
        assert!(!sealed.contains("whsec_") && !sealed.contains("c2VjcmV0"));
        assert_eq!(
            ring.open(&sealed, "webhooks.secret:1").unwrap(),
            b"whsec_c2VjcmV0"
        );
        // A random nonce each time: the same secret never seals the same.
        assert_ne!(
            sealed,
            ring.seal(b"whsec_c2VjcmV0", "webhooks.secret:1").unwrap()
        );
        assert!(ring.is_current(&sealed));
    }

    #[test]
    fn a_value_moved_tampered_or_sealed_with_another_key_does_not_open() {
        let ring = ring_of(KEY_A, &[]);
        let other = ring_of(KEY_B, &[]);
        let sealed = ring.seal(b"secret", "webhooks.secret:1").unwrap();
        assert_eq!(
            ring.open(&sealed, "webhooks.secret:2"),
            Err(SecretError::Damaged("webhooks.secret:2".into()))
        );
        assert!(matches!(
            other.open(&sealed, "webhooks.secret:1"),
            Err(SecretError::UnknownKey(id)) if id == ring.current_id()
        ));
        // The right key id on a value sealed with another key: the tag does not match.
        let forged = sealed.replace(ring.current_id(), other.current_id());
        assert!(matches!(
            other.open(&forged, "webhooks.secret:1"),
            Err(SecretError::Damaged(_))
        ));
        let data = sealed.rsplit(':').next().unwrap();
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(data)
            .unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let tampered = sealed.replace(
                data,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes),
            );
            assert!(
                matches!(
                    ring.open(&tampered, "webhooks.secret:1"),
                    Err(SecretError::Damaged(_))
                ),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        for broken in ["sealed:v1:", "sealed:v2:x:y", "sealed:v1:nokey", "whsec_x"] {
            assert!(ring.open(broken, "p").is_err(), "{broken}");
        }
    }

    #[test]
    fn after_a_rotation_old_values_open_and_new_ones_use_the_new_key() {
        let old = ring_of(KEY_A, &[]);
        let sealed = old.seal(b"secret", "p").unwrap();
        let rotated = ring_of(KEY_B, &[KEY_A]);
        assert_eq!(rotated.open(&sealed, "p").unwrap(), b"secret");
        assert!(!rotated.is_current(&sealed));
        let resealed = rotated.seal(b"secret", "p").unwrap();
        assert!(rotated.is_current(&resealed));
        assert!(matches!(
            old.open(&resealed, "p"),
            Err(SecretError::UnknownKey(_))
        ));
        // A fingerprint taken before the rotation is among those after it.
        let before = old.fingerprints(b"POST /v1/x")[0].clone();
        let after = rotated.fingerprints(b"POST /v1/x");
        assert_eq!(after.len(), 2);
        assert_ne!(after[0], before);
        assert_eq!(after[1], before);
    }

    #[test]
    fn fingerprints_are_keyed() {
        let a = ring_of(KEY_A, &[]).fingerprints(b"body")[0].clone();
        let b = ring_of(KEY_B, &[]).fingerprints(b"body")[0].clone();
        assert_ne!(a, b);
        assert_ne!(a, crate::em::tls::sha256_hex(b"body"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn clear_values_from_before_sealing_are_read_as_they_are() {
        let ring = ring_of(KEY_A, &[]);
        assert_eq!(ring.open_stored("whsec_abc", "p").unwrap(), "whsec_abc");
        let sealed = ring.seal(b"whsec_abc", "p").unwrap();
        assert_eq!(ring.open_stored(&sealed, "p").unwrap(), "whsec_abc");
        assert!(!ring.is_current("whsec_abc"));
    }

    #[test]
    fn keys_are_32_bytes_of_base64_in_any_alphabet_and_never_printed() {
        let key = ServerKey::parse(KEY_A).unwrap();
        assert_eq!(key.id().len(), 8);
        let url_safe = KEY_A.replace('+', "-").replace('/', "_");
        assert_eq!(
            ServerKey::parse(url_safe.trim_end_matches('='))
                .unwrap()
                .id(),
            key.id()
        );
        assert_eq!(
            ServerKey::parse(&format!(" {KEY_A}\n")).unwrap().id(),
            key.id()
        );
        for bad in ["", "not base64!", "AAECAwQ=", &format!("{KEY_A}{KEY_A}")] {
            let err = ServerKey::parse(bad).unwrap_err().to_string();
            assert!(err.contains("em-gateway secret-key"), "{err}");
            assert!(bad.len() < 4 || !err.contains(bad), "{err}");
        }
        assert_eq!(format!("{key:?}"), format!("ServerKey({})", key.id()));
        let (made, text) = ServerKey::generate().unwrap();
        assert_eq!(
            ServerKey::parse(text.expose_secret()).unwrap().id(),
            made.id()
        );
        assert_eq!(parse_keys(&format!("{KEY_A}, {KEY_B},")).unwrap().len(), 2);
        assert!(parse_keys("x").is_err());
    }

    #[test]
    fn sqlite_keeps_its_key_beside_the_database_and_postgres_needs_one() {
        for (url, expected) in [
            ("sqlite://em-gateway.db", Some(Some("em-gateway.db"))),
            ("sqlite:///tmp/a.db?mode=rwc", Some(Some("/tmp/a.db"))),
            ("sqlite:data/a.db", Some(Some("data/a.db"))),
            ("sqlite::memory:", Some(None)),
            ("postgres://u@h/d", None),
        ] {
            assert_eq!(
                sqlite_path(url),
                expected.map(|p| p.map(PathBuf::from)),
                "{url}"
            );
        }
        let err = resolve(None, &[], &SecretString::from("postgres://u:pw@h/d")).unwrap_err();
        assert!(err.contains("EMGW_SECRET_KEY is required"), "{err}");
        assert!(err.contains("em-gateway secret-key"), "{err}");
        assert!(!err.contains("pw"), "{err}");

        let db = std::env::temp_dir().join(format!("emgw_key_{}.db", uuid::Uuid::new_v4()));
        let url = SecretString::from(format!("sqlite://{}", db.display()));
        let (first, source) = resolve(None, &[], &url).unwrap();
        let path = PathBuf::from(format!("{}.key", db.display()));
        assert_eq!(
            source,
            KeySource::File {
                path: path.clone(),
                created: true
            }
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = resolve(None, &[], &url).unwrap();
        assert_eq!(again.current_id(), first.current_id());
        assert!(matches!(source, KeySource::File { created: false, .. }));
        let configured = ServerKey::parse(KEY_A).unwrap();
        let (ring, source) = resolve(Some(&configured), &[], &url).unwrap();
        assert_eq!(
            (ring.current_id(), source),
            (configured.id(), KeySource::Configured)
        );
        std::fs::remove_file(path).unwrap();
    }
}

//! Settings, declared once in [`RawSettings`] and layered: its defaults, then an optional TOML file
//! (`--config`; keys are the field names: `listen`, `database_url`, `em_url`, …, `rust_log`), then
//! environment variables (see [`variable`]). [`Settings`] is the typed, checked form the service
//! runs on; every error names the variable it is about.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::Kind;
use figment::providers::Serialized;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::em::EmSettings;
use crate::em::session::LogonBackoff;
use crate::em::tls::{TlsTrust, parse_fingerprint};
use crate::secrets::{ServerKey, parse_keys};

// ---------------------------------------------------------------------------------------------
// The declaration. A new setting is a field here (its doc comment is its meaning), its default
// below, its check in `Settings::from_raw`, a line in config.example.toml and a row in the
// README's Configuration table; tests hold the last two to this struct.
// ---------------------------------------------------------------------------------------------

/// Every setting as written in the file or the environment.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    /// address:port of the HTTP API
    listen: String,
    /// `postgres://…` (several replicas) or `sqlite://PATH` (one replica)
    database_url: Secret,
    /// EM base URL including `/api`; without it only `demo`, `migrate`, `keys` and `openapi` run
    em_url: Option<String>,
    /// EM account (`DOMAIN\user` allowed); required with `em_url`
    em_username: Option<String>,
    /// its password; required with `em_url`
    em_password: Option<Secret>,
    /// PEM bundle to trust for EM's certificate (default: the system roots)
    em_ca_file: Option<PathBuf>,
    /// pins EM's certificate by its SHA-256 fingerprint (hex, colons allowed)
    em_cert_sha256: Option<String>,
    /// skips verification of EM's certificate (logged loudly)
    em_tls_insecure: bool,
    /// EM logon sessions in the pool, 1–64
    em_sessions: usize,
    /// timeout of one EM call, in ms (at least 100)
    em_timeout_ms: u64,
    /// no logon for this long after EM refused the credentials, in ms (at least 100); doubles
    /// with each further refusal in a row
    em_logon_backoff_ms: u64,
    /// the longest wait between refused logons, in ms (at least `em_logon_backoff_ms`)
    em_logon_backoff_max_ms: u64,
    /// how often in-flight tasks are checked, in ms (at least 10)
    poll_interval_ms: u64,
    /// how long a task EM lost track of may wait for its effect to show among EM's objects
    /// before it fails, in ms
    settle_grace_ms: u64,
    /// time a client has to send its request head, in ms (at least 1000)
    client_timeout_ms: u64,
    /// time a client has to send its request body once the head arrived, in ms (at least 100)
    body_timeout_ms: u64,
    /// webhooks may target loopback, private and link-local addresses
    webhook_allow_private: bool,
    /// delays before each webhook retry: `500ms`, `5s`, `5m`, `2h`, comma-separated (or a list)
    #[serde(deserialize_with = "comma_list")]
    webhook_retry_schedule: String,
    /// timeout of one webhook attempt, in ms (at least 100)
    webhook_timeout_ms: u64,
    /// webhook attempts in flight at once, across all subscriptions, 1–1024
    webhook_concurrency: usize,
    /// webhook attempts in flight at once to one subscription, on each replica, 1–1024 (a
    /// consumer that hangs holds no more)
    webhook_concurrency_per_subscription: usize,
    /// webhook subscriptions one owner may have, 1–10000
    webhooks_per_owner: usize,
    /// http(s) URL of an egress proxy for webhooks, which then filters their targets itself
    /// (the environment's HTTP_PROXY, HTTPS_PROXY and ALL_PROXY are never used for webhooks)
    webhook_proxy: Option<String>,
    /// keys the stored hash of API keys (changing it invalidates every key)
    api_key_pepper: Option<Secret>,
    /// 32 random bytes in base64 that seal the secrets the database keeps (required on
    /// PostgreSQL; on SQLite, without it, a key file beside the database is used)
    secret_key: Option<Secret>,
    /// earlier secret keys, comma-separated: what they sealed still opens (and is sealed again
    /// with `secret_key` at start)
    secret_keys_previous: Option<Secret>,
    /// `json` or `pretty` (default: pretty on a terminal, else json)
    log_format: Option<LogFormat>,
    /// log filter
    rust_log: String,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            listen: "127.0.0.1:8080".into(),
            database_url: Secret::from("sqlite://em-gateway.db"),
            em_url: None,
            em_username: None,
            em_password: None,
            em_ca_file: None,
            em_cert_sha256: None,
            em_tls_insecure: false,
            em_sessions: EmSettings::DEFAULT_SESSIONS,
            em_timeout_ms: as_millis(EmSettings::DEFAULT_REQUEST_TIMEOUT),
            em_logon_backoff_ms: as_millis(LogonBackoff::DEFAULT.first),
            em_logon_backoff_max_ms: as_millis(LogonBackoff::DEFAULT.max),
            poll_interval_ms: 1000,
            settle_grace_ms: 300_000,
            client_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            webhook_allow_private: false,
            webhook_retry_schedule: "5s,5m,30m,2h,5h,10h,10h".into(),
            webhook_timeout_ms: 10_000,
            webhook_concurrency: 128,
            webhook_concurrency_per_subscription: 64,
            webhooks_per_owner: 50,
            webhook_proxy: None,
            api_key_pepper: None,
            secret_key: None,
            secret_keys_previous: None,
            log_format: None,
            rust_log: "info".into(),
        }
    }
}

/// Settings whose variable is the bare key in upper case; every other one is `EMGW_` + key.
const UNPREFIXED: &[&str] = &["database_url", "rust_log"];

// ---------------------------------------------------------------------------------------------
// The typed settings.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{0} is required for `serve` (or run `em-gateway demo`)")]
    Missing(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// May hold a password: never logged.
    pub database_url: SecretString,
    /// Where Enterprise Manager is and how to log on to it; `None` without `EMGW_EM_URL`.
    pub em: Option<EmSettings>,
    pub poll_interval: Duration,
    /// How long a task EM lost track of may wait for its effect to show among EM's objects
    /// before it is settled as failed.
    pub settle_grace: Duration,
    pub webhook_allow_private: bool,
    pub webhook_retry_schedule: Vec<Duration>,
    pub webhook_timeout: Duration,
    /// Webhook attempts in flight at once, across all subscriptions.
    pub webhook_concurrency: usize,
    /// Webhook attempts in flight at once to one subscription (per replica): a consumer that
    /// hangs holds no more of the slots.
    pub webhook_concurrency_per_subscription: usize,
    /// Webhook subscriptions one owner may have: one task's events fan out to each.
    pub webhooks_per_owner: usize,
    /// Every webhook goes through this egress proxy, which judges its target.
    pub webhook_proxy: Option<reqwest::Url>,
    /// A client that has not sent its whole request head by then gets 408.
    pub client_timeout: Duration,
    /// A client that has not sent its whole request body by then (from its head) gets 408.
    pub body_timeout: Duration,
    pub log_format: Option<LogFormat>,
    pub log_filter: String,
    /// Keys the hash of stored API keys.
    pub api_key_pepper: Option<SecretString>,
    /// Seals the secrets the database keeps; `None`: a key file beside a SQLite database.
    pub secret_key: Option<ServerKey>,
    /// Earlier keys, which still open what they sealed.
    pub secret_keys_previous: Vec<ServerKey>,
}

/// Looks a variable up (the process environment, or a test's map).
pub type Env = Box<dyn Fn(&str) -> Option<String>>;

impl Settings {
    /// Reads the process environment (and the file, if given).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_source(file, Box::new(|k| std::env::var(k).ok()))
    }

    pub fn from_source(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut layers = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = file {
            layers = layers.merge(ConfigFile::read(path)?);
        }
        let layers = layers.merge(Environment::read(&env));
        let raw: RawSettings = layers
            .extract_lossy()
            .map_err(|e| from_figment(e, &layers, file))?;
        Settings::from_raw(raw, &Check(&layers))
    }

    fn from_raw(raw: RawSettings, check: &Check) -> Result<Self, ConfigError> {
        let em = check.em(&raw)?;
        Ok(Settings {
            listen: check.field(
                "listen",
                raw.listen
                    .trim()
                    .parse()
                    .map_err(|_| format!("{:?} is not an address:port", raw.listen)),
            )?,
            database_url: raw.database_url.0,
            em,
            poll_interval: check.millis("poll_interval_ms", raw.poll_interval_ms, 10)?,
            settle_grace: check.millis("settle_grace_ms", raw.settle_grace_ms, 0)?,
            webhook_allow_private: raw.webhook_allow_private,
            webhook_retry_schedule: check.field(
                "webhook_retry_schedule",
                raw.webhook_retry_schedule
                    .split(',')
                    .map(parse_duration)
                    .collect(),
            )?,
            webhook_timeout: check.millis("webhook_timeout_ms", raw.webhook_timeout_ms, 100)?,
            webhook_concurrency: check.within(
                "webhook_concurrency",
                raw.webhook_concurrency,
                1..=1024,
            )?,
            webhook_concurrency_per_subscription: check.within(
                "webhook_concurrency_per_subscription",
                raw.webhook_concurrency_per_subscription,
                1..=1024,
            )?,
            webhooks_per_owner: check.within(
                "webhooks_per_owner",
                raw.webhooks_per_owner,
                1..=10_000,
            )?,
            webhook_proxy: raw
                .webhook_proxy
                .as_deref()
                .map(|p| check.field("webhook_proxy", crate::webhooks::target::check_proxy(p)))
                .transpose()?,
            // actix reads its request deadlines off a clock cached every 500 ms: below a
            // second they misfire.
            client_timeout: check.millis("client_timeout_ms", raw.client_timeout_ms, 1000)?,
            // Timed by tokio, not by actix's cached clock: short deadlines hold.
            body_timeout: check.millis("body_timeout_ms", raw.body_timeout_ms, 100)?,
            log_format: raw.log_format,
            log_filter: raw.rust_log,
            api_key_pepper: raw.api_key_pepper.map(|s| s.0),
            secret_key: raw
                .secret_key
                .map(|k| {
                    check.field(
                        "secret_key",
                        ServerKey::parse(k.0.expose_secret()).map_err(|e| e.to_string()),
                    )
                })
                .transpose()?,
            secret_keys_previous: match raw.secret_keys_previous {
                None => Vec::new(),
                Some(keys) => check.field(
                    "secret_keys_previous",
                    parse_keys(keys.0.expose_secret()).map_err(|e| e.to_string()),
                )?,
            },
        })
    }
}

/// Checks of single values against the layers they came from, for errors that name the variable
/// (and the file key, when the file set it).
struct Check<'a>(&'a Figment);

impl Check<'_> {
    fn invalid(&self, key: &str, reason: String) -> ConfigError {
        invalid(key, reason, self.0.find_metadata(key))
    }

    fn field<T>(&self, key: &str, parsed: Result<T, String>) -> Result<T, ConfigError> {
        parsed.map_err(|reason| self.invalid(key, reason))
    }

    fn millis(&self, key: &str, ms: u64, min: u64) -> Result<Duration, ConfigError> {
        if ms < min {
            return Err(self.invalid(key, format!("expected milliseconds, at least {min}")));
        }
        Ok(Duration::from_millis(ms))
    }

    fn within(
        &self,
        key: &str,
        n: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, ConfigError> {
        if !range.contains(&n) {
            return Err(self.invalid(
                key,
                format!(
                    "expected a number from {} to {}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(n)
    }

    /// The EM part: checked whether or not `em_url` is set, so that a bad value never waits
    /// for the day EM is configured.
    fn em(&self, raw: &RawSettings) -> Result<Option<EmSettings>, ConfigError> {
        let sessions = self.within("em_sessions", raw.em_sessions, 1..=64)?;
        let request_timeout = self.millis("em_timeout_ms", raw.em_timeout_ms, 100)?;
        let first = self.millis("em_logon_backoff_ms", raw.em_logon_backoff_ms, 100)?;
        let logon_backoff = LogonBackoff {
            first,
            max: self.millis(
                "em_logon_backoff_max_ms",
                raw.em_logon_backoff_max_ms,
                as_millis(first),
            )?,
        };
        let cert_sha256 = match &raw.em_cert_sha256 {
            None => None,
            Some(v) => Some(self.field("em_cert_sha256", parse_fingerprint(v.trim()))?),
        };
        let Some(url) = &raw.em_url else {
            return Ok(None);
        };
        let url = self.field(
            "em_url",
            reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}")),
        )?;
        let required =
            |key: &str| self.invalid(key, format!("required with {}", variable("em_url")));
        let username = raw
            .em_username
            .clone()
            .ok_or_else(|| required("em_username"))?;
        let password = raw
            .em_password
            .clone()
            .ok_or_else(|| required("em_password"))?;
        let mut em = EmSettings::new(url, username, password.0).with_sessions(sessions);
        em.request_timeout = request_timeout;
        em.logon_backoff = logon_backoff;
        em.tls = TlsTrust {
            ca_file: raw.em_ca_file.clone(),
            cert_sha256,
            insecure: raw.em_tls_insecure,
        };
        Ok(Some(em))
    }
}

// ---------------------------------------------------------------------------------------------
// Names and sources.
// ---------------------------------------------------------------------------------------------

/// The environment variable of a setting: `EMGW_` + the key in upper case, or the bare key for
/// the conventional `DATABASE_URL` and `RUST_LOG`.
pub fn variable(key: &str) -> String {
    let upper = key.to_ascii_uppercase();
    if UNPREFIXED.contains(&key) {
        upper
    } else {
        format!("EMGW_{upper}")
    }
}

/// The keys of every setting, read off the declaration.
fn keys() -> Vec<String> {
    match serde_json::to_value(RawSettings::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.into_iter().map(|(k, _)| k).collect(),
        _ => Vec::new(),
    }
}

/// Every variable the service reads (the file takes them as their keys).
pub fn variables() -> Vec<String> {
    keys().iter().map(|k| variable(k)).collect()
}

const FILE: &str = "config file";

/// The TOML file. Empty values count as unset, as in the environment; keys are taken in lower
/// case.
struct ConfigFile {
    path: PathBuf,
    values: Dict,
}

impl ConfigFile {
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let table: Dict = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let values = table
            .into_iter()
            .filter(|(_, v)| v.as_str() != Some(""))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Ok(ConfigFile {
            path: path.to_path_buf(),
            values,
        })
    }
}

impl Provider for ConfigFile {
    fn metadata(&self) -> Metadata {
        Metadata::from(FILE, self.path.as_path())
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The declared variables, and only those: a stray `EMGW_…` variable is not an error. Empty ones
/// count as unset.
struct Environment(Dict);

impl Environment {
    fn read(env: &Env) -> Self {
        Environment(
            keys()
                .into_iter()
                .filter_map(|key| {
                    let value = env(&variable(&key)).filter(|v| !v.is_empty())?;
                    Some((key, Value::from(value)))
                })
                .collect(),
        )
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment")
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// `KEY: reason`, and where the file set it.
fn invalid(key: &str, reason: String, source: Option<&Metadata>) -> ConfigError {
    let file = source
        .filter(|m| m.name == FILE)
        .and_then(|m| m.source.as_ref())
        .and_then(|s| s.file_path());
    let reason = match file {
        Some(path) => format!("{reason} (`{key}` in {})", path.display()),
        None => reason,
    };
    ConfigError::Invalid {
        key: variable(key),
        reason,
    }
}

/// A value of the wrong type, or a key nobody declared.
fn from_figment(e: figment::Error, layers: &Figment, file: Option<&Path>) -> ConfigError {
    if let Kind::UnknownField(key, _) = &e.kind {
        // Only the file can bring one: the environment is read for declared keys alone.
        return ConfigError::File {
            path: file.map(|p| p.display().to_string()).unwrap_or_default(),
            reason: format!("unknown key {key:?}"),
        };
    }
    let reason = match &e.kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = match expected.as_str() {
                "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number",
                "a boolean" => "true or false",
                other => other,
            };
            format!("expected {expected}, got {actual}")
        }
        Kind::UnknownVariant(value, expected) => {
            format!("expected {}, got {value:?}", expected.join(" or "))
        }
        other => other.to_string(),
    };
    match e.path.first() {
        Some(key) => invalid(key, reason, layers.find_metadata(key)),
        None => ConfigError::Invalid {
            key: "settings".into(),
            reason: e.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Value formats.
// ---------------------------------------------------------------------------------------------

/// A secret as written: a string (or a bare number in the file). Never echoed in an error.
#[derive(Clone)]
struct Secret(SecretString);

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(SecretString::from(s))
    }
}

impl Serialize for Secret {
    /// Only the defaults are ever serialized (to layer them and to list the keys).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::from(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::from(v.to_string().as_str()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A list as one comma-separated string (the environment's only way) or a TOML array of strings.
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a comma-separated string or a list of strings")
        }
        fn visit_str<E>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            Ok(items.join(","))
        }
    }
    d.deserialize_any(Visitor)
}

fn as_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `500ms`, `5s`, `5m`, `2h`.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{v:?} is not a duration like 500ms, 5s, 5m, 2h"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{v:?} is not a duration like 500ms, 5s, 5m, 2h")),
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{v:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Box::new(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_source(None, env(pairs))
    }

    /// Loads `toml` as the config file, under `pairs`.
    fn load_file(toml: &str, pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let path = std::env::temp_dir().join(format!("emgw-config-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml).unwrap();
        let loaded = Settings::from_source(Some(&path), env(pairs));
        std::fs::remove_file(&path).ok();
        loaded
    }

    const EM: &[(&str, &str)] = &[
        ("EMGW_EM_URL", "http://em.example:9399/api"),
        ("EMGW_EM_USERNAME", "u"),
        ("EMGW_EM_PASSWORD", "p"),
    ];

    /// EM's three variables, unless `more` sets them too.
    fn with_em<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        more.iter().chain(EM).copied().collect()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        load(pairs).unwrap_err().to_string()
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = load(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database_url.expose_secret(), "sqlite://em-gateway.db");
        assert!(s.em.is_none());
        assert_eq!(s.poll_interval, Duration::from_millis(1000));
        assert_eq!(s.settle_grace, Duration::from_secs(300));
        assert!(!s.webhook_allow_private);
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(
            s.webhook_retry_schedule,
            [
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(1800),
                h(2),
                h(5),
                h(10),
                h(10)
            ]
        );
        assert_eq!(s.webhook_timeout, Duration::from_secs(10));
        assert_eq!(s.webhook_concurrency, 128);
        assert_eq!(s.webhook_concurrency_per_subscription, 64);
        assert!(s.webhook_proxy.is_none());
        assert_eq!(s.client_timeout, Duration::from_secs(10));
        assert_eq!(s.body_timeout, Duration::from_secs(10));
        assert_eq!(s.log_format, None);
        assert_eq!(s.log_filter, "info");
        assert!(s.api_key_pepper.is_none());
        assert!(s.secret_key.is_none() && s.secret_keys_previous.is_empty());

        let em = load(EM).unwrap().em.unwrap();
        assert_eq!(em.base_url.as_str(), "http://em.example:9399/api");
        assert_eq!(em.username, "u");
        assert_eq!(em.password.expose_secret(), "p");
        assert_eq!(em.sessions, 4);
        assert_eq!(em.max_in_flight, 64);
        assert_eq!(em.request_timeout, Duration::from_secs(30));
        assert_eq!(
            (em.logon_backoff.first, em.logon_backoff.max),
            (Duration::from_secs(1), Duration::from_secs(300))
        );
        assert!(em.tls.ca_file.is_none() && em.tls.cert_sha256.is_none() && !em.tls.insecure);
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let s = load_file(
            "listen = \"0.0.0.0:9000\"\npoll_interval_ms = 250\nem_url = \"http://em/api\"\nem_username = \"u\"\nem_password = \"p\"\nrust_log = \"debug\"\n",
            &[("EMGW_LISTEN", "127.0.0.1:7000"), ("RUST_LOG", "")],
        )
        .unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(s.poll_interval, Duration::from_millis(250));
        // An empty variable is unset: the file's value stands.
        assert_eq!(s.log_filter, "debug");
        let em = s.em.unwrap();
        assert_eq!(em.username, "u");
        assert_eq!(em.sessions, 4);
    }

    /// `config.example.toml` with its settings uncommented.
    fn example() -> String {
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
                .unwrap();
        example
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn the_example_file_loads() {
        // The password belongs in the environment; the example leaves it empty.
        let loaded = load_file(&example(), &[("EMGW_EM_PASSWORD", "x")]).unwrap();
        assert!(loaded.em.is_some());
        assert_eq!(loaded.log_format, Some(LogFormat::Json));
    }

    /// Each declared setting with its default (`null` when it has none).
    fn declared() -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(RawSettings::default()).unwrap() {
            serde_json::Value::Object(fields) => fields,
            other => panic!("the declaration serializes as {other}"),
        }
    }

    #[test]
    fn the_example_file_documents_every_setting_with_its_default() {
        let example = example();
        let table: toml::Table = example.parse().unwrap();
        let declared = declared();
        for (key, default) in &declared {
            let documented = table
                .get(key)
                .unwrap_or_else(|| panic!("config.example.toml lacks {key}"));
            if !default.is_null() {
                assert_eq!(
                    &serde_json::to_value(documented).unwrap(),
                    default,
                    "config.example.toml gives {key} a value other than its default"
                );
            }
            let line = example
                .lines()
                .find(|l| l.starts_with(&format!("{key} =")))
                .unwrap();
            assert!(
                line.contains(&variable(key)),
                "config.example.toml does not name {} beside {key}",
                variable(key)
            );
        }
        for key in table.keys() {
            assert!(
                declared.contains_key(key),
                "config.example.toml documents {key}, which is no setting"
            );
        }
    }

    #[test]
    fn the_readme_documents_every_setting_with_its_default() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a Configuration section");
        // `| `A` / `B` | meaning | default |` → each variable of the first cell, with its default.
        let mut rows = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            for name in cells[0].split('`').skip(1).step_by(2) {
                rows.push((name.to_string(), cells.last().unwrap().to_string()));
            }
        }
        let declared = declared();
        for (key, default) in &declared {
            let var = variable(key);
            let (_, cell) = rows
                .iter()
                .find(|(name, _)| *name == var)
                .unwrap_or_else(|| panic!("the README's Configuration table lacks {var}"));
            let plain = match default {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !default.is_null() {
                assert!(
                    cell.contains(&format!("`{plain}`")),
                    "the README gives {var} a default other than `{plain}`: {cell}"
                );
            }
        }
        for (name, _) in &rows {
            assert!(
                variables().contains(name),
                "the README documents {name}, which is no setting"
            );
        }
    }

    #[test]
    fn unknown_file_keys_are_refused_and_stray_variables_ignored() {
        let err = load_file("poll_intervall_ms = 5\n", &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::File { reason, .. } if reason.contains("poll_intervall_ms")),
            "{err}"
        );
        assert!(load_file("[em]\nurl = \"http://em/api\"\n", &[]).is_err());
        // The file's keys are the declared ones; the environment's names are not among them.
        assert!(load_file("EMGW_LISTEN = \"127.0.0.1:1\"\n", &[]).is_err());
        load(&[("EMGW_POLL_INTERVALL_MS", "5"), ("EMGW_SOMETHING_NEW", "x")])
            .expect("stray EMGW_ variables are no error");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = error(&[("EMGW_POLL_INTERVAL_MS", "soon")]);
        assert!(err.starts_with("EMGW_POLL_INTERVAL_MS"), "{err}");
        let err = error(&[("EMGW_WEBHOOK_RETRY_SCHEDULE", "5s,forever")]);
        assert!(err.starts_with("EMGW_WEBHOOK_RETRY_SCHEDULE"), "{err}");
        assert!(err.contains("forever"), "{err}");
        let err = error(&[("EMGW_WEBHOOK_CONCURRENCY", "0")]);
        assert!(err.starts_with("EMGW_WEBHOOK_CONCURRENCY"), "{err}");
        let s = load(&[("EMGW_WEBHOOK_CONCURRENCY", "8")]).unwrap();
        assert_eq!(s.webhook_concurrency, 8);
        let err = error(&[("EMGW_WEBHOOK_PROXY", "socks5://127.0.0.1:1080")]);
        assert!(err.starts_with("EMGW_WEBHOOK_PROXY: "), "{err}");
        let s = load(&[("EMGW_WEBHOOK_PROXY", "http://127.0.0.1:4750")]).unwrap();
        assert_eq!(
            s.webhook_proxy.map(|u| u.to_string()).as_deref(),
            Some("http://127.0.0.1:4750/")
        );
        // In the file, the error also says where.
        let err = load_file("webhook_concurrency = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("EMGW_WEBHOOK_CONCURRENCY"), "{err}");
        assert!(err.contains("`webhook_concurrency` in "), "{err}");
        let err = load_file("poll_interval_ms = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("EMGW_POLL_INTERVAL_MS"), "{err}");
        assert!(err.contains("`poll_interval_ms` in "), "{err}");
    }

    #[test]
    fn every_setting_names_its_own_variable_when_refused() {
        // Values no setting of a number, a duration, an address, a URL or a fingerprint takes.
        for var in variables() {
            for bad in ["0", "x", "-1"] {
                let pairs = with_em(&[(var.as_str(), bad)]);
                if let Err(e) = load(&pairs) {
                    assert!(
                        e.to_string().starts_with(&format!("{var}: ")),
                        "{var}={bad}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn ranges_and_minimums_hold_at_their_edges() {
        for (var, refused, accepted) in [
            ("EMGW_EM_SESSIONS", "0", "1"),
            ("EMGW_EM_SESSIONS", "65", "64"),
            ("EMGW_WEBHOOK_CONCURRENCY", "0", "1"),
            ("EMGW_WEBHOOK_CONCURRENCY", "1025", "1024"),
            ("EMGW_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", "0", "1"),
            ("EMGW_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", "1025", "1024"),
            ("EMGW_EM_TIMEOUT_MS", "99", "100"),
            ("EMGW_POLL_INTERVAL_MS", "9", "10"),
            ("EMGW_WEBHOOK_TIMEOUT_MS", "99", "100"),
            ("EMGW_CLIENT_TIMEOUT_MS", "999", "1000"),
            ("EMGW_BODY_TIMEOUT_MS", "99", "100"),
            ("EMGW_EM_LOGON_BACKOFF_MS", "99", "100"),
            // Never shorter than the first wait (1 s by default).
            ("EMGW_EM_LOGON_BACKOFF_MAX_MS", "999", "1000"),
        ] {
            let err = load(&with_em(&[(var, refused)])).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}={refused}: {err}");
            load(&with_em(&[(var, accepted)])).unwrap_or_else(|e| panic!("{var}={accepted}: {e}"));
        }
        assert_eq!(
            load(&[("EMGW_SETTLE_GRACE_MS", "0")]).unwrap().settle_grace,
            Duration::ZERO
        );
        let em = load(&with_em(&[
            ("EMGW_EM_SESSIONS", "2"),
            ("EMGW_EM_TIMEOUT_MS", "2000"),
        ]))
        .unwrap()
        .em
        .unwrap();
        assert_eq!((em.sessions, em.max_in_flight), (2, 32));
        assert_eq!(em.request_timeout, Duration::from_secs(2));
        let em = load(&with_em(&[
            ("EMGW_EM_LOGON_BACKOFF_MS", "250"),
            ("EMGW_EM_LOGON_BACKOFF_MAX_MS", "250"),
        ]))
        .unwrap()
        .em
        .unwrap();
        assert_eq!(
            (em.logon_backoff.first, em.logon_backoff.max),
            (Duration::from_millis(250), Duration::from_millis(250))
        );
    }

    #[test]
    fn the_em_part_needs_an_account_and_a_url() {
        let err = error(&[("EMGW_EM_URL", "http://em/api"), ("EMGW_EM_PASSWORD", "p")]);
        assert!(err.starts_with("EMGW_EM_USERNAME: "), "{err}");
        let err = error(&[("EMGW_EM_URL", "http://em/api"), ("EMGW_EM_USERNAME", "u")]);
        assert!(err.starts_with("EMGW_EM_PASSWORD: "), "{err}");
        let err = error(&with_em(&[("EMGW_EM_URL", "em.example")]));
        assert!(err.starts_with("EMGW_EM_URL: "), "{err}");
    }

    #[test]
    fn values_take_the_forms_they_took_before() {
        let fingerprint = "AB:".repeat(31) + "AB";
        let s = load(&with_em(&[
            ("EMGW_EM_TLS_INSECURE", "yes"),
            ("EMGW_WEBHOOK_ALLOW_PRIVATE", "1"),
            ("EMGW_EM_CERT_SHA256", &fingerprint),
            ("EMGW_EM_CA_FILE", "/etc/em.pem"),
            ("EMGW_LOG_FORMAT", "pretty"),
            ("EMGW_API_KEY_PEPPER", "pepper"),
        ]))
        .unwrap();
        let em = s.em.unwrap();
        assert!(em.tls.insecure && s.webhook_allow_private);
        assert_eq!(em.tls.cert_sha256, Some([0xab; 32]));
        assert_eq!(em.tls.ca_file, Some(PathBuf::from("/etc/em.pem")));
        assert_eq!(s.log_format, Some(LogFormat::Pretty));
        assert_eq!(s.api_key_pepper.unwrap().expose_secret(), "pepper");
        let err = error(&[("EMGW_LOG_FORMAT", "xml")]);
        assert!(
            err.starts_with("EMGW_LOG_FORMAT: expected json or pretty"),
            "{err}"
        );

        // The file: numbers and booleans bare or quoted, a schedule as a list, a bare password.
        let s = load_file(
            "poll_interval_ms = \"20\"\nem_tls_insecure = true\nwebhook_retry_schedule = [\"1s\", \"2m\"]\nem_url = \"http://em/api\"\nem_username = \"u\"\nem_password = 12345\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.poll_interval, Duration::from_millis(20));
        assert_eq!(
            s.webhook_retry_schedule,
            [Duration::from_secs(1), Duration::from_secs(120)]
        );
        assert_eq!(s.em.unwrap().password.expose_secret(), "12345");
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
        let s = load(&[("EMGW_WEBHOOK_RETRY_SCHEDULE", "500ms, 2h")]).unwrap();
        assert_eq!(
            s.webhook_retry_schedule,
            [Duration::from_millis(500), Duration::from_secs(7200)]
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_errors() {
        let s = load(&with_em(&[
            ("EMGW_EM_PASSWORD", "pw-MARKER"),
            ("DATABASE_URL", "postgres://u:db-MARKER@h/d"),
            ("EMGW_API_KEY_PEPPER", "pepper-MARKER"),
            (
                "EMGW_SECRET_KEY",
                "TUFSS0VSLU1BUktFUi1NQVJLRVItTUFSS0VSLU1BUks=",
            ),
        ]))
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("MARKER"), "{debug}");
        assert!(!debug.contains("TUFSS0VS"), "{debug}");
        assert!(s.secret_key.is_some());
        // A key that is no key is refused without being quoted.
        for var in ["EMGW_SECRET_KEY", "EMGW_SECRET_KEYS_PREVIOUS"] {
            let err = error(&[(var, "not-a-key-MARKER")]);
            assert!(err.starts_with(&format!("{var}: ")), "{err}");
            assert!(!err.contains("MARKER"), "{err}");
            assert!(err.contains("em-gateway secret-key"), "{err}");
        }
        assert!(debug.contains("em.example"), "{debug}");
        // A bare number is taken as the secret, not refused with its digits in the message.
        let s = load_file("api_key_pepper = 987654321\n", &[]).unwrap();
        assert_eq!(s.api_key_pepper.unwrap().expose_secret(), "987654321");
    }
}

//! Settings: environment variables, over an optional TOML file (`--config`) that may set the
//! same keys in lower case without the `EMGW_` prefix (`listen`, `database_url`, `em_url`, …;
//! `rust_log` for `RUST_LOG`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::em::tls::{TlsTrust, parse_fingerprint};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{0} is required for `serve` (or run `em-gateway demo`)")]
    Missing(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Where Enterprise Manager is and how to log on to it.
#[derive(Debug, Clone)]
pub struct EmConfig {
    pub url: String,
    pub username: String,
    pub password: SecretString,
    pub tls: TlsTrust,
    pub sessions: usize,
    /// Per EM call; a write unanswered this long is settled from EM's objects.
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// May hold a password: never logged.
    pub database_url: SecretString,
    pub em: Option<EmConfig>,
    pub poll_interval: Duration,
    /// How long a task EM lost track of may wait for its effect to show among EM's objects
    /// before it is settled as failed.
    pub settle_grace: Duration,
    pub webhook_allow_private: bool,
    pub webhook_retry_schedule: Vec<Duration>,
    pub webhook_timeout: Duration,
    /// Webhook attempts in flight at once, across all subscriptions.
    pub webhook_concurrency: usize,
    /// A client that has not sent its whole request head by then gets 408.
    pub client_timeout: Duration,
    pub log_format: Option<LogFormat>,
    pub log_filter: String,
    /// Keys the hash of stored API keys.
    pub api_key_pepper: Option<SecretString>,
}

/// Every variable the service reads (the file takes them in lower case without `EMGW_`).
pub const VARIABLES: &[&str] = &[
    "EMGW_LISTEN",
    "DATABASE_URL",
    "EMGW_EM_URL",
    "EMGW_EM_USERNAME",
    "EMGW_EM_PASSWORD",
    "EMGW_EM_CA_FILE",
    "EMGW_EM_CERT_SHA256",
    "EMGW_EM_TLS_INSECURE",
    "EMGW_EM_SESSIONS",
    "EMGW_EM_TIMEOUT_MS",
    "EMGW_POLL_INTERVAL_MS",
    "EMGW_SETTLE_GRACE_MS",
    "EMGW_CLIENT_TIMEOUT_MS",
    "EMGW_WEBHOOK_ALLOW_PRIVATE",
    "EMGW_WEBHOOK_RETRY_SCHEDULE",
    "EMGW_WEBHOOK_TIMEOUT_MS",
    "EMGW_WEBHOOK_CONCURRENCY",
    "EMGW_API_KEY_PEPPER",
    "EMGW_LOG_FORMAT",
    "RUST_LOG",
];

fn file_key(variable: &str) -> String {
    variable
        .strip_prefix("EMGW_")
        .unwrap_or(variable)
        .to_ascii_lowercase()
}

/// Looks a variable up (the process environment, or a test's map).
pub type Env = Box<dyn Fn(&str) -> Option<String>>;

/// Key/value source: environment first, then the file.
struct Source {
    file: BTreeMap<String, String>,
    env: Env,
}

impl Source {
    fn get(&self, env_name: &str) -> Option<String> {
        if let Some(v) = (self.env)(env_name).filter(|v| !v.is_empty()) {
            return Some(v);
        }
        self.file
            .get(&file_key(env_name))
            .filter(|v| !v.is_empty())
            .cloned()
    }

    fn parse<T>(
        &self,
        key: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse(v.trim()).map_err(|reason| ConfigError::Invalid {
                key: key.to_string(),
                reason,
            }),
        }
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

/// A parser for a number of milliseconds, at least `min`.
fn millis(min: u64) -> impl Fn(&str) -> Result<Duration, String> {
    move |v| {
        v.parse::<u64>()
            .ok()
            .filter(|n| *n >= min)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("expected milliseconds, at least {min}"))
    }
}

/// `500ms`, `5s`, `5m`, `2h`.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{v:?} is not a duration like 500ms, 5s, 5m, 2h"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("{v:?} is not a duration like 500ms, 5s, 5m, 2h")),
    };
    Ok(Duration::from_millis(ms))
}

impl Settings {
    /// Reads the process environment (and the file, if given).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_source(file, Box::new(|k| std::env::var(k).ok()))
    }

    pub fn from_source(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let file = match file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        let s = Source { file, env };
        let listen = s.parse(
            "EMGW_LISTEN",
            "127.0.0.1:8080"
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            |v| {
                v.parse()
                    .map_err(|_| format!("{v:?} is not an address:port"))
            },
        )?;
        let database_url = s
            .get("DATABASE_URL")
            .unwrap_or_else(|| "sqlite://em-gateway.db".into());
        let em = match s.get("EMGW_EM_URL") {
            None => None,
            Some(url) => {
                let username = s
                    .get("EMGW_EM_USERNAME")
                    .ok_or(ConfigError::Missing("EMGW_EM_USERNAME"))?;
                let password = s
                    .get("EMGW_EM_PASSWORD")
                    .ok_or(ConfigError::Missing("EMGW_EM_PASSWORD"))?;
                let tls = TlsTrust {
                    ca_file: s.get("EMGW_EM_CA_FILE").map(PathBuf::from),
                    cert_sha256: s.parse("EMGW_EM_CERT_SHA256", None, |v| {
                        parse_fingerprint(v).map(Some)
                    })?,
                    insecure: s.parse("EMGW_EM_TLS_INSECURE", false, parse_bool)?,
                };
                let sessions = s.parse("EMGW_EM_SESSIONS", 4usize, |v| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| "expected a number from 1 to 64".into())
                })?;
                let request_timeout =
                    s.parse("EMGW_EM_TIMEOUT_MS", Duration::from_secs(30), millis(100))?;
                Some(EmConfig {
                    url,
                    username,
                    password: SecretString::from(password),
                    tls,
                    sessions,
                    request_timeout,
                })
            }
        };
        let poll_interval = s.parse(
            "EMGW_POLL_INTERVAL_MS",
            Duration::from_millis(1000),
            millis(10),
        )?;
        let settle_grace = s.parse("EMGW_SETTLE_GRACE_MS", Duration::from_secs(300), millis(0))?;
        let webhook_retry_schedule = s.parse(
            "EMGW_WEBHOOK_RETRY_SCHEDULE",
            ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
                .iter()
                .filter_map(|d| parse_duration(d).ok())
                .collect(),
            |v| v.split(',').map(parse_duration).collect(),
        )?;
        let webhook_timeout = s.parse(
            "EMGW_WEBHOOK_TIMEOUT_MS",
            Duration::from_secs(10),
            millis(100),
        )?;
        let webhook_concurrency = s.parse("EMGW_WEBHOOK_CONCURRENCY", 128usize, |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| "expected a number from 1 to 1024".into())
        })?;
        // actix reads its request deadlines off a clock cached every 500 ms: below a second
        // they misfire.
        let client_timeout = s.parse(
            "EMGW_CLIENT_TIMEOUT_MS",
            Duration::from_secs(10),
            millis(1000),
        )?;
        let log_format = s.parse("EMGW_LOG_FORMAT", None, |v| match v {
            "json" => Ok(Some(LogFormat::Json)),
            "pretty" => Ok(Some(LogFormat::Pretty)),
            _ => Err("expected json or pretty".into()),
        })?;
        Ok(Settings {
            listen,
            database_url: SecretString::from(database_url),
            em,
            poll_interval,
            settle_grace,
            webhook_allow_private: s.parse("EMGW_WEBHOOK_ALLOW_PRIVATE", false, parse_bool)?,
            webhook_retry_schedule,
            webhook_timeout,
            webhook_concurrency,
            client_timeout,
            log_format,
            log_filter: s.get("RUST_LOG").unwrap_or_else(|| "info".into()),
            api_key_pepper: s.get("EMGW_API_KEY_PEPPER").map(SecretString::from),
        })
    }
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let err = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let v = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(err(format!("{k}: unsupported value {other:?}"))),
        };
        let k = k.to_ascii_lowercase();
        if !VARIABLES.iter().any(|var| file_key(var) == k) {
            return Err(err(format!("unknown key {k:?}")));
        }
        out.insert(k, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env {
        Box::new(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = Settings::from_source(None, env(&[])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.poll_interval, Duration::from_millis(1000));
        assert_eq!(s.webhook_retry_schedule.len(), 7);
        assert_eq!(s.webhook_concurrency, 128);
        assert!(s.em.is_none());
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let dir = std::env::temp_dir().join(format!("emgw-config-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, "listen = \"0.0.0.0:9000\"\npoll_interval_ms = 250\nem_url = \"http://em/api\"\nem_username = \"u\"\nem_password = \"p\"\n").unwrap();
        let s =
            Settings::from_source(Some(&dir), env(&[("EMGW_LISTEN", "127.0.0.1:7000")])).unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(s.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(s.poll_interval, Duration::from_millis(250));
        assert_eq!(s.em.unwrap().sessions, 4);
    }

    #[test]
    fn the_example_file_sets_every_key_it_documents() {
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
                .unwrap();
        let uncommented: String = example
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let path = std::env::temp_dir().join(format!("emgw-example-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, &uncommented).unwrap();
        // The password belongs in the environment; the example leaves it empty.
        let loaded = Settings::from_source(Some(&path), env(&[("EMGW_EM_PASSWORD", "x")]));
        std::fs::remove_file(&path).ok();
        let loaded = loaded.unwrap();
        assert!(loaded.em.is_some());
        for var in VARIABLES {
            assert!(
                uncommented.contains(&format!("{} =", file_key(var))),
                "config.example.toml lacks {var}"
            );
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let path = std::env::temp_dir().join(format!("emgw-typo-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, "poll_intervall_ms = 5\n").unwrap();
        let err = Settings::from_source(Some(&path), env(&[])).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(err.to_string().contains("poll_intervall_ms"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err =
            Settings::from_source(None, env(&[("EMGW_POLL_INTERVAL_MS", "soon")])).unwrap_err();
        assert!(
            err.to_string().starts_with("EMGW_POLL_INTERVAL_MS"),
            "{err}"
        );
        let err =
            Settings::from_source(None, env(&[("EMGW_WEBHOOK_RETRY_SCHEDULE", "5s,forever")]))
                .unwrap_err();
        assert!(err.to_string().contains("forever"), "{err}");
        let err =
            Settings::from_source(None, env(&[("EMGW_WEBHOOK_CONCURRENCY", "0")])).unwrap_err();
        assert!(
            err.to_string().starts_with("EMGW_WEBHOOK_CONCURRENCY"),
            "{err}"
        );
        let s = Settings::from_source(None, env(&[("EMGW_WEBHOOK_CONCURRENCY", "8")])).unwrap();
        assert_eq!(s.webhook_concurrency, 8);
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5").is_err());
    }
}

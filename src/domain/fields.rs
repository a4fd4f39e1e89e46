//! Field types shared by the requests, and the per-field error list they report into.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One invalid field: where (`cloud_gateway_uids[2]`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Collects every field's problem, so the caller learns all of them at once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The parsed value, or `None` with the error recorded against `field`.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.add(field, message);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

fn no_control_chars(text: &str) -> Result<(), String> {
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// A DNS name or an IP address, as EM takes for `ServerHostName` and `ExternalIp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostName(String);

impl HostName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.parse::<IpAddr>().is_ok() {
            return Ok(HostName(text.to_string()));
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        if name.len() > 253 {
            return Err("must be at most 253 characters".into());
        }
        let labels_ok = name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        // All-numeric dotted names are mistyped IPv4 addresses, not host names.
        let numeric = name
            .split('.')
            .all(|l| l.chars().all(|c| c.is_ascii_digit()));
        if !labels_ok || numeric {
            return Err("must be a DNS name or an IP address".into());
        }
        Ok(HostName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        HostName::parse(&s)
    }
}

impl From<HostName> for String {
    fn from(h: HostName) -> String {
        h.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP port, 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct Port(u16);

impl Port {
    /// EM's default for both the external and the internal port of a gateway.
    pub const CLOUD_GATEWAY_DEFAULT: Port = Port(6180);

    pub fn parse(n: i64) -> Result<Self, String> {
        u16::try_from(n)
            .ok()
            .filter(|p| *p >= 1)
            .map(Port)
            .ok_or_else(|| "must be a port number between 1 and 65535".to_string())
    }

    pub fn get(&self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for Port {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        Port::parse(n)
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

/// Free text EM stores beside an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    pub const MAX: usize = 1024;

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().count() > Self::MAX {
            return Err(format!("must be at most {} characters", Self::MAX));
        }
        no_control_chars(text)?;
        Ok(Description(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Description::parse(&s)
    }
}

impl From<Description> for String {
    fn from(d: Description) -> String {
        d.0
    }
}

/// A gateway pool's name: trimmed, not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolName(String);

impl PoolName {
    pub const MAX: usize = 255;

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.chars().count() > Self::MAX {
            return Err(format!("must be at most {} characters", Self::MAX));
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(PoolName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PoolName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        PoolName::parse(&s)
    }
}

impl From<PoolName> for String {
    fn from(n: PoolName) -> String {
        n.0
    }
}

/// The caller's own data, echoed in the task and in webhooks: a flat map of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub const MAX_KEYS: usize = 50;
    pub const MAX_KEY: usize = 64;
    pub const MAX_VALUE: usize = 512;

    pub fn parse(map: BTreeMap<String, String>, errors: &mut FieldErrors) -> Self {
        if map.len() > Self::MAX_KEYS {
            errors.add(
                "metadata",
                format!("must have at most {} keys", Self::MAX_KEYS),
            );
        }
        for (k, v) in &map {
            let key_ok = !k.is_empty()
                && k.len() <= Self::MAX_KEY
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
            if !key_ok {
                errors.add(
                    format!("metadata.{k}"),
                    format!(
                        "keys must be 1 to {} characters of A-Z a-z 0-9 _ - . :",
                        Self::MAX_KEY
                    ),
                );
            }
            if v.chars().count() > Self::MAX_VALUE {
                errors.add(
                    format!("metadata.{k}"),
                    format!("values must be at most {} characters", Self::MAX_VALUE),
                );
            }
        }
        Metadata(map)
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_dns_names_or_ip_addresses() {
        for ok in [
            "srv01.tech.local",
            "172.16.13.119",
            "2001:db8::1",
            "gw-a",
            "GW01.Example.COM.",
        ] {
            assert!(HostName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            "-gw",
            "gw_01.example",
            "a..b",
            "300.1.1.1",
            "gw 01",
            &"a".repeat(64),
        ] {
            assert!(HostName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_are_1_to_65535() {
        assert!(Port::parse(0).is_err());
        assert!(Port::parse(65536).is_err());
        assert!(Port::parse(-1).is_err());
        assert_eq!(Port::parse(6180).unwrap().get(), 6180);
    }

    #[test]
    fn metadata_reports_each_bad_key() {
        let mut errors = FieldErrors::new();
        let map = BTreeMap::from([
            ("order".to_string(), "42".to_string()),
            ("bad key".into(), "x".into()),
        ]);
        Metadata::parse(map, &mut errors);
        let errors = errors.into_vec();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.bad key");
    }
}

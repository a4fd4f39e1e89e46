//! Cloud Connect tenants and their storage quotas: the validated create and change commands
//! (em-api.md §16). The tenant's password is a secret end to end: it is carried to EM and
//! nowhere else — never serialised, so a task's recorded request cannot hold it.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::fields::{Lines, check_text, string_schema};
use super::{
    BackupServerUid, CloudGatewayPoolUid, Description, RepositoryUid, WanAcceleratorUid,
    string_enum,
};

/// Characters VBR refuses in a Cloud Connect user name.
const FORBIDDEN: &[char] = &[
    '+', ']', '[', ',', '\\', '/', ':', '*', '?', '"', '<', '>', '|', '=', ';', '@',
];

/// A tenant's user name (its login, which cannot change): at most 128 characters, spaces
/// allowed inside, none of `+ ] [ , \ / : * ? " < > | = ; @`, no trailing `.` (VBR's rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

impl TenantName {
    pub const MAX: usize = 128;
    /// [`TenantName::parse`] as a JSON Schema pattern: no leading or trailing space, none of
    /// the forbidden characters, no control characters, not ending with a dot.
    pub const PATTERN: &'static str = r#"^[^\s+\]\[,\\/:*?"<>|=;@\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF]([^+\]\[,\\/:*?"<>|=;@\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF]*[^\s.+\]\[,\\/:*?"<>|=;@\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF])?$"#;

    /// Exactly what the schema says: no trimming, so a name is the login EM will have.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.chars().count() > Self::MAX {
            return Err(format!("must be at most {} characters", Self::MAX));
        }
        if let Some(c) = text.chars().find(|c| FORBIDDEN.contains(c)) {
            return Err(format!(
                "must not contain {c:?} (none of + ] [ , \\ / : * ? \" < > | = ; @)"
            ));
        }
        if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
            return Err("must not start or end with a space".into());
        }
        if text.ends_with('.') {
            return Err("must not end with a period".into());
        }
        check_text(text, Lines::One)?;
        Ok(TenantName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// EM compares tenant names without regard to case.
    pub fn same_as(&self, other: &str) -> bool {
        self.0.to_lowercase() == other.to_lowercase()
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        TenantName::parse(&s)
    }
}

impl From<TenantName> for String {
    fn from(n: TenantName) -> String {
        n.0
    }
}

impl utoipa::PartialSchema for TenantName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            "The tenant's user name (its login; it cannot be changed): at most 128 characters, \
             spaces allowed inside, none of + ] [ , \\ / : * ? \" < > | = ; @, no trailing period",
            Self::PATTERN,
            Some((1, Self::MAX)),
            Some("abc-company"),
        )
    }
}

impl utoipa::ToSchema for TenantName {}

/// A tenant's password: 1 to 128 characters, no control characters. Never serialised, never
/// shown by `Debug`.
#[derive(Clone)]
pub struct TenantPassword(SecretString);

impl TenantPassword {
    pub const MAX: usize = 128;

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.chars().count() > Self::MAX {
            return Err(format!("must be at most {} characters", Self::MAX));
        }
        // Not the text in the message, nor which character or where: it is the secret.
        check_text(text, Lines::One).map_err(|_| {
            "must be one line, without control characters, U+FFFE or U+FFFF".to_string()
        })?;
        Ok(TenantPassword(SecretString::from(text.to_string())))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl fmt::Debug for TenantPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TenantPassword([REDACTED])")
    }
}

impl PartialEq for TenantPassword {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for TenantPassword {}

impl utoipa::PartialSchema for TenantPassword {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Password,
            )))
            .description(Some(
                "The tenant's password, 1 to 128 characters without control characters. \
                 Write-only: it never appears in an answer, a task, a webhook or a log.",
            ))
            .min_length(Some(1))
            .max_length(Some(Self::MAX))
            .pattern(Some(r"^[^\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF]*$"))
            .write_only(true)
            .into()
    }
}

impl utoipa::ToSchema for TenantPassword {}

/// A storage quota in MB (2^20 bytes, as Veeam counts): at least 1024 ("cannot be less than
/// 1GB"), at most what EM's `int` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u64")]
pub struct QuotaMb(u64);

impl QuotaMb {
    pub const MIN: u64 = 1024;
    pub const MAX: u64 = i32::MAX as u64;

    pub fn parse(n: i64) -> Result<Self, String> {
        u64::try_from(n)
            .ok()
            .filter(|n| (Self::MIN..=Self::MAX).contains(n))
            .map(QuotaMb)
            .ok_or_else(|| format!("must be from {} to {} (MB)", Self::MIN, Self::MAX))
    }

    pub fn get(&self) -> u64 {
        self.0
    }
}

impl TryFrom<i64> for QuotaMb {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        QuotaMb::parse(n)
    }
}

impl From<QuotaMb> for u64 {
    fn from(q: QuotaMb) -> u64 {
        q.0
    }
}

/// A whole number from 1 up to what EM's `int` holds: concurrent tasks, a speed limit, days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Count(u32);

impl Count {
    pub const MAX: u32 = i32::MAX as u32;

    pub fn parse(n: i64) -> Result<Self, String> {
        u32::try_from(n)
            .ok()
            .filter(|n| (1..=Self::MAX).contains(n))
            .map(Count)
            .ok_or_else(|| format!("must be from 1 to {}", Self::MAX))
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        Count::parse(n)
    }
}

impl From<Count> for u32 {
    fn from(c: Count) -> u32 {
        c.0
    }
}

/// The friendly name of a storage quota, as the tenant sees its cloud repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceName(String);

impl ResourceName {
    pub const MAX: usize = 255;

    /// Trimmed, not empty, one line.
    pub fn parse(text: &str) -> Result<Self, String> {
        super::fields::one_line_name(text, Self::MAX).map(ResourceName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ResourceName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ResourceName::parse(&s)
    }
}

impl From<ResourceName> for String {
    fn from(n: ResourceName) -> String {
        n.0
    }
}

impl utoipa::PartialSchema for ResourceName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::name_schema(
            "The cloud repository's name as the tenant sees it",
            Self::MAX,
            "Cloud Repository",
        )
    }
}

impl utoipa::ToSchema for ResourceName {}

string_enum!(
    /// A throttling speed unit, as EM spells it: `Mbps` is megabits, `KBps` and `MBps` bytes.
    SpeedUnit {
        Mbps = "Mbps",
        KBps = "KBps",
        MBps = "MBps",
    }
);

/// Throttling of the tenant's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    pub speed_limit: Count,
    pub unit: SpeedUnit,
}

/// When a lease ends: in the future when it is given.
pub fn lease_end(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if at <= now {
        return Err("must be in the future".into());
    }
    Ok(at)
}

/// A setting a change may keep, clear (JSON `null`) or set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edit<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Edit<T> {
    pub fn is_keep(&self) -> bool {
        matches!(self, Edit::Keep)
    }
}

/// A new storage quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBackupResource {
    pub name: ResourceName,
    pub repository: RepositoryUid,
    pub quota_mb: QuotaMb,
    pub wan_accelerator: Option<WanAcceleratorUid>,
}

/// `POST /v1/cloud-tenants`, validated: quotas on distinct repositories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCloudTenant {
    pub backup_server: BackupServerUid,
    pub name: TenantName,
    pub description: Option<Description>,
    /// Always there in a request. Never recorded: a command read back from its task's record
    /// has none, and judging a lost task needs none (the name identifies the tenant).
    #[serde(skip)]
    pub password: Option<TenantPassword>,
    pub enabled: bool,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub backup_resources: Vec<NewBackupResource>,
    pub max_concurrent_tasks: Option<Count>,
    pub throttling: Option<Throttling>,
    pub backup_protection_days: Option<Count>,
    pub cloud_gateway_pools: Vec<CloudGatewayPoolUid>,
    pub failover_to_other_gateways: Option<bool>,
}

/// A quota's new size (`backup_resources: [{"id", "quota_mb"}]` of a PATCH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaResize {
    pub id: Uuid,
    pub quota_mb: QuotaMb,
}

/// `PATCH /v1/cloud-tenants/{id}`, validated: what is left out keeps what EM has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudTenantChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Never recorded (see [`NewCloudTenant::password`]); `password_changed` is.
    #[serde(skip)]
    pub password: Option<TenantPassword>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_changed: bool,
    #[serde(default, skip_serializing_if = "Edit::is_keep")]
    pub lease_expires_at: Edit<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Edit::is_keep")]
    pub throttling: Edit<Throttling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_tasks: Option<Count>,
    #[serde(default, skip_serializing_if = "Edit::is_keep")]
    pub backup_protection_days: Edit<Count>,
    /// Replaces the tenant's pools; empty: none (EM picks gateways itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_gateway_pools: Option<Vec<CloudGatewayPoolUid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_to_other_gateways: Option<bool>,
    /// Quotas to resize; the others are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_resources: Vec<QuotaResize>,
}

/// `POST /v1/cloud-tenants/{id}/backup-resources`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTenantBackupResource {
    pub tenant: Uuid,
    pub resource: NewBackupResource,
}

/// `DELETE /v1/cloud-tenants/{id}/backup-resources/{resource_id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantBackupResource {
    pub tenant: Uuid,
    pub resource: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_follow_vbr_rules() {
        for ok in [
            "abc",
            "ABC Company",
            "a.b-c_d",
            "Ünïcode Ltd",
            &"x".repeat(128),
        ] {
            assert!(TenantName::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"x".repeat(129) as &str, "128"),
            ("a+b", "+"),
            ("a@b", "@"),
            ("a;b", ";"),
            ("a\\b", "\\"),
            ("abc.", "period"),
            (" abc", "space"),
            ("abc ", "space"),
            ("a\u{0}b", "control"),
            ("a\u{FFFE}", "control"),
        ] {
            let err = TenantName::parse(bad).unwrap_err();
            assert!(
                err.contains(why) || why == "empty" && err.contains("empty"),
                "{bad:?}: {err}"
            );
        }
        assert!(TenantName::parse("ABC").unwrap().same_as("abc"));
    }

    #[test]
    fn the_name_pattern_says_what_parse_does() {
        // ECMA-262 and the regex crate read these escapes alike.
        let pattern = regex::Regex::new(TenantName::PATTERN).unwrap();
        for text in [
            "abc",
            "ABC Company",
            "a.b",
            "abc.",
            " abc",
            "abc ",
            "a+b",
            "a b c",
            "x",
            ".x",
            "a\tb",
            "a@b",
        ] {
            assert_eq!(
                pattern.is_match(text),
                TenantName::parse(text).is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn passwords_are_never_shown() {
        let p = TenantPassword::parse("s3cret-Pa55").unwrap();
        assert!(!format!("{p:?}").contains("s3cret"));
        assert!(TenantPassword::parse("").is_err());
        assert!(TenantPassword::parse(&"p".repeat(129)).is_err());
        assert!(TenantPassword::parse("a\u{7}b").is_err());
        let tenant = NewCloudTenant {
            backup_server: BackupServerUid::parse("29e5d158-1f58-44bc-bbaa-2752d787a91d").unwrap(),
            name: TenantName::parse("abc").unwrap(),
            description: None,
            password: Some(p),
            enabled: true,
            lease_expires_at: None,
            backup_resources: Vec::new(),
            max_concurrent_tasks: None,
            throttling: None,
            backup_protection_days: None,
            cloud_gateway_pools: Vec::new(),
            failover_to_other_gateways: None,
        };
        let recorded = serde_json::to_string(&tenant).unwrap();
        assert!(!recorded.contains("s3cret"), "{recorded}");
        let back: NewCloudTenant = serde_json::from_str(&recorded).unwrap();
        assert_eq!(back.password, None);
    }

    #[test]
    fn quotas_are_whole_gigabytes_at_least_and_fit_an_int() {
        assert!(QuotaMb::parse(1023).is_err());
        assert_eq!(QuotaMb::parse(1024).unwrap().get(), 1024);
        assert!(QuotaMb::parse(i64::from(i32::MAX)).is_ok());
        assert!(QuotaMb::parse(i64::from(i32::MAX) + 1).is_err());
        assert!(QuotaMb::parse(-1).is_err());
        assert!(Count::parse(0).is_err());
        assert!(Count::parse(1).is_ok());
    }

    #[test]
    fn a_lease_ends_in_the_future() {
        let now = Utc::now();
        assert!(lease_end(now + chrono::Duration::days(1), now).is_ok());
        assert!(lease_end(now, now).is_err());
        assert!(lease_end(now - chrono::Duration::days(1), now).is_err());
    }

    #[test]
    fn a_change_records_what_it_keeps_clears_and_sets_but_never_the_password() {
        let change = CloudTenantChange {
            enabled: Some(false),
            password: Some(TenantPassword::parse("n3w-Secret").unwrap()),
            password_changed: true,
            lease_expires_at: Edit::Clear,
            throttling: Edit::Set(Throttling {
                speed_limit: Count::parse(10).unwrap(),
                unit: SpeedUnit::MBps,
            }),
            ..Default::default()
        };
        let recorded = serde_json::to_string(&change).unwrap();
        assert!(!recorded.contains("n3w-Secret"), "{recorded}");
        let back: CloudTenantChange = serde_json::from_str(&recorded).unwrap();
        assert_eq!(back.password, None);
        assert!(back.password_changed);
        assert_eq!(back.lease_expires_at, Edit::Clear);
        assert_eq!(back.throttling, change.throttling);
        assert_eq!(back.backup_protection_days, Edit::Keep);
    }
}

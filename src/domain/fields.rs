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

/// Whether a text may run over several lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// A name: no control character at all.
    One,
    /// Free text: tabs and line feeds too.
    Many,
}

/// The one rule for text that may reach EM's XML or sit beside it: XML 1.0 characters only
/// (its `Char` production has no C0 control but tab, LF and CR, and no U+FFFE or U+FFFF: EM's
/// parser refuses the whole document over one of them). Stricter still, as no one means them:
/// no DEL or C1 control, and no CR, which every XML parser turns into LF, so that EM would keep
/// something other than what was sent. [`Lines::Many`] lets tab and LF through.
pub fn check_text(text: &str, lines: Lines) -> Result<(), String> {
    let allowed = |c: char| match c {
        '\t' | '\n' => lines == Lines::Many,
        '\u{FFFE}' | '\u{FFFF}' => false,
        c => !c.is_control(),
    };
    match text.chars().enumerate().find(|(_, c)| !allowed(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(format!(
            "must not contain U+{:04X} (character {}): {}",
            u32::from(c),
            at + 1,
            match lines {
                Lines::One => "one line, without control characters, U+FFFE or U+FFFF",
                Lines::Many => {
                    "no control characters but tab and line feed, and no U+FFFE or U+FFFF"
                }
            }
        )),
    }
}

/// A string schema for a domain type: its rules, as the JSON Schema that documents them.
pub(crate) fn string_schema(
    description: &str,
    pattern: &str,
    length: Option<(usize, usize)>,
    example: Option<&str>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let mut schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern));
    if let Some((min, max)) = length {
        schema = schema.min_length(Some(min)).max_length(Some(max));
    }
    if let Some(example) = example {
        schema = schema.examples([example]);
    }
    schema.into()
}

/// [`check_text`] with [`Lines::Many`] as a JSON Schema pattern.
pub(crate) const TEXT_PATTERN: &str = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F\uFFFE\uFFFF]*$";

/// One-line text with at least one character that is not a space: a name.
pub(crate) const NAME_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF]*[^\s\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF][^\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF]*$";

/// A DNS name as [`HostName::parse`] takes it, as a JSON Schema pattern: labels of letters,
/// digits and inner hyphens, the last one starting with a letter, an optional final dot.
pub(crate) const DNS_NAME_PATTERN: &str = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$";

/// A DNS name or an IP address, as EM takes for `ServerHostName` and `ExternalIp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostName(String);

impl HostName {
    /// Exactly what [`HostName`]'s JSON Schema says: no trimming, so that a value the schema
    /// refuses is refused here too.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.parse::<IpAddr>().is_ok() {
            return Ok(HostName(text.to_string()));
        }
        if text.len() > 253 {
            return Err("must be at most 253 characters".into());
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        let labels_ok = name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        // The last label (the top-level domain, or a single-label name) starts with a letter:
        // `10.0.0.300` is a mistyped address, not a name (RFC 3696 §2).
        let last_ok = name
            .rsplit('.')
            .next()
            .and_then(|l| l.chars().next())
            .is_some_and(|c| c.is_ascii_alphabetic());
        if !labels_ok || !last_ok {
            return Err("must be a DNS name or an IP address".into());
        }
        Ok(HostName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for HostName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        let address = |format| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        AnyOfBuilder::new()
            .description(Some("A DNS name or an IP address"))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(253))
                    .pattern(Some(DNS_NAME_PATTERN)),
            )
            .item(address(KnownFormat::Ipv4))
            .item(address(KnownFormat::Ipv6))
            .examples(["srv01.tech.local"])
            .into()
    }
}

impl utoipa::ToSchema for HostName {}

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
        check_text(text, Lines::Many)?;
        Ok(Description(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Description {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            "Free text (tabs and line feeds allowed, no other control characters)",
            TEXT_PATTERN,
            Some((0, Self::MAX)),
            None,
        )
    }
}

impl utoipa::ToSchema for Description {}

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

/// A name as EM's objects have them: trimmed, not empty, at most `max` characters, one line.
pub fn one_line_name(text: &str, max: usize) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    check_text(text, Lines::One)?;
    Ok(text.to_string())
}

/// A gateway pool's name: trimmed, not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolName(String);

impl PoolName {
    pub const MAX: usize = 255;

    pub fn parse(text: &str) -> Result<Self, String> {
        one_line_name(text, Self::MAX).map(PoolName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for PoolName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        name_schema("A pool's name", Self::MAX, "GatewayPool 1")
    }
}

/// A name's schema: one line of at most `max` characters, not only spaces (names are trimmed).
pub fn name_schema(
    what: &str,
    max: usize,
    example: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    string_schema(
        &format!("{what}: one line of at most {max} characters, not only spaces"),
        NAME_PATTERN,
        Some((1, max)),
        Some(example),
    )
}

impl utoipa::ToSchema for PoolName {}

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
            } else if let Err(message) = check_text(v, Lines::Many) {
                // Echoed in tasks and webhooks, and a portal may well pass them on to EM.
                errors.add(format!("metadata.{k}"), message);
            }
        }
        Metadata(map)
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl utoipa::PartialSchema for Metadata {
    /// The rules of `parse`, as JSON Schema.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Your own data, echoed in the task and in webhooks: a flat map of strings (no control characters but tab and line feed).",
            ))
            .max_properties(Some(Self::MAX_KEYS))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!("^[A-Za-z0-9_.:-]{{1,{}}}$", Self::MAX_KEY))),
            ))
            .additional_properties(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(Self::MAX_VALUE))
                    .pattern(Some(TEXT_PATTERN)),
            ))
            .examples([serde_json::json!({"order": "42"})])
            .into()
    }
}

impl utoipa::ToSchema for Metadata {}

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
            " gw01.example.com",
            "-gw",
            "gw_01.example",
            "a..b",
            "300.1.1.1",
            "1.2.3",
            "gw.3com",
            "gw 01",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(125)),
        ] {
            assert!(HostName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_holds_xml_1_0_characters_and_no_control_characters() {
        use Lines::{Many, One};
        // (character, allowed in one line, allowed in free text)
        let cases = [
            ('a', true, true),
            (' ', true, true),
            ('é', true, true),
            ('€', true, true),
            ('\u{D7FF}', true, true),
            ('\u{E000}', true, true),
            ('\u{FDD0}', true, true), // a non-character, but an XML 1.0 `Char`
            ('\u{FFFD}', true, true),
            ('\u{10000}', true, true),
            ('\u{10FFFF}', true, true),
            ('\t', false, true),
            ('\n', false, true),
            ('\r', false, false), // XML parsers turn it into LF
            ('\u{0}', false, false),
            ('\u{1}', false, false),
            ('\u{8}', false, false),
            ('\u{B}', false, false),
            ('\u{C}', false, false),
            ('\u{1B}', false, false),
            ('\u{1F}', false, false),
            ('\u{7F}', false, false),
            ('\u{80}', false, false),
            ('\u{85}', false, false),
            ('\u{9F}', false, false),
            ('\u{FFFE}', false, false),
            ('\u{FFFF}', false, false),
        ];
        for (c, one, many) in cases {
            let text = format!("a{c}b");
            assert_eq!(check_text(&text, One).is_ok(), one, "{c:?} in one line");
            assert_eq!(check_text(&text, Many).is_ok(), many, "{c:?} in free text");
            assert_eq!(
                Description::parse(&text).is_ok(),
                many,
                "{c:?} in a description"
            );
            assert_eq!(PoolName::parse(&text).is_ok(), one, "{c:?} in a pool name");
            let mut errors = FieldErrors::new();
            Metadata::parse(BTreeMap::from([("k".into(), text.clone())]), &mut errors);
            assert_eq!(errors.is_empty(), many, "{c:?} in a metadata value");
        }
        assert_eq!(
            check_text("ab\u{FFFE}", Many).unwrap_err(),
            "must not contain U+FFFE (character 3): no control characters but tab and line \
             feed, and no U+FFFE or U+FFFF",
            "the message names the character and where it is"
        );
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

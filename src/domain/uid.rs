//! EM's UIDs, typed by what they name: a tenant UID can never be passed where a gateway UID is
//! expected.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

pub trait UidKind {
    /// EM's type name in `urn:veeam:<Type>:<guid>`.
    const NAME: &'static str;
}

macro_rules! uid_kind {
    ($kind:ident, $alias:ident, $name:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $kind;
        impl UidKind for $kind {
            const NAME: &'static str = $name;
        }
        pub type $alias = Uid<$kind>;
    };
}

uid_kind!(BackupServer, BackupServerUid, "BackupServer");
uid_kind!(CloudGateway, CloudGatewayUid, "CloudGateway");
uid_kind!(CloudGatewayPool, CloudGatewayPoolUid, "CloudGatewayPool");
uid_kind!(CloudTenant, CloudTenantUid, "CloudTenant");
uid_kind!(Repository, RepositoryUid, "Repository");
uid_kind!(WanAccelerator, WanAcceleratorUid, "WanAccelerator");

/// `urn:veeam:<Type>:<guid>`; accepted also as the bare guid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid<K> {
    id: Uuid,
    kind: PhantomData<K>,
}

impl<K: UidKind> Uid<K> {
    pub fn new(id: Uuid) -> Self {
        Uid {
            id,
            kind: PhantomData,
        }
    }

    /// No trimming: exactly what the JSON Schema pattern says.
    pub fn parse(text: &str) -> Result<Self, String> {
        let guid = match text.strip_prefix("urn:veeam:") {
            Some(rest) => {
                let (kind, guid) = rest.split_once(':').ok_or_else(|| Self::expected())?;
                if kind != K::NAME {
                    return Err(format!(
                        "is a {kind} UID; expected urn:veeam:{}:<guid> or a bare guid",
                        K::NAME
                    ));
                }
                guid
            }
            None => text,
        };
        // Only the hyphenated 36-character form EM uses; Uuid::parse_str alone takes others.
        if guid.len() != 36 {
            return Err(Self::expected());
        }
        Uuid::parse_str(guid)
            .map(Self::new)
            .map_err(|_| Self::expected())
    }

    fn expected() -> String {
        format!("must be urn:veeam:{}:<guid> or a bare guid", K::NAME)
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn urn(&self) -> String {
        format!("urn:veeam:{}:{}", K::NAME, self.id)
    }
}

impl<K: UidKind> fmt::Display for Uid<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "urn:veeam:{}:{}", K::NAME, self.id)
    }
}

impl<K: UidKind> fmt::Debug for Uid<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<K: UidKind> utoipa::PartialSchema for Uid<K> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::fields::string_schema(
            &format!("`urn:veeam:{}:<guid>`, or the bare guid", K::NAME),
            &format!("^(urn:veeam:{}:)?{GUID_PATTERN}$", K::NAME),
            None,
            Some(&format!(
                "urn:veeam:{}:29e5d158-1f58-44bc-bbaa-2752d787a91d",
                K::NAME
            )),
        )
    }
}

impl<K: UidKind> utoipa::ToSchema for Uid<K> {
    fn name() -> std::borrow::Cow<'static, str> {
        format!("{}Uid", K::NAME).into()
    }
}

/// A guid in the hyphenated 36-character form EM writes.
const GUID_PATTERN: &str =
    "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";

impl<K: UidKind> Serialize for Uid<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.urn())
    }
}

impl<'de, K: UidKind> Deserialize<'de> for Uid<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Uid::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "29e5d158-1f58-44bc-bbaa-2752d787a91d";

    #[test]
    fn parses_urns_and_bare_guids() {
        let a = BackupServerUid::parse(&format!("urn:veeam:BackupServer:{G}")).unwrap();
        let b = BackupServerUid::parse(G).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.urn(), format!("urn:veeam:BackupServer:{G}"));
    }

    #[test]
    fn refuses_other_kinds_and_malformed_guids() {
        assert!(BackupServerUid::parse(&format!("urn:veeam:CloudTenant:{G}")).is_err());
        assert!(BackupServerUid::parse(&format!("urn:veeam:BackupServer:{G} {G}")).is_err());
        assert!(BackupServerUid::parse("29e5d1581f5844bcbbaa2752d787a91d").is_err());
        assert!(BackupServerUid::parse("").is_err());
        assert!(BackupServerUid::parse("urn:veeam:").is_err());
        assert!(BackupServerUid::parse(&format!(" {G}")).is_err());
    }
}

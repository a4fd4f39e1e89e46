//! The ids of the gateway's own records, each its own type: a webhook id can never be passed
//! where a delivery id is expected. (EM's objects have typed UIDs: see `uid`.)

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident, $new:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                $name(Uuid::$new())
            }

            pub fn parse(text: &str) -> Option<Self> {
                Uuid::parse_str(text).ok().map($name)
            }

            pub fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A task: a UUIDv7, so ids sort by creation time (the list cursor relies on it).
    TaskId,
    now_v7
);
uuid_id!(
    /// A webhook subscription (UUIDv7).
    WebhookId,
    now_v7
);
uuid_id!(
    /// One event's delivery to one subscription (UUIDv7: the delivery log pages by it).
    DeliveryId,
    now_v7
);
uuid_id!(
    /// An API key's record (never the key itself).
    ApiKeyId,
    new_v4
);
uuid_id!(
    /// A running gateway process: the owner of its EM sessions and of the leases it takes.
    ReplicaId,
    new_v4
);

/// A webhook event: the `webhook-id` header, the same on every retry of one event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    pub fn new() -> Self {
        EventId(format!("msg_{}", Uuid::now_v7().simple()))
    }

    /// As stored; not checked (ids from before are kept as they were).
    pub fn from_stored(text: String) -> Self {
        EventId(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_what_they_print() {
        let id = WebhookId::new();
        assert_eq!(WebhookId::parse(&id.to_string()), Some(id));
        assert_eq!(WebhookId::parse("not-a-uuid"), None);
        assert!(
            TaskId::new() < TaskId::new() || cfg!(miri),
            "v7 ids sort by time"
        );
        assert!(EventId::new().as_str().starts_with("msg_"));
    }
}

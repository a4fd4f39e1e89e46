//! Owners: who a key, a task or a webhook subscription belongs to — a team or a system. A
//! `read` or `write` key sees only its owner's tasks and subscriptions; an `admin` key sees all.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Scope;

/// 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or a digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Owner(String);

impl Owner {
    pub const MAX: usize = 64;
    /// [`Owner::parse`]'s rule as a JSON Schema pattern.
    pub const PATTERN: &'static str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

    /// Keys made without an owner, and everything from before owners existed.
    pub fn default_owner() -> Self {
        Owner("default".into())
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= Self::MAX
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(format!(
                "must be 1 to {} letters, digits, '.', '_' or '-', starting with a letter or a digit",
                Self::MAX
            ));
        }
        Ok(Owner(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Owner {
    fn default() -> Self {
        Owner::default_owner()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Owner {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Owner::parse(&s)
    }
}

impl From<Owner> for String {
    fn from(o: Owner) -> String {
        o.0
    }
}

impl utoipa::PartialSchema for Owner {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::fields::string_schema(
            "Who a key, a task or a webhook subscription belongs to: a team or a system",
            Self::PATTERN,
            Some((1, Self::MAX)),
            Some("portal-eu"),
        )
    }
}

impl utoipa::ToSchema for Owner {}

/// What one API key sees of what owners own: an admin key everything, any other key its own
/// owner's only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    Everything,
    Own(Owner),
}

/// The owners a list shows, once a key's visibility meets the `owner` it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Every owner's.
    Everyone,
    Only(Owner),
    /// Another owner's, asked for by a key that cannot see them: an empty list, which says
    /// nothing about whether that owner has any.
    Nothing,
}

impl Visibility {
    pub fn of(scope: Scope, owner: &Owner) -> Self {
        match scope {
            Scope::Admin => Visibility::Everything,
            Scope::Read | Scope::Write => Visibility::Own(owner.clone()),
        }
    }

    /// Whether something `owner` owns is visible (else it is answered as if it did not exist).
    pub fn sees(&self, owner: &Owner) -> bool {
        match self {
            Visibility::Everything => true,
            Visibility::Own(own) => own == owner,
        }
    }

    pub fn list(&self, asked: Option<Owner>) -> Listing {
        match (self, asked) {
            (Visibility::Everything, None) => Listing::Everyone,
            (Visibility::Everything, Some(asked)) => Listing::Only(asked),
            (Visibility::Own(own), None) => Listing::Only(own.clone()),
            (Visibility::Own(own), Some(asked)) if asked == *own => Listing::Only(asked),
            (Visibility::Own(_), Some(_)) => Listing::Nothing,
        }
    }
}

impl Listing {
    /// The store's filter: `None` for every owner. Not for [`Listing::Nothing`], which needs
    /// no query.
    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Listing::Only(owner) => Some(owner),
            Listing::Everyone | Listing::Nothing => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_short_plain_names() {
        for ok in ["default", "portal-eu", "team_7.b", "A", &"a".repeat(64)] {
            assert!(Owner::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-team", ".x", "team a", "tëam", "a/b", &"a".repeat(65)] {
            assert!(Owner::parse(bad).is_err(), "{bad}");
        }
    }

    fn o(name: &str) -> Owner {
        Owner::parse(name).unwrap()
    }

    #[test]
    fn admin_keys_see_every_owner_and_other_keys_their_own() {
        let cases = [
            (Scope::Admin, "a", "a", true),
            (Scope::Admin, "a", "b", true),
            (Scope::Write, "a", "a", true),
            (Scope::Write, "a", "b", false),
            (Scope::Read, "a", "a", true),
            (Scope::Read, "a", "b", false),
        ];
        for (scope, own, other, sees) in cases {
            let v = Visibility::of(scope, &o(own));
            assert_eq!(
                v.sees(&o(other)),
                sees,
                "{scope:?} of {own} looking at {other}"
            );
        }
    }

    #[test]
    fn an_owner_filter_narrows_what_a_key_sees_and_never_widens_it() {
        let admin = Visibility::of(Scope::Admin, &o("ops"));
        let team = Visibility::of(Scope::Write, &o("a"));
        let cases = [
            (&admin, None, Listing::Everyone),
            (&admin, Some("b"), Listing::Only(o("b"))),
            (&team, None, Listing::Only(o("a"))),
            (&team, Some("a"), Listing::Only(o("a"))),
            (&team, Some("b"), Listing::Nothing),
        ];
        for (v, asked, expected) in cases {
            assert_eq!(v.list(asked.map(o)), expected, "{v:?} asking {asked:?}");
        }
        assert_eq!(Listing::Everyone.owner(), None);
        assert_eq!(Listing::Only(o("a")).owner(), Some(&o("a")));
    }
}

//! Tenant passwords as the simulator keeps them: a SHA-256 over a random salt and the
//! password, never the password itself, so that no answer, state dump or log can show one.

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl PasswordHash {
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 16];
        if SystemRandom::new().fill(&mut salt).is_err() {
            // The OS generator does not fail on the systems we run on; a weaker salt beats a
            // failed request in a simulator.
            salt.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        PasswordHash {
            digest: hash(&salt, password),
            salt,
        }
    }

    pub fn matches(&self, password: &str) -> bool {
        let other = hash(&self.salt, password);
        // Constant time, as a password check should be.
        self.digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn hash(salt: &[u8; 16], password: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(salt.len() + password.len());
    input.extend_from_slice(salt);
    input.extend_from_slice(password.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &input).as_ref());
    out
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_its_password_and_salts_each_hash() {
        let a = PasswordHash::new("s3cret");
        assert!(a.matches("s3cret"));
        assert!(!a.matches("s3cret "));
        assert!(!a.matches(""));
        let b = PasswordHash::new("s3cret");
        assert_ne!(a, b, "a random salt per hash");
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}

//! Passwords, kept only as their SHA-256 digest (as Redis keeps ACL passwords) and
//! compared in constant time: a client learns nothing from how long a wrong password
//! takes to refuse, neither how much of it was right nor whether the user exists.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 digest of a password. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The digest of a clear-text password.
    pub fn of_password(password: &[u8]) -> Secret {
        Secret(Sha256::digest(password).into())
    }

    /// A digest given as 64 hex digits, with or without Redis's leading `#`
    /// (`ACL SETUSER ... #<hash>`); `None` if it is not one.
    pub fn from_hex(text: &str) -> Option<Secret> {
        let hex = text.strip_prefix('#').unwrap_or(text).as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (out, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
            *out = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Secret(digest))
    }

    /// Whether `password` is this secret's: its digest compared in constant time.
    pub fn matches(&self, password: &[u8]) -> bool {
        self.matches_digest(&Secret::of_password(password))
    }

    /// Constant-time comparison of two digests.
    pub fn matches_digest(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_and_match_redis_acl_hashes() {
        // `ACL SETUSER alice >apw` on redis-server 7.0 lists `#e528e9...`.
        let hash = "e528e908837a6f2c169a132a07f95107a5cc523f61d09d028c2fa799aeef4257";
        let s = Secret::from_hex(hash).unwrap();
        assert!(s.matches(b"apw"));
        assert!(!s.matches(b"apw "));
        assert!(!s.matches(b""));
        assert_eq!(Secret::from_hex(&format!("#{hash}")), Some(s.clone()));
        assert_eq!(Secret::from_hex(&hash.to_uppercase()), Some(s.clone()));
        assert_eq!(Secret::of_password(b"apw"), s);
    }

    #[test]
    fn bad_hex_is_refused() {
        assert_eq!(Secret::from_hex("abc"), None);
        assert_eq!(Secret::from_hex(&"g".repeat(64)), None);
        assert_eq!(Secret::from_hex(&"a".repeat(65)), None);
    }

    #[test]
    fn debug_shows_no_digest() {
        let text = format!("{:?}", Secret::of_password(b"hunter2"));
        assert_eq!(text, "Secret(<redacted>)");
    }
}

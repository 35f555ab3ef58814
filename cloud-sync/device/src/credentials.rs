//! Bearer tokens as config stores them: the SHA-256 of the token, never the token. One
//! hashing and one constant-time comparison for every kind of credential: staff tokens on
//! the device, brand and operator tokens at the data bank.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a bearer token. Written in config as `sha256:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

/// A token hash that is not `sha256:` and 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a token hash is sha256:<64 hex digits> (make one with `hash-token`)")]
pub struct BadTokenHash;

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `token` hashes to this, compared in constant time.
    pub fn matches(&self, token: &str) -> bool {
        bool::from(self.0.ct_eq(&TokenHash::of(token).0))
    }

    /// Parses `sha256:<hex>` or, where a field name already says SHA-256, bare hex.
    pub fn parse_lenient(s: &str) -> Result<TokenHash, BadTokenHash> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        hex::decode(hex)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .map(TokenHash)
            .ok_or(BadTokenHash)
    }
}

impl FromStr for TokenHash {
    type Err = BadTokenHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.starts_with("sha256:") {
            return Err(BadTokenHash);
        }
        TokenHash::parse_lenient(s)
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not the token, but there is no reason to spread it through logs either.
        f.write_str("TokenHash(sha256:..)")
    }
}

/// Token hashes, each naming what it grants (a brand, a staff member, an operator).
#[derive(Debug, Clone)]
pub struct TokenSet<T> {
    entries: Vec<(TokenHash, T)>,
}

impl<T> Default for TokenSet<T> {
    fn default() -> Self {
        TokenSet {
            entries: Vec::new(),
        }
    }
}

impl<T> TokenSet<T> {
    pub fn new(entries: Vec<(TokenHash, T)>) -> Self {
        TokenSet { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What `token` grants, if anything. The token is hashed once and compared with every
    /// entry in constant time, so the answer's timing does not depend on where it matched.
    pub fn lookup(&self, token: &str) -> Option<&T> {
        if token.is_empty() {
            return None;
        }
        let digest = TokenHash::of(token);
        let mut found = None;
        for (hash, grant) in &self.entries {
            if bool::from(hash.0.ct_eq(&digest.0)) && found.is_none() {
                found = Some(grant);
            }
        }
        found
    }
}

/// `Authorization: Bearer <token>` of a request, trimmed; `None` when absent or not Bearer.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_compare() {
        let h = TokenHash::of("demo-staff-token");
        assert_eq!(
            h.to_string(),
            "sha256:014519f70727c7a3c69e8a1e41b396ceb2f9df7059eff690703bed0858ee014f"
        );
        assert_eq!(h.to_string().parse::<TokenHash>(), Ok(h));
        assert!(h.matches("demo-staff-token"));
        assert!(!h.matches("demo-staff-token "));
        assert!(!format!("{h:?}").contains("0145"));
    }

    #[test]
    fn rejects_malformed_hashes() {
        for bad in ["", "sha256:", "sha256:zz", "md5:00", &"a".repeat(64)] {
            assert_eq!(bad.parse::<TokenHash>(), Err(BadTokenHash), "{bad:?}");
        }
        assert!(TokenHash::parse_lenient(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn token_sets_say_what_a_token_grants() {
        let set = TokenSet::new(vec![
            (TokenHash::of("t-lumi"), "lumi"),
            (TokenHash::of("t-dawn"), "dawn"),
        ]);
        assert_eq!(set.lookup("t-dawn"), Some(&"dawn"));
        assert_eq!(set.lookup("t-nope"), None);
        assert_eq!(set.lookup(""), None);
        assert_eq!(bearer(Some("Bearer  t-lumi ")), Some("t-lumi"));
        assert_eq!(bearer(Some("Basic x")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
    }
}

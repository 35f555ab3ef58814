//! The device's secrets as fixed-size types: parsed once from config, never printed.
//! `Debug` shows only that a secret is there, and the bytes are wiped when dropped.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// HMAC-SHA256 block size: keys up to this length are zero-padded to it, longer ones are
/// hashed first (RFC 2104), so keeping the padded form gives the same MACs as the raw key.
const BLOCK: usize = 64;
/// Shortest HMAC key accepted, in bytes.
pub const MIN_HMAC_KEY: usize = 16;

/// An HMAC-SHA256 key (QR token secret, fleet secret).
#[derive(Clone)]
pub struct HmacKey([u8; BLOCK]);

impl HmacKey {
    /// The key of hex text with at least [`MIN_HMAC_KEY`] bytes.
    pub fn from_hex(text: &str) -> Result<HmacKey, String> {
        let mut raw = hex::decode(text).map_err(|e| format!("not hex: {e}"))?;
        if raw.len() < MIN_HMAC_KEY {
            let n = raw.len();
            raw.zeroize();
            return Err(format!("{n} bytes, at least {MIN_HMAC_KEY} needed"));
        }
        let key = HmacKey::from_bytes(&raw);
        raw.zeroize();
        Ok(key)
    }

    pub fn from_bytes(raw: &[u8]) -> HmacKey {
        let mut block = [0u8; BLOCK];
        if raw.len() > BLOCK {
            block[..32].copy_from_slice(&Sha256::digest(raw));
        } else {
            block[..raw.len()].copy_from_slice(raw);
        }
        HmacKey(block)
    }

    /// A fresh MAC keyed with this key.
    pub fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a block-sized key")
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(***)")
    }
}

impl<'de> Deserialize<'de> for HmacKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut text = String::deserialize(d)?;
        let key = HmacKey::from_hex(&text).map_err(serde::de::Error::custom);
        text.zeroize();
        key
    }
}

/// The Ed25519 seed the device signs claim tokens with: exactly 32 bytes.
#[derive(Clone)]
pub struct SigningSeed([u8; 32]);

impl SigningSeed {
    pub fn from_hex(text: &str) -> Result<SigningSeed, String> {
        let mut raw = hex::decode(text).map_err(|e| format!("not hex: {e}"))?;
        let seed = <[u8; 32]>::try_from(raw.as_slice())
            .map(SigningSeed)
            .map_err(|_| format!("{} bytes, exactly 32 needed", raw.len()));
        raw.zeroize();
        seed
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for SigningSeed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SigningSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSeed(***)")
    }
}

impl<'de> Deserialize<'de> for SigningSeed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut text = String::deserialize(d)?;
        let seed = SigningSeed::from_hex(&text).map_err(serde::de::Error::custom);
        text.zeroize();
        seed
    }
}

/// A bearer token the device presents to a cloud API: never printed, wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn new(text: String) -> Result<ApiToken, String> {
        if text.len() < 8 || text.len() > 512 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is 8-512 printable ASCII characters".into());
        }
        Ok(ApiToken(text))
    }

    /// The token itself, for the `Authorization` header.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl Drop for ApiToken {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

impl<'de> Deserialize<'de> for ApiToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ApiToken::new(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_keys_give_the_same_macs_as_the_raw_key() {
        for len in [16usize, 34, 64, 65, 200] {
            let raw: Vec<u8> = (0..len as u8).collect();
            let mut a = HmacKey::from_bytes(&raw).mac();
            let mut b = Hmac::<Sha256>::new_from_slice(&raw).unwrap();
            a.update(b"message");
            b.update(b"message");
            assert_eq!(
                a.finalize().into_bytes(),
                b.finalize().into_bytes(),
                "{len}"
            );
        }
    }

    #[test]
    fn debug_prints_no_secret() {
        let key = HmacKey::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let seed = SigningSeed::from_hex(&"ab".repeat(32)).unwrap();
        for text in [format!("{key:?}"), format!("{seed:?}")] {
            assert!(!text.contains("0011") && !text.contains("abab"), "{text}");
            assert!(text.contains("***"));
        }
    }

    #[test]
    fn bad_secrets_say_why() {
        assert!(HmacKey::from_hex("zz").unwrap_err().contains("not hex"));
        assert!(
            HmacKey::from_hex("0011")
                .unwrap_err()
                .contains("at least 16")
        );
        assert!(
            SigningSeed::from_hex("0011")
                .unwrap_err()
                .contains("exactly 32")
        );
    }
}

//! Shopper identity: raw ids are hashed with the fleet secret before anything stores them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex length of a hashed shopper id (128 bits).
pub const HASH_HEX_LEN: usize = 32;
/// Raw ids longer than this are refused rather than hashed.
pub const MAX_RAW_LEN: usize = 256;

/// Hashes raw shopper ids; raw ids never leave this type.
#[derive(Clone)]
pub struct ShopperHasher {
    key: Vec<u8>,
}

impl std::fmt::Debug for ShopperHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShopperHasher(..)")
    }
}

impl ShopperHasher {
    pub fn new(fleet_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            key: fleet_secret.into(),
        }
    }

    /// HMAC-SHA256 of the raw id under the fleet secret, first 16 bytes in hex. The same
    /// shopper hashes alike on every device of the fleet, so the cloud can tag segments.
    pub fn hash(&self, raw: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"caidan-shopper-v1|");
        mac.update(raw.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..HASH_HEX_LEN / 2])
    }
}

/// Whether a raw shopper id is acceptable: printable ASCII, not empty, bounded.
pub fn valid_raw_id(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= MAX_RAW_LEN && raw.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_keyed_stable_and_hides_the_raw_id() {
        let a = ShopperHasher::new(b"fleet-secret-one".to_vec());
        let b = ShopperHasher::new(b"fleet-secret-two".to_vec());
        let h = a.hash("13800138000");
        assert_eq!(h, a.hash("13800138000"));
        assert_ne!(h, b.hash("13800138000"));
        assert_eq!(h.len(), HASH_HEX_LEN);
        assert!(!h.contains("13800138000"));
    }
}

//! Shopper identity: raw ids are hashed with the fleet secret before anything stores them.

use caidan_sync::contract::ShopperHash;
use hmac::Mac;

use crate::secrets::HmacKey;

/// Hex length of a hashed shopper id (128 bits).
pub const HASH_HEX_LEN: usize = 32;
/// Raw ids longer than this are refused rather than hashed.
pub const MAX_RAW_LEN: usize = 256;

/// Hashes raw shopper ids; raw ids never leave this type.
#[derive(Clone)]
pub struct ShopperHasher {
    key: HmacKey,
}

impl std::fmt::Debug for ShopperHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShopperHasher(..)")
    }
}

impl ShopperHasher {
    pub fn new(fleet_secret: HmacKey) -> Self {
        Self { key: fleet_secret }
    }

    /// HMAC-SHA256 of the raw id under the fleet secret, first 16 bytes in hex. The same
    /// shopper hashes alike on every device of the fleet, so the cloud can tag segments.
    pub fn hash(&self, raw: &str) -> ShopperHash {
        let mut mac = self.key.mac();
        mac.update(b"caidan-shopper-v1|");
        mac.update(raw.as_bytes());
        ShopperHash::new(hex::encode(
            &mac.finalize().into_bytes()[..HASH_HEX_LEN / 2],
        ))
        .expect("16 bytes of lowercase hex are a shopper hash")
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
        let a = ShopperHasher::new(HmacKey::from_bytes(b"fleet-secret-one"));
        let b = ShopperHasher::new(HmacKey::from_bytes(b"fleet-secret-two"));
        let h = a.hash("13800138000");
        assert_eq!(h, a.hash("13800138000"));
        assert_ne!(h, b.hash("13800138000"));
        assert_eq!(h.len(), HASH_HEX_LEN);
        assert!(!h.contains("13800138000"));
    }
}

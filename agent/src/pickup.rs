//! Pickup codes: the device keeps only their keyed hash, and issues its own for egg holds.

use caidan_sync::contract::{ClaimCode, PickupCode};
use hmac::Mac;
use rand::Rng;
use subtle::ConstantTimeEq;

use crate::secrets::HmacKey;

/// Digits of the pickup codes the device issues: typed on a keypad, 10^8 of them, so with
/// the wrong-code lockout guessing one is not practical.
pub const ISSUED_DIGITS: usize = 8;

/// The keyed hash of a pickup code, as stored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CodeHash(pub [u8; 32]);

impl CodeHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<CodeHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(CodeHash(out))
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &CodeHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeHash(..)")
    }
}

/// Hashes pickup codes with a key of the device (derived from the fleet secret), so a copy
/// of the store does not give the codes away.
#[derive(Clone)]
pub struct PickupHasher {
    key: HmacKey,
}

impl std::fmt::Debug for PickupHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PickupHasher(..)")
    }
}

impl PickupHasher {
    pub fn new(fleet_secret: HmacKey) -> Self {
        PickupHasher { key: fleet_secret }
    }

    /// The pickup code of an egg's hold, derived from its claim code: shown again on a
    /// rescan without the device keeping the code itself.
    pub fn egg_code(&self, claim: &ClaimCode) -> PickupCode {
        let mut mac = self.key.mac();
        mac.update(b"caidan-egg-pickup-v1|");
        mac.update(claim.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let n = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) % 100_000_000;
        PickupCode::typed(&format!("{n:08}")).expect("eight digits are a pickup code")
    }

    pub fn hash(&self, code: &PickupCode) -> CodeHash {
        let mut mac = self.key.mac();
        mac.update(b"caidan-pickup-v1|");
        mac.update(code.reveal().as_bytes());
        CodeHash(mac.finalize().into_bytes().into())
    }
}

/// A fresh pickup code of [`ISSUED_DIGITS`] digits.
pub fn issue_code(rng: &mut impl Rng) -> PickupCode {
    let digits: String = (0..ISSUED_DIGITS)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    PickupCode::typed(&digits).expect("eight digits are a pickup code")
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn codes_hash_by_key_and_compare() {
        let a = PickupHasher::new(HmacKey::from_bytes(b"fleet-secret-one"));
        let b = PickupHasher::new(HmacKey::from_bytes(b"fleet-secret-two"));
        let code = PickupCode::typed("4821-9930").unwrap();
        assert!(
            a.hash(&code)
                .matches(&a.hash(&PickupCode::typed("48219930").unwrap()))
        );
        assert!(!a.hash(&code).matches(&b.hash(&code)));
        let h = a.hash(&code);
        assert_eq!(CodeHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(format!("{:?}", a.hash(&code)), "CodeHash(..)");
        let claim = ClaimCode::new("7K3M9QXZ").unwrap();
        assert_eq!(a.egg_code(&claim), a.egg_code(&claim));
        assert_eq!(a.egg_code(&claim).reveal().len(), ISSUED_DIGITS);
        assert_ne!(a.egg_code(&claim), b.egg_code(&claim));
    }

    #[test]
    fn issued_codes_are_eight_digits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let c = issue_code(&mut rng);
            assert_eq!(c.reveal().len(), ISSUED_DIGITS);
            assert!(c.reveal().bytes().all(|b| b.is_ascii_digit()));
        }
    }
}

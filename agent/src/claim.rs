//! Claims as the shopper and the POS see them: a short human code and a signed token.
//!
//! The token is an Ed25519 signature by the device over the claim's essentials, so a POS or
//! the cloud holding the device's public key can verify a claim offline.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use caidan_sync::contract::ClaimCode;
use caidan_sync::contract::ids::CLAIM_CODE_ALPHABET as CODE_ALPHABET;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::Rng;
use serde::Serialize;

use crate::secrets::SigningSeed;

pub const CODE_LEN: usize = 8;

/// A fresh random claim code (Crockford base32 without I, L, O, U: easy to read out and type
/// on a keypad).
pub fn new_code(rng: &mut impl Rng) -> ClaimCode {
    let code: String = (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    ClaimCode::new(code).expect("drawn from the claim code alphabet")
}

/// Normalises what staff typed: upper case, no spaces or dashes, I/L→1, O→0.
pub fn normalise_code(input: &str) -> Option<ClaimCode> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        })
        .collect();
    ClaimCode::new(code).ok()
}

/// What the device signs for each claim.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClaimEssentials<'a> {
    pub device: &'a str,
    pub code: &'a str,
    pub offer: &'a str,
    pub expires_ms: i64,
}

impl ClaimEssentials<'_> {
    fn message(&self) -> String {
        format!(
            "caidan-claim-v1|{}|{}|{}|{}",
            self.device, self.code, self.offer, self.expires_ms
        )
    }
}

/// Signs claim tokens with the device's key.
#[derive(Clone)]
pub struct ClaimSigner {
    key: SigningKey,
}

impl std::fmt::Debug for ClaimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClaimSigner({})", self.public_key_hex())
    }
}

impl ClaimSigner {
    pub fn from_seed(seed: &SigningSeed) -> Self {
        Self {
            key: SigningKey::from_bytes(seed.bytes()),
        }
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// `{base64url(message)}.{base64url(signature)}`.
    pub fn sign(&self, claim: &ClaimEssentials<'_>) -> String {
        let msg = claim.message();
        let sig = self.key.sign(msg.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(msg),
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        )
    }
}

/// Verifies a claim token against a device public key, as a POS would; returns the message.
pub fn verify_token(public_key: &[u8; 32], token: &str) -> Option<String> {
    let key = VerifyingKey::from_bytes(public_key).ok()?;
    let (msg, sig) = token.split_once('.')?;
    let msg = URL_SAFE_NO_PAD.decode(msg).ok()?;
    let sig: [u8; 64] = URL_SAFE_NO_PAD.decode(sig).ok()?.try_into().ok()?;
    key.verify(&msg, &Signature::from_bytes(&sig)).ok()?;
    String::from_utf8(msg).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn codes_are_readable_and_normalise() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let code = new_code(&mut rng);
        assert_eq!(normalise_code(&code.to_lowercase()), Some(code.clone()));
        assert_eq!(
            normalise_code("ABCD-EFGH").map(ClaimCode::into_string),
            Some("ABCDEFGH".into())
        );
        assert_eq!(
            normalise_code("0O1I-LUUU"),
            None,
            "U is not in the alphabet"
        );
        assert_eq!(normalise_code("short"), None);
    }

    #[test]
    fn tokens_verify_offline_and_detect_tampering() {
        let seed = |b: u8| SigningSeed::from_hex(&hex::encode([b; 32])).unwrap();
        let signer = ClaimSigner::from_seed(&seed(7));
        let claim = ClaimEssentials {
            device: "d1",
            code: "ABCDEFGH",
            offer: "o1",
            expires_ms: 5,
        };
        let token = signer.sign(&claim);
        let pk: [u8; 32] = hex::decode(signer.public_key_hex())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            verify_token(&pk, &token).unwrap(),
            "caidan-claim-v1|d1|ABCDEFGH|o1|5"
        );
        let forged = ClaimSigner::from_seed(&seed(8)).sign(&claim);
        assert!(verify_token(&pk, &forged).is_none());
    }
}

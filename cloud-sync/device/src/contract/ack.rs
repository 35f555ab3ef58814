//! The data bank's acknowledgement, published on `.../d/{device}/ack`: "everything of
//! `epoch` up to `seq` is stored". It is signed by the data bank (Ed25519 over fleet,
//! device, epoch and seq), so nobody else can make a device trim its outbox: a device acts
//! only on an acknowledgement that verifies against the keys it trusts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{KeyError, KeyId, SecretKey, TrustedKeys};

/// Largest acknowledgement payload a device accepts.
pub const MAX_ACK_BYTES: usize = 1024;
/// Length of a base64url Ed25519 signature.
const SIG_CHARS: usize = 86;

/// A signed acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The device's store epoch this acknowledgement is for.
    pub epoch: Uuid,
    /// Highest contiguous sequence number stored for that device and epoch.
    pub seq: u64,
    /// The data bank key that signed it (first 8 bytes of the SHA-256 of its public key).
    pub key: KeyId,
    /// Ed25519 signature, base64url, over `caidan-ack-v1|{fleet}|{device}|{epoch}|{seq}`.
    #[schemars(length(min = 86, max = 86))]
    pub sig: String,
}

/// Why an acknowledgement was refused. A refused acknowledgement changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("acknowledgement of {0} bytes is over the {MAX_ACK_BYTES} byte limit")]
    Oversized(usize),
    #[error("garbled acknowledgement: {0}")]
    Garbled(String),
    #[error("acknowledgement not signed by a trusted data bank key: {0}")]
    Unverified(#[from] KeyError),
}

impl AckError {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AckError::Oversized(_) => "oversized",
            AckError::Garbled(_) => "garbled",
            AckError::Unverified(KeyError::UntrustedKey(_)) => "untrusted_key",
            AckError::Unverified(_) => "bad_signature",
        }
    }
}

/// The bytes an acknowledgement's signature covers.
pub fn ack_message(fleet: &str, device: &str, epoch: &Uuid, seq: u64) -> Vec<u8> {
    format!("caidan-ack-v1|{fleet}|{device}|{epoch}|{seq}").into_bytes()
}

impl Ack {
    /// The data bank's acknowledgement for `fleet`/`device`, signed with `key`.
    pub fn signed(fleet: &str, device: &str, epoch: Uuid, seq: u64, key: &SecretKey) -> Ack {
        Ack {
            epoch,
            seq,
            key: key.public().id(),
            sig: key.sign(&ack_message(fleet, device, &epoch, seq)),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an ack always serialises")
    }

    /// Parses an acknowledgement received for `fleet`/`device` and checks its signature.
    pub fn parse_verified(
        payload: &[u8],
        fleet: &str,
        device: &str,
        trusted: &TrustedKeys,
    ) -> Result<Ack, AckError> {
        if payload.len() > MAX_ACK_BYTES {
            return Err(AckError::Oversized(payload.len()));
        }
        let ack: Ack = serde_json::from_slice(payload)
            .map_err(|e| AckError::Garbled(super::bounded_reason(&e)))?;
        if ack.sig.len() != SIG_CHARS {
            return Err(AckError::Unverified(KeyError::GarbledSignature));
        }
        trusted.verify(
            &ack_message(fleet, device, &ack.epoch, ack.seq),
            &ack.key,
            &ack.sig,
        )?;
        Ok(ack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: Uuid = Uuid::from_u128(0x0195a0c4_0000_7000_8000_000000000001);

    #[test]
    fn signed_acks_verify_for_their_device_only() {
        let bank = SecretKey::generate();
        let trusted = TrustedKeys::new(vec![bank.public()]);
        let ack = Ack::signed("demo", "d1", EPOCH, 42, &bank);
        let wire = ack.to_json();
        assert_eq!(
            Ack::parse_verified(&wire, "demo", "d1", &trusted).unwrap(),
            ack
        );
        // Replayed to another device, or another fleet: the signature no longer matches.
        for (fleet, device) in [("demo", "d2"), ("other", "d1")] {
            let err = Ack::parse_verified(&wire, fleet, device, &trusted).unwrap_err();
            assert_eq!(err.reason(), "bad_signature", "{fleet}/{device}");
        }
    }

    #[test]
    fn forged_and_garbled_acks_are_refused() {
        let bank = SecretKey::generate();
        let trusted = TrustedKeys::new(vec![bank.public()]);
        let reason = |payload: &[u8]| {
            Ack::parse_verified(payload, "demo", "d1", &trusted)
                .unwrap_err()
                .reason()
        };
        // Unsigned, as a forger would send it.
        let unsigned = format!(r#"{{"epoch":"{EPOCH}","seq":999999999}}"#);
        assert_eq!(reason(unsigned.as_bytes()), "garbled");
        // Signed by a key the device does not trust.
        let other = SecretKey::generate();
        assert_eq!(
            reason(&Ack::signed("demo", "d1", EPOCH, 7, &other).to_json()),
            "untrusted_key"
        );
        // A genuine signature with the seq raised.
        let mut tampered = Ack::signed("demo", "d1", EPOCH, 7, &bank);
        tampered.seq = 999_999_999;
        assert_eq!(reason(&tampered.to_json()), "bad_signature");
        assert_eq!(reason(b"garbage"), "garbled");
        assert_eq!(reason(&vec![b' '; 2 << 20]), "oversized");
        // A wire form with the fields the contract names, nothing more.
        let text = String::from_utf8(Ack::signed("demo", "d1", EPOCH, 7, &bank).to_json()).unwrap();
        assert!(
            text.starts_with(&format!(r#"{{"epoch":"{EPOCH}","seq":7,"key":""#)),
            "{text}"
        );
    }
}

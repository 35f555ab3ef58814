//! The data bank's acknowledgement, published on `.../d/{device}/ack`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest acknowledgement payload a device accepts.
pub const MAX_ACK_BYTES: usize = 1024;

/// "Everything of `epoch` up to `seq` is stored": the device may trim its outbox to there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The device's store epoch this acknowledgement is for.
    pub epoch: Uuid,
    /// Highest contiguous sequence number stored for that device and epoch.
    pub seq: u64,
}

/// Why an acknowledgement payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("acknowledgement of {0} bytes is over the {MAX_ACK_BYTES} byte limit")]
    Oversized(usize),
    #[error("garbled acknowledgement: {0}")]
    Garbled(String),
}

impl Ack {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an ack always serialises")
    }

    pub fn parse(payload: &[u8]) -> Result<Ack, AckError> {
        if payload.len() > MAX_ACK_BYTES {
            return Err(AckError::Oversized(payload.len()));
        }
        serde_json::from_slice(payload).map_err(|e| AckError::Garbled(super::bounded_reason(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let ack = Ack {
            epoch: "0195a0c4-0000-7000-8000-000000000001".parse().unwrap(),
            seq: 42,
        };
        let text = String::from_utf8(ack.to_json()).unwrap();
        assert_eq!(
            text,
            r#"{"epoch":"0195a0c4-0000-7000-8000-000000000001","seq":42}"#
        );
        assert_eq!(Ack::parse(text.as_bytes()).unwrap(), ack);
        assert!(Ack::parse(b"garbage").is_err());
        assert!(
            Ack::parse(br#"{"epoch":"e1","seq":1}"#).is_err(),
            "epoch is a UUID"
        );
        assert!(matches!(
            Ack::parse(&vec![b' '; 2 << 20]),
            Err(AckError::Oversized(_))
        ));
    }
}

//! Payloads the uplink sends and receives besides event batches: the retained state message
//! and the data bank's acknowledgement.

use serde::{Deserialize, Serialize};

/// The retained `.../d/{device}/state` payload; the last will carries `online: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMessage {
    pub online: bool,
    pub profile: String,
    pub config_version: Option<u64>,
    pub outbox_depth: Option<i64>,
    pub last_error: Option<String>,
    /// The device store against its storage budget, when the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageReport>,
}

/// How full a device's store is: `fill` is `normal`, `warning` or `full` (new eggs refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageReport {
    pub used_bytes: u64,
    pub budget_bytes: u64,
    pub fill: String,
}

impl StateMessage {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state message serializes")
    }
}

/// `{"epoch": "...", "seq": N}` on `.../d/{device}/ack`.
#[derive(Debug, Deserialize)]
pub(crate) struct AckMessage {
    pub epoch: String,
    pub seq: i64,
}

impl AckMessage {
    pub fn parse(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_message_fields() {
        let s = StateMessage {
            online: true,
            profile: "kiosk".into(),
            config_version: Some(7),
            outbox_depth: Some(12),
            last_error: None,
            storage: None,
        };
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            r#"{"online":true,"profile":"kiosk","config_version":7,"outbox_depth":12,"last_error":null}"#
        );
        let s = StateMessage {
            storage: Some(StorageReport {
                used_bytes: 900,
                budget_bytes: 1000,
                fill: "warning".into(),
            }),
            ..s
        };
        assert!(
            String::from_utf8(s.to_json())
                .unwrap()
                .ends_with(r#""storage":{"used_bytes":900,"budget_bytes":1000,"fill":"warning"}}"#)
        );
    }

    #[test]
    fn ack_parses_or_errors() {
        let a = AckMessage::parse(br#"{"epoch":"e1","seq":42}"#).unwrap();
        assert_eq!((a.epoch.as_str(), a.seq), ("e1", 42));
        assert!(AckMessage::parse(b"garbage").is_err());
        assert!(AckMessage::parse(br#"{"epoch":"e1"}"#).is_err());
    }
}

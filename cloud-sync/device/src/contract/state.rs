//! The retained device state on `.../d/{device}/state`; the last will carries
//! `online: false`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ids::{Ident, Name};

/// Largest state payload the data bank accepts.
pub const MAX_STATE_BYTES: usize = 64 * 1024;
/// Longest `last_error` a device reports.
pub const MAX_ERROR_CHARS: usize = 256;

/// A place on Earth, in degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude, -90 to 90.
    #[schemars(range(min = -90, max = 90))]
    pub lat: f64,
    /// Longitude, -180 to 180.
    #[schemars(range(min = -180, max = 180))]
    pub lon: f64,
}

/// Mean Earth radius, in metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

impl Location {
    /// A location, when both coordinates are in range.
    pub fn new(lat: f64, lon: f64) -> Option<Location> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
            .then_some(Location { lat, lon })
    }

    pub fn valid(&self) -> bool {
        Location::new(self.lat, self.lon).is_some()
    }

    /// Great-circle distance in metres (haversine).
    pub fn distance_m(&self, to: &Location) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), to.lat.to_radians());
        let dp = p2 - p1;
        let dl = (to.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }
}

/// What a device says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateMessage {
    /// Whether the agent is connected (the last will says `false`).
    pub online: bool,
    /// The firmware profile the device runs.
    pub profile: Name,
    /// The config version running.
    pub config_version: Option<u64>,
    /// Events in the outbox waiting for the data bank.
    pub outbox_depth: Option<i64>,
    /// The last thing that went wrong, in a sentence.
    pub last_error: Option<String>,
    /// The device store against its storage budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageReport>,
    /// Units on hand per SKU, when the device keeps stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<BTreeMap<Ident, u32>>,
    /// Where the touchpoint stands, when its config says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The groups the device is in (config layers between fleet and device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub groups: Vec<Name>,
    /// The touchpoint's scene.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<Name>,
    /// Config versions applied per layer, and the last document refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<super::ConfigReport>,
    /// Device time when this state was published (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<jiff::Timestamp>,
    /// How the device's wall clock has behaved since the agent started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockStatus>,
}

/// What the agent knows about its wall clock. Events carry `boot` and `data.uptime_ms`, so
/// the data bank can place the events of one run on its own time line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockStatus {
    /// This run of the agent: new at every start.
    pub boot: uuid::Uuid,
    /// The device's monotonic clock when this was taken, in ms since the agent started.
    pub uptime_ms: u64,
    /// The wall clock minus the time the agent goes by, in ms; 0 while they agree.
    pub offset_ms: i64,
    /// Steps of the wall clock seen since the start (the start counts when the wall clock
    /// read earlier than the store's last recorded time).
    pub jumps: u32,
    /// The time the agent goes by is only a lower bound: the wall clock was behind the
    /// store's last recorded time at the start and has not moved past it since.
    pub lower_bound: bool,
}

/// How full a device's store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    Normal,
    /// At or past the warning level: everything still works; operators are told.
    Warning,
    /// At or past the budget: new eggs are refused.
    Full,
}

impl Fill {
    /// Label for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Fill::Normal => "normal",
            Fill::Warning => "warning",
            Fill::Full => "full",
        }
    }
}

/// The store's size against its budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageReport {
    pub used_bytes: u64,
    pub budget_bytes: u64,
    pub fill: Fill,
}

/// Why a state payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("state of {0} bytes is over the {MAX_STATE_BYTES} byte limit")]
    Oversized(usize),
    #[error("garbled state: {0}")]
    Garbled(String),
    #[error("last_error is longer than {MAX_ERROR_CHARS} characters")]
    LongError,
    #[error("location is out of range (lat -90..90, lon -180..180)")]
    Location,
}

impl StateMessage {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a state message always serialises")
    }

    pub fn parse(payload: &[u8]) -> Result<StateMessage, StateError> {
        if payload.len() > MAX_STATE_BYTES {
            return Err(StateError::Oversized(payload.len()));
        }
        let state: StateMessage = serde_json::from_slice(payload)
            .map_err(|e| StateError::Garbled(super::bounded_reason(&e)))?;
        if state
            .last_error
            .as_ref()
            .is_some_and(|e| e.chars().count() > MAX_ERROR_CHARS)
        {
            return Err(StateError::LongError);
        }
        if state.location.is_some_and(|l| !l.valid()) {
            return Err(StateError::Location);
        }
        Ok(state)
    }

    /// Cuts `error` to what a state message may carry.
    pub fn error_text(error: &str) -> String {
        error.chars().take(MAX_ERROR_CHARS).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_message_fields() {
        let s = StateMessage {
            online: true,
            profile: Name::new("kiosk").unwrap(),
            config_version: Some(7),
            outbox_depth: Some(12),
            last_error: None,
            storage: None,
            stock: None,
            location: None,
            groups: vec![],
            scene: None,
            config: None,
            at: None,
            clock: None,
        };
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            r#"{"online":true,"profile":"kiosk","config_version":7,"outbox_depth":12,"last_error":null}"#
        );
        let s = StateMessage {
            storage: Some(StorageReport {
                used_bytes: 900,
                budget_bytes: 1000,
                fill: Fill::Warning,
            }),
            ..s
        };
        let text = String::from_utf8(s.to_json()).unwrap();
        assert!(
            text.ends_with(r#""storage":{"used_bytes":900,"budget_bytes":1000,"fill":"warning"}}"#),
            "{text}"
        );
        assert_eq!(StateMessage::parse(text.as_bytes()).unwrap(), s);
    }

    #[test]
    fn refuses_oversized_and_unknown() {
        assert!(StateMessage::parse(br#"{"online":true}"#).is_err());
        let long = format!(
            r#"{{"online":true,"profile":"k","config_version":null,"outbox_depth":null,"last_error":"{}"}}"#,
            "x".repeat(300)
        );
        assert_eq!(
            StateMessage::parse(long.as_bytes()),
            Err(StateError::LongError)
        );
        assert_eq!(
            StateMessage::error_text(&"é".repeat(300)).chars().count(),
            MAX_ERROR_CHARS
        );
        let far = r#"{"online":true,"profile":"k","config_version":null,"outbox_depth":null,"last_error":null,"location":{"lat":91,"lon":0}}"#;
        assert_eq!(
            StateMessage::parse(far.as_bytes()),
            Err(StateError::Location)
        );
    }

    #[test]
    fn distances() {
        // The Bund to People's Square, Shanghai: about 1.6 km.
        let bund = Location::new(31.2400, 121.4900).unwrap();
        let square = Location::new(31.2304, 121.4737).unwrap();
        let d = bund.distance_m(&square);
        assert!((1_800.0..2_000.0).contains(&d), "{d}");
        assert_eq!(bund.distance_m(&bund), 0.0);
        assert!(Location::new(0.0, 181.0).is_none());
        assert!(Location::new(f64::NAN, 0.0).is_none());
    }
}

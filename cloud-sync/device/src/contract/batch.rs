//! Event batches as they arrive on `caidan/v1/{fleet}/d/{device}/events`: a JSON array of
//! records (`application/cloudevents-batch+json`), checked whole against the topic it came
//! on. One invalid record rejects the batch.

use serde_json::value::RawValue;

use super::event::{Event, EventError, source_of};

/// Default largest accepted batch payload: 1 MiB.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Batch validation limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }
}

/// One checked record of a batch, with its text exactly as received (for storage).
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub event: Event,
    pub raw: String,
}

/// Why a batch was rejected. Each variant names the device of the topic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("device {device}: batch of {size} bytes exceeds the {max} byte limit")]
    Oversized {
        device: String,
        size: usize,
        max: usize,
    },
    #[error("device {device}: garbled batch: {reason}")]
    Garbled { device: String, reason: String },
    #[error("device {device}: empty batch")]
    Empty { device: String },
    #[error("device {device}: event {index} claims source {source_attr}, not this device's")]
    ForeignSource {
        device: String,
        index: usize,
        source_attr: String,
    },
    #[error("device {device}: event {index} claims device {claimed}")]
    WrongDevice {
        device: String,
        index: usize,
        claimed: String,
    },
    #[error("device {device}: event {index} claims fleet {claimed}, topic fleet is {fleet}")]
    WrongFleet {
        device: String,
        fleet: String,
        index: usize,
        claimed: String,
    },
    #[error("device {device}: event {index} is invalid: {reason}")]
    InvalidEvent {
        device: String,
        index: usize,
        reason: EventError,
    },
}

impl BatchError {
    /// Short label for metrics (`rejected{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            BatchError::Oversized { .. } => "oversized",
            BatchError::Garbled { .. } => "garbled",
            BatchError::Empty { .. } => "empty",
            BatchError::ForeignSource { .. } => "foreign_source",
            BatchError::WrongDevice { .. } => "wrong_device",
            BatchError::WrongFleet { .. } => "wrong_fleet",
            BatchError::InvalidEvent { .. } => "invalid_event",
        }
    }
}

/// Checks a batch payload that arrived on the events topic of `fleet`/`device`.
pub fn parse_batch(
    fleet: &str,
    device: &str,
    payload: &[u8],
    limits: Limits,
) -> Result<Vec<Received>, BatchError> {
    let shown_device = super::ids::shown(device);
    if payload.len() > limits.max_batch_bytes {
        return Err(BatchError::Oversized {
            device: shown_device,
            size: payload.len(),
            max: limits.max_batch_bytes,
        });
    }
    let garbled = |reason: String| BatchError::Garbled {
        device: shown_device.clone(),
        reason,
    };
    let text = std::str::from_utf8(payload).map_err(|e| garbled(e.to_string()))?;
    let items: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| garbled(super::bounded_reason(&e)))?;
    if items.is_empty() {
        return Err(BatchError::Empty {
            device: shown_device,
        });
    }
    let expected_source = source_of(fleet, device);
    items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let json = raw.get();
            if !json.starts_with('{') {
                return Err(garbled(format!("event {index} is not a JSON object")));
            }
            let invalid = |reason| BatchError::InvalidEvent {
                device: shown_device.clone(),
                index,
                reason,
            };
            let (event, source) = Event::parse_with_source(json).map_err(invalid)?;
            // Identity first: a record claiming another device is rejected for that reason.
            if source != expected_source {
                return Err(BatchError::ForeignSource {
                    device: shown_device.clone(),
                    index,
                    source_attr: super::ids::shown(&source),
                });
            }
            if event.device.as_str() != device {
                return Err(BatchError::WrongDevice {
                    device: shown_device.clone(),
                    index,
                    claimed: event.device.to_string(),
                });
            }
            if event.fleet.as_str() != fleet {
                return Err(BatchError::WrongFleet {
                    device: shown_device.clone(),
                    fleet: super::ids::shown(fleet),
                    index,
                    claimed: event.fleet.to_string(),
                });
            }
            Ok(Received {
                event,
                raw: json.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

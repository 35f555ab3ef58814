//! Event batches and acknowledgements as they cross the wire (docs/events.md).
//!
//! [`parse_batch`] validates a payload received on `caidan/v1/{fleet}/d/{device}/events`
//! against the topic it arrived on; a batch with any invalid event is rejected whole.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

/// Default largest accepted batch payload: 1 MiB.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The data bank's acknowledgement, published on `.../d/{device}/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The device's store epoch this acknowledgement is for.
    pub epoch: String,
    /// Highest contiguous sequence number stored for that device and epoch.
    pub seq: u64,
}

/// Why a batch was rejected. Each variant names the device of the topic.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
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
    #[error("device {device}: event {index} claims source {source_attr:?}, not this device's")]
    ForeignSource {
        device: String,
        index: usize,
        source_attr: String,
    },
    #[error("device {device}: event {index} claims device {claimed:?}")]
    WrongDevice {
        device: String,
        index: usize,
        claimed: String,
    },
    #[error("device {device}: event {index} claims fleet {claimed:?}, topic fleet is {fleet:?}")]
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
        reason: String,
    },
}

impl WireError {
    /// Short label for metrics (`rejected{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Oversized { .. } => "oversized",
            WireError::Garbled { .. } => "garbled",
            WireError::Empty { .. } => "empty",
            WireError::ForeignSource { .. } => "foreign_source",
            WireError::WrongDevice { .. } => "wrong_device",
            WireError::WrongFleet { .. } => "wrong_fleet",
            WireError::InvalidEvent { .. } => "invalid_event",
        }
    }
}

/// One validated CloudEvent of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub fleet: String,
    pub device: String,
    pub epoch: String,
    pub seq: u64,
    pub ty: String,
    /// Device wall-clock time as Unix milliseconds.
    pub time_ms: i64,
    pub subject: Option<String>,
    pub brand: Option<String>,
    /// The fields of `data` the data bank keeps in columns of their own.
    pub facts: Facts,
    /// The event exactly as received, for storage.
    pub raw: String,
}

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

#[derive(Deserialize)]
struct Envelope {
    specversion: Option<String>,
    id: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
    time: Option<String>,
    subject: Option<String>,
    fleet: Option<String>,
    device: Option<String>,
    epoch: Option<String>,
    seq: Option<serde_json::Value>,
    brand: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

/// An event's `data` as read: the facts of an object, or a note that it was something else.
enum Data {
    Object(Facts),
    NotAnObject,
}

/// The fields of an event's `data` object that the funnel queries, read straight from the
/// JSON without building a tree. A field of the wrong type is left out, as if absent; `data`
/// itself must be an object (or `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub brand: Option<String>,
    pub offer: Option<String>,
    pub scene: Option<String>,
    pub shopper: Option<String>,
    pub count: Option<i64>,
    /// Brands an impression showed.
    pub brands: Option<Vec<String>>,
}

/// A value kept only when it has the expected type.
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient<T> {
    Typed(T),
    Other(serde::de::IgnoredAny),
}

impl<T> Lenient<T> {
    fn typed(self) -> Option<T> {
        match self {
            Lenient::Typed(t) => Some(t),
            Lenient::Other(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Data;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
                let mut facts = Facts::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let text = |v: Lenient<String>| v.typed();
                    match key.as_ref() {
                        "brand" => facts.brand = text(map.next_value()?),
                        "offer" => facts.offer = text(map.next_value()?),
                        "scene" => facts.scene = text(map.next_value()?),
                        "shopper" => facts.shopper = text(map.next_value()?),
                        "count" => facts.count = map.next_value::<Lenient<i64>>()?.typed(),
                        "brands" => {
                            facts.brands = map.next_value::<Lenient<Vec<String>>>()?.typed()
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Data::Object(facts))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Data::NotAnObject)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Data, E> {
                Ok(Data::NotAnObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Data, E> {
                Ok(Data::NotAnObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Data, E> {
                Ok(Data::NotAnObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Data, E> {
                Ok(Data::NotAnObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<Data, E> {
                Ok(Data::NotAnObject)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Validates a batch payload that arrived on the events topic of `fleet`/`device`.
pub fn parse_batch(
    fleet: &str,
    device: &str,
    payload: &[u8],
    limits: Limits,
) -> Result<Vec<Event>, WireError> {
    if payload.len() > limits.max_batch_bytes {
        return Err(WireError::Oversized {
            device: device.to_owned(),
            size: payload.len(),
            max: limits.max_batch_bytes,
        });
    }
    let garbled = |reason: String| WireError::Garbled {
        device: device.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(payload).map_err(|e| garbled(e.to_string()))?;
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| garbled(e.to_string()))?;
    if items.is_empty() {
        return Err(WireError::Empty {
            device: device.to_owned(),
        });
    }
    let expected_source = format!("/caidan/{fleet}/d/{device}");
    items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| parse_event(fleet, device, &expected_source, index, raw))
        .collect()
}

fn parse_event(
    fleet: &str,
    device: &str,
    expected_source: &str,
    index: usize,
    raw: &RawValue,
) -> Result<Event, WireError> {
    let invalid = |reason: &str| WireError::InvalidEvent {
        device: device.to_owned(),
        index,
        reason: reason.to_owned(),
    };
    let env: Envelope = serde_json::from_str(raw.get()).map_err(|e| WireError::Garbled {
        device: device.to_owned(),
        reason: format!("event {index}: {e}"),
    })?;
    // Identity checks first: a batch claiming another device is rejected for that reason.
    let source = env.source.ok_or_else(|| invalid("missing source"))?;
    if source != expected_source {
        return Err(WireError::ForeignSource {
            device: device.to_owned(),
            index,
            source_attr: source,
        });
    }
    match env.device {
        Some(d) if d == device => {}
        Some(claimed) => {
            return Err(WireError::WrongDevice {
                device: device.to_owned(),
                index,
                claimed,
            });
        }
        None => return Err(invalid("missing device")),
    }
    match env.fleet {
        Some(f) if f == fleet => {}
        Some(claimed) => {
            return Err(WireError::WrongFleet {
                device: device.to_owned(),
                fleet: fleet.to_owned(),
                index,
                claimed,
            });
        }
        None => return Err(invalid("missing fleet")),
    }
    if env.specversion.as_deref() != Some("1.0") {
        return Err(invalid("specversion must be \"1.0\""));
    }
    let id = env.id.ok_or_else(|| invalid("missing id"))?;
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(invalid("id is not a UUID"));
    }
    let ty = env
        .ty
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("missing type"))?;
    let time = env.time.ok_or_else(|| invalid("missing time"))?;
    let time_ms = time
        .parse::<jiff::Timestamp>()
        .map_err(|_| invalid("time is not RFC 3339"))?
        .as_millisecond();
    let epoch = env
        .epoch
        .filter(|e| !e.is_empty())
        .ok_or_else(|| invalid("missing epoch"))?;
    let seq = env
        .seq
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .filter(|s| *s >= 1)
        .ok_or_else(|| invalid("seq must be a positive integer"))?;
    let facts = match env.data {
        None => Facts::default(),
        Some(Data::Object(facts)) => facts,
        Some(Data::NotAnObject) => return Err(invalid("data must be an object")),
    };
    Ok(Event {
        id,
        fleet: fleet.to_owned(),
        device: device.to_owned(),
        epoch,
        seq,
        ty,
        time_ms,
        subject: env.subject,
        brand: env.brand,
        facts,
        raw: raw.get().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(fleet: &str, device: &str, seq: u64) -> serde_json::Value {
        json!({
            "specversion": "1.0",
            "id": uuid::Uuid::now_v7().to_string(),
            "source": format!("/caidan/{fleet}/d/{device}"),
            "type": "com.caidan.scan",
            "time": "2025-03-01T10:15:00.123Z",
            "datacontenttype": "application/json",
            "fleet": fleet,
            "device": device,
            "epoch": "0195a0c4-0000-7000-8000-000000000001",
            "seq": seq,
            "data": {"scene": "cinema", "uptime_ms": 5, "shopper": "ab", "brands": ["acme"]}
        })
    }

    fn bytes(v: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn accepts_a_valid_batch() {
        let batch = json!([event("demo", "d1", 1), event("demo", "d1", 2)]);
        let events = parse_batch("demo", "d1", &bytes(&batch), Limits::default()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].seq, 2);
        assert_eq!(events[0].time_ms, 1_740_824_100_123);
        assert_eq!(events[0].facts.shopper.as_deref(), Some("ab"));
        assert_eq!(events[0].facts.brands, Some(vec!["acme".to_owned()]));
        assert_eq!(events[0].facts.scene.as_deref(), Some("cinema"));
        assert!(events[0].raw.contains("com.caidan.scan"));
    }

    #[test]
    fn rejects_garbled_payloads() {
        for payload in [&b"not json"[..], b"{\"a\":1}", b"[1,2]", b"[{", b"\xff\xfe"] {
            let err = parse_batch("demo", "d1", payload, Limits::default()).unwrap_err();
            assert_eq!(err.reason(), "garbled", "{payload:?}: {err}");
        }
        let err = parse_batch("demo", "d1", b"[]", Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "empty");
    }

    #[test]
    fn rejects_oversized_before_parsing() {
        let batch = bytes(&json!([event("demo", "d1", 1)]));
        let limits = Limits {
            max_batch_bytes: batch.len() - 1,
        };
        let err = parse_batch("demo", "d1", &batch, limits).unwrap_err();
        assert!(matches!(err, WireError::Oversized { .. }), "{err}");
    }

    #[test]
    fn one_foreign_source_rejects_the_whole_batch() {
        let batch = json!([event("demo", "d1", 1), event("demo", "d2", 2)]);
        let err = parse_batch("demo", "d1", &bytes(&batch), Limits::default()).unwrap_err();
        match err {
            WireError::ForeignSource {
                device,
                index,
                source_attr,
            } => {
                assert_eq!(device, "d1");
                assert_eq!(index, 1);
                assert_eq!(source_attr, "/caidan/demo/d/d2");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn rejects_device_or_fleet_mismatch() {
        let mut e = event("demo", "d1", 1);
        e["device"] = json!("d2");
        let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "wrong_device");

        let mut e = event("demo", "d1", 1);
        e["fleet"] = json!("other");
        let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "wrong_fleet");

        // Published on another fleet's topic: the source no longer matches.
        let e = event("demo", "d1", 1);
        let err = parse_batch("other", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "foreign_source");
    }

    #[test]
    fn rejects_invalid_envelopes() {
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("specversion", json!("0.3")),
            ("id", json!("not-a-uuid")),
            ("seq", json!(0)),
            ("seq", json!(-3)),
            ("seq", json!("7")),
            ("seq", json!(1.5)),
            ("time", json!("yesterday")),
            ("epoch", json!("")),
            ("type", json!("")),
            ("data", json!([1])),
        ];
        for (field, value) in cases {
            let mut e = event("demo", "d1", 1);
            e[field] = value.clone();
            let err =
                parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
            assert_eq!(err.reason(), "invalid_event", "{field}={value}: {err}");
        }
        for field in ["id", "epoch", "seq", "type", "time", "specversion"] {
            let mut e = event("demo", "d1", 1);
            e.as_object_mut().unwrap().remove(field);
            let err =
                parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
            assert_eq!(err.reason(), "invalid_event", "missing {field}: {err}");
        }
    }

    #[test]
    fn ack_round_trips() {
        let ack = Ack {
            epoch: "e1".into(),
            seq: 42,
        };
        let text = serde_json::to_string(&ack).unwrap();
        assert_eq!(text, r#"{"epoch":"e1","seq":42}"#);
        assert_eq!(serde_json::from_str::<Ack>(&text).unwrap(), ack);
    }
}

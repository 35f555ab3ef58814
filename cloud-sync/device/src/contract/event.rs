//! The event record: a CloudEvents 1.0 envelope (JSON format) around typed [`EventData`].

use std::borrow::Cow;

use jiff::Timestamp;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::data::{DataError, EventData};
use super::ids::{Ident, Name};

/// CloudEvents version every record carries.
pub const SPEC_VERSION: &str = "1.0";
/// Content type of every record's `data`.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// Largest single record accepted, in bytes of JSON.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

/// The CloudEvents `type` of each fact the agent records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Impression,
    Scan,
    Claim,
    Redemption,
    Rejection,
    Order,
    Stock,
    Config,
}

/// The AIPL stage a fact counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Awareness,
    Interest,
    Purchase,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Awareness => "Awareness",
            Stage::Interest => "Interest",
            Stage::Purchase => "Purchase",
        }
    }
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [EventType; 8] = [
        EventType::Impression,
        EventType::Scan,
        EventType::Claim,
        EventType::Redemption,
        EventType::Rejection,
        EventType::Order,
        EventType::Stock,
        EventType::Config,
    ];

    /// The `type` attribute. The only place these names are written.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Impression => "com.caidan.impression",
            EventType::Scan => "com.caidan.scan",
            EventType::Claim => "com.caidan.claim",
            EventType::Redemption => "com.caidan.redemption",
            EventType::Rejection => "com.caidan.rejection",
            EventType::Order => "com.caidan.order",
            EventType::Stock => "com.caidan.stock",
            EventType::Config => "com.caidan.config",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The AIPL stage every fact of the type counts toward (Loyalty is derived from repeat
    /// purchases). Orders count as Purchase only once picked up: see
    /// [`EventData::stage`](super::EventData::stage).
    pub fn stage(self) -> Option<Stage> {
        match self {
            EventType::Impression => Some(Stage::Awareness),
            EventType::Scan | EventType::Claim => Some(Stage::Interest),
            EventType::Redemption => Some(Stage::Purchase),
            EventType::Rejection | EventType::Order | EventType::Stock | EventType::Config => None,
        }
    }

    /// The AIPL column of the contract document.
    pub fn stage_text(self) -> &'static str {
        match self {
            EventType::Order => "Purchase, when `state` is `picked_up`",
            other => other.stage().map_or("—", |s| s.as_str()),
        }
    }

    /// Whether the brand of this type's facts is the offer's brand (claims, redemptions),
    /// rather than every brand on screen (impressions, scans).
    pub fn is_about_one_brand(self) -> bool {
        !matches!(self, EventType::Impression | EventType::Scan)
    }

    /// Whether some facts of the type count in the funnel.
    pub fn in_funnel(self) -> bool {
        self.stage().is_some() || self == EventType::Order
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        EventType::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown event type {}", super::ids::shown(&s)))
        })
    }
}

/// One fact as a CloudEvents record. `source` is `/caidan/{fleet}/d/{device}`; `fleet`,
/// `device`, `epoch`, `seq`, `boot` and `brand` are extension attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// UUID v7: time-ordered, unique across the fleet.
    pub id: Uuid,
    /// Device wall-clock time, millisecond precision.
    pub time: Timestamp,
    pub fleet: Name,
    pub device: Name,
    /// The device store's epoch; new whenever the store is created.
    pub epoch: Uuid,
    /// 1, 2, 3 ... without gaps within one epoch.
    pub seq: u64,
    /// The run of the agent that wrote it (new at every start): with `data.uptime_ms`, the
    /// event's place on that run's monotonic clock, whatever the wall clock did.
    pub boot: Option<Uuid>,
    /// The offer, where the event concerns one offer.
    pub subject: Option<Ident>,
    /// The brand, where the event concerns one brand's offer.
    pub brand: Option<Ident>,
    pub data: EventData,
}

/// The CloudEvents `source` of a device.
pub fn source_of(fleet: &str, device: &str) -> String {
    format!("/caidan/{fleet}/d/{device}")
}

/// Why a record is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("record of {0} bytes is over the {MAX_EVENT_BYTES} byte limit")]
    Oversized(usize),
    #[error("{0}")]
    Envelope(String),
    #[error("specversion must be \"1.0\"")]
    SpecVersion,
    #[error("datacontenttype must be \"application/json\"")]
    ContentType,
    #[error("seq must be 1 or more")]
    Seq,
    #[error("time is not RFC 3339")]
    Time,
    #[error("source {0} does not match fleet and device")]
    Source(String),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// The envelope as read, before its data is typed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    specversion: Cow<'a, str>,
    id: Uuid,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(rename = "type")]
    ty: EventType,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow, default)]
    datacontenttype: Option<Cow<'a, str>>,
    fleet: Name,
    device: Name,
    epoch: Uuid,
    seq: u64,
    #[serde(default)]
    boot: Option<Uuid>,
    #[serde(default)]
    subject: Option<Ident>,
    #[serde(default)]
    brand: Option<Ident>,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl Event {
    /// The type, from the data.
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    pub fn source(&self) -> String {
        source_of(&self.fleet, &self.device)
    }

    /// The brand the fact is about: the envelope's, else the data's.
    pub fn brand(&self) -> Option<&Ident> {
        self.brand.as_ref().or_else(|| self.data.brand())
    }

    /// The offer the fact is about: the data's, else the subject.
    pub fn offer(&self) -> Option<&Ident> {
        self.data.offer().or(self.subject.as_ref())
    }

    /// The record as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }

    /// Parses and checks one record.
    pub fn parse(json: &str) -> Result<Event, EventError> {
        let (event, source) = Event::parse_with_source(json)?;
        if source != event.source() {
            return Err(EventError::Source(super::ids::shown(&source)));
        }
        Ok(event)
    }

    /// Parses one record, returning its `source` unchecked so that a batch can say whose
    /// topic the record does not belong to.
    pub(crate) fn parse_with_source(json: &str) -> Result<(Event, String), EventError> {
        if json.len() > MAX_EVENT_BYTES {
            return Err(EventError::Oversized(json.len()));
        }
        let env: Envelope<'_> = serde_json::from_str(json)
            .map_err(|e| EventError::Envelope(super::bounded_reason(&e)))?;
        if env.specversion != SPEC_VERSION {
            return Err(EventError::SpecVersion);
        }
        if env
            .datacontenttype
            .as_deref()
            .is_some_and(|t| t != DATA_CONTENT_TYPE)
        {
            return Err(EventError::ContentType);
        }
        if env.seq == 0 {
            return Err(EventError::Seq);
        }
        let time: Timestamp = env.time.parse().map_err(|_| EventError::Time)?;
        let data = EventData::parse(env.ty, env.data.get())?;
        let event = Event {
            id: env.id,
            time,
            fleet: env.fleet,
            device: env.device,
            epoch: env.epoch,
            seq: env.seq,
            boot: env.boot,
            subject: env.subject,
            brand: env.brand,
            data,
        };
        Ok((event, env.source.into_owned()))
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = 11
            + usize::from(self.boot.is_some())
            + usize::from(self.subject.is_some())
            + usize::from(self.brand.is_some());
        let mut e = s.serialize_struct("Event", fields)?;
        e.serialize_field("specversion", SPEC_VERSION)?;
        e.serialize_field("id", &self.id)?;
        e.serialize_field("source", &self.source())?;
        e.serialize_field("type", &self.event_type())?;
        let time = self.time.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        e.serialize_field("time", &time)?;
        e.serialize_field("datacontenttype", DATA_CONTENT_TYPE)?;
        e.serialize_field("fleet", &self.fleet)?;
        e.serialize_field("device", &self.device)?;
        e.serialize_field("epoch", &self.epoch)?;
        e.serialize_field("seq", &self.seq)?;
        if let Some(boot) = &self.boot {
            e.serialize_field("boot", boot)?;
        }
        if let Some(subject) = &self.subject {
            e.serialize_field("subject", subject)?;
        }
        if let Some(brand) = &self.brand {
            e.serialize_field("brand", brand)?;
        }
        e.serialize_field("data", &self.data)?;
        e.end()
    }
}

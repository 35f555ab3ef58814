//! Outbox events as CloudEvents 1.0 JSON records (docs/events.md holds the contract).

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use uuid::{ContextV7, Uuid};

pub const IMPRESSION: &str = "com.caidan.impression";
pub const SCAN: &str = "com.caidan.scan";
pub const CLAIM: &str = "com.caidan.claim";
pub const REDEMPTION: &str = "com.caidan.redemption";
pub const REJECTION: &str = "com.caidan.rejection";

/// Who writes the events: fixed for one store.
#[derive(Debug, Clone)]
pub struct Source {
    pub fleet: String,
    pub device: String,
    pub epoch: String,
    pub scene: String,
}

/// One event about to enter the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    pub subject: Option<String>,
    pub brand: Option<String>,
    /// Type-specific fields; `scene` and `uptime_ms` are added.
    pub data: Map<String, Value>,
}

/// Builds records with time-ordered ids from the injected clock's readings.
pub struct EventBuilder {
    source: Source,
    source_uri: String,
    ids: ContextV7,
}

impl std::fmt::Debug for EventBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBuilder")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl EventBuilder {
    pub fn new(source: Source) -> Self {
        let source_uri = format!("/caidan/{}/d/{}", source.fleet, source.device);
        Self {
            source,
            source_uri,
            ids: ContextV7::new(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The record's id and JSON text.
    pub fn build(
        &self,
        event: NewEvent,
        seq: i64,
        now_ms: i64,
        uptime_ms: i64,
    ) -> (String, String) {
        let secs = now_ms.div_euclid(1000);
        let nanos = (now_ms.rem_euclid(1000) * 1_000_000) as u32;
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            &self.ids,
            secs.max(0) as u64,
            nanos,
        ))
        .to_string();
        let time = Timestamp::from_millisecond(now_ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let mut data = event.data;
        data.insert("scene".into(), Value::String(self.source.scene.clone()));
        data.insert("uptime_ms".into(), json!(uptime_ms));
        let mut record = json!({
            "specversion": "1.0",
            "id": id,
            "source": self.source_uri,
            "type": event.kind,
            "time": time,
            "datacontenttype": "application/json",
            "fleet": self.source.fleet,
            "device": self.source.device,
            "epoch": self.source.epoch,
            "seq": seq,
        });
        let obj = record.as_object_mut().expect("object literal");
        if let Some(subject) = event.subject {
            obj.insert("subject".into(), Value::String(subject));
        }
        if let Some(brand) = event.brand {
            obj.insert("brand".into(), Value::String(brand));
        }
        obj.insert("data".into(), Value::Object(data));
        (id, record.to_string())
    }
}

/// Builds a `data` map from pairs.
#[macro_export]
macro_rules! event_data {
    ($($k:literal : $v:expr),* $(,)?) => {{
        let mut m = serde_json::Map::new();
        $( m.insert($k.to_string(), serde_json::json!($v)); )*
        m
    }};
}

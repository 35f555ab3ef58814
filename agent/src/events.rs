//! Outbox events: the wire contract's records (`caidan_sync::contract`, documented in
//! docs/events.md), with time-ordered ids from the injected clock's readings.

use caidan_sync::contract::{Event, EventData, Ident, Name, Scene};
use jiff::Timestamp;
use uuid::{ContextV7, Uuid};

/// Who writes the events: fixed for one store.
#[derive(Debug, Clone)]
pub struct Source {
    pub fleet: Name,
    pub device: Name,
    pub epoch: Uuid,
    pub scene: Scene,
    /// This run of the agent, when its clock is guarded.
    pub boot: Option<Uuid>,
}

/// One event about to enter the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The offer, where the event concerns one.
    pub subject: Option<Ident>,
    /// The brand, where the event concerns one brand's offer.
    pub brand: Option<Ident>,
    pub data: EventData,
}

/// Builds records with time-ordered ids.
pub struct EventBuilder {
    source: Source,
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
        Self {
            source,
            ids: ContextV7::new(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The record's id and JSON text for outbox seq `seq`, at wall-clock `now_ms`.
    pub fn build(&self, event: NewEvent, seq: i64, now_ms: i64) -> (Uuid, String) {
        let secs = now_ms.div_euclid(1000);
        let nanos = (now_ms.rem_euclid(1000) * 1_000_000) as u32;
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            &self.ids,
            secs.max(0) as u64,
            nanos,
        ));
        let record = Event {
            id,
            time: Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH),
            fleet: self.source.fleet.clone(),
            device: self.source.device.clone(),
            epoch: self.source.epoch,
            seq: seq.max(1) as u64,
            boot: self.source.boot,
            subject: event.subject,
            brand: event.brand,
            data: event.data,
        };
        (id, record.to_json())
    }
}

//! The wire contract: every message that crosses between a device and the cloud, typed once
//! and used by both sides. The agent builds its events through these types; the data bank
//! parses and counts through them. `docs/events.md` is generated from them ([`docs`]).
//!
//! Every field has a type and a bound, checked where a message enters; an error never echoes
//! more than a short, escaped piece of the input.

pub mod ack;
pub mod batch;
pub mod config;
pub mod data;
pub mod docs;
pub mod event;
pub mod ids;
pub mod inventory;
pub mod state;

pub use ack::{Ack, AckError, ack_message};
pub use batch::{BatchError, DEFAULT_MAX_BATCH_BYTES, Limits, Received, parse_batch};
pub use caidan_profiles::Scene;
pub use config::{
    ConfigAck, ConfigData, ConfigDocument, ConfigReport, ConfigStatus, Envelope, Layer, LayerId,
    RejectCode, Rejection,
};
pub use data::{
    ClaimData, DataError, EventData, ImpressionData, OfferKind, RedemptionData, RejectionData,
    RejectionReason, ScanData,
};
pub use event::{Event, EventError, EventType, Stage};
pub use ids::{ClaimCode, IdError, Ident, Name, PickupCode, ShopperHash};
pub use inventory::{
    CancelOrder, DispenseFault, Handover, OrderData, OrderLine, OrderMessage, OrderMessageError,
    OrderRejection, OrderState, PickupOrder, SetStock, StockData, StockLevel, StockReason,
};
pub use state::{ClockStatus, Fill, Location, StateError, StateMessage, StorageReport};

/// Longest parse error kept: serde's messages can quote the offending input.
const MAX_REASON_CHARS: usize = 200;

/// A serde error as a bounded, single-line reason.
pub(crate) fn bounded_reason(e: &serde_json::Error) -> String {
    let text = e.to_string().replace(['\n', '\r'], " ");
    if text.chars().count() <= MAX_REASON_CHARS {
        text
    } else {
        let head: String = text.chars().take(MAX_REASON_CHARS).collect();
        format!("{head}...")
    }
}

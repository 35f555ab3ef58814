//! The agent store: one SQLite file in WAL mode, owned by a single writer thread that
//! commits concurrent requests together (group commit). Readers use their own connections.

pub mod budget;
#[cfg(test)]
mod disk_full_tests;
mod ops;
pub use ops::{ConfigApply, META_CATALOGUE, META_REJECTION, META_TRUST};
pub mod read;
pub mod schema;
mod state;
mod windows;
pub mod writer;

use caidan_sync::contract::{
    ClaimCode, IdError, Ident, OfferKind, OrderRejection, PickupCode, RejectionReason, StockReason,
};
use serde::{Deserialize, Serialize};

use crate::catalogue::Text;

pub use budget::{Fill, StorageBudget};
pub use read::Reader;
pub use state::Identity;
pub use writer::{Answer, StorageStatus, Writer, WriterHandle};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("no agent store at {0}: run the agent once to create it")]
    Missing(String),
    #[error(
        "store {path} has schema v{found}, newer than this agent understands (v{supported}): upgrade caidan-agent"
    )]
    NewerSchema {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error(
        "store {path} has schema v{found}, older than this agent (v{supported}): start the agent once to migrate it"
    )]
    OlderSchema {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("migration to schema v{to} failed: {source}")]
    Migration { to: i64, source: rusqlite::Error },
    #[error("store is corrupt: meta.{0} is missing")]
    MissingMeta(&'static str),
    #[error("store is corrupt: meta.epoch {0:?} is not a UUID")]
    BadEpoch(String),
    #[error("store is corrupt: offer {id} cannot be read: {source}")]
    OfferUnreadable {
        id: String,
        source: serde_json::Error,
    },
    #[error("store is corrupt: stock of {sku} is out of step with the writer's memory")]
    StockOutOfStep { sku: String },
    #[error("store is corrupt: hold {id} cannot be read: {reason}")]
    HoldUnreadable { id: String, reason: String },
    #[error("no free claim code after 8 tries")]
    NoFreeClaimCode,
    #[error("a stored value breaks the wire contract: {0}")]
    Contract(#[from] IdError),
    #[error("the store refused WAL journaling (got {0})")]
    JournalMode(String),
    #[error("cannot start the writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("store error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("commit failed, nothing was stored: {0}")]
    CommitFailed(#[source] std::sync::Arc<StoreError>),
    #[error("the store writer has stopped")]
    WriterGone,
    #[error(
        "store full: {used} bytes in use of a {limit} byte storage budget; nothing was recorded (room returns as the data bank acknowledges the outbox)"
    )]
    StorageFull { used: u64, limit: u64 },
    #[error(
        "disk full: the file system holding the store has no room (SQLITE_FULL); nothing was recorded (new eggs resume once a write succeeds again)"
    )]
    DiskFull,
}

impl StoreError {
    fn open(path: &std::path::Path, source: rusqlite::Error) -> Self {
        StoreError::Open {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The hold of a product or sample egg, as its shopper sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PickupInfo {
    /// The code to type on the keypad or give at the counter.
    pub code: PickupCode,
    pub sku: String,
    /// When the unit goes back to the shelf if not picked up.
    pub hold_until_ms: i64,
    /// `reserved`, `picked_up`, `expired`, ...
    pub state: String,
}

/// A claim as stored and shown to the shopper.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClaimRecord {
    pub claim_code: ClaimCode,
    pub offer_id: Ident,
    pub brand: Ident,
    pub kind: OfferKind,
    pub title: Text,
    pub description: Text,
    pub fallback: bool,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The special price of a product egg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<crate::catalogue::Price>,
    /// The unit held for a product or sample egg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup: Option<PickupInfo>,
}

/// The answer to an egg request.
#[derive(Debug, Clone)]
pub struct ClaimOutcome {
    pub claim: ClaimRecord,
    /// The shopper already had this claim today.
    pub existing: bool,
}

/// Why a new claim was refused before anything was chosen or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefusal {
    /// This QR window has handed out as many new claims as one screen can plausibly see.
    #[error("this screen has handed out all the eggs of this QR window")]
    ScreenBusy,
}

/// Why a redemption was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedeemRefusal {
    #[error("no claim with that code")]
    UnknownCode,
    #[error("claim already redeemed")]
    AlreadyRedeemed,
    #[error("claim has expired")]
    Expired,
    #[error("content eggs have nothing to redeem")]
    NotRedeemable,
}

impl RedeemRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            RedeemRefusal::UnknownCode => "unknown_code",
            RedeemRefusal::AlreadyRedeemed => "already_redeemed",
            RedeemRefusal::Expired => "expired",
            RedeemRefusal::NotRedeemable => "not_redeemable",
        }
    }

    /// The reason recorded as a rejection event (a fraud signal), for refusals of a claim
    /// that exists and could have been redeemed.
    pub fn recorded(self) -> Option<RejectionReason> {
        match self {
            RedeemRefusal::AlreadyRedeemed => Some(RejectionReason::AlreadyRedeemed),
            RedeemRefusal::Expired => Some(RejectionReason::Expired),
            RedeemRefusal::UnknownCode | RedeemRefusal::NotRedeemable => None,
        }
    }
}

/// A successful redemption.
#[derive(Debug, Clone, Serialize)]
pub struct Redemption {
    pub claim: ClaimRecord,
    pub redeemed_ms: i64,
}

/// What became of an order message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOutcome {
    Reserved,
    Rejected(OrderRejection),
    /// The same order again: nothing changed.
    Duplicate,
    /// An order id already used for another order: nothing changed.
    Conflict,
}

/// Why a cancel or release changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotOpen {
    #[error("no such order here")]
    Unknown,
    #[error("the order is not open any more ({0})")]
    Closed(&'static str),
    #[error("the order is being dispensed")]
    Dispensing,
}

/// Why a pickup or a dispense was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PickupRefusal {
    #[error("no order or egg with that pickup code")]
    UnknownCode,
    #[error("already picked up")]
    AlreadyPickedUp,
    #[error("the pickup window has ended")]
    Expired,
    #[error("the order was cancelled")]
    Cancelled,
    #[error("staff released this hold")]
    Released,
    #[error("being dispensed right now")]
    Dispensing,
}

impl PickupRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            PickupRefusal::UnknownCode => "unknown_code",
            PickupRefusal::AlreadyPickedUp => "already_picked_up",
            PickupRefusal::Expired => "expired",
            PickupRefusal::Cancelled => "cancelled",
            PickupRefusal::Released => "released",
            PickupRefusal::Dispensing => "dispensing",
        }
    }
}

/// An open or closed hold as staff and shoppers see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct HoldView {
    /// The order id, or `egg-{claim code}`.
    pub id: String,
    pub state: String,
    pub lines: Vec<LineView>,
    pub expires_ms: i64,
    pub created_ms: i64,
    pub closed_ms: Option<i64>,
    pub brand: Option<String>,
    pub offer: Option<String>,
    pub handed_by: Option<String>,
}

/// Units of one SKU in a hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct LineView {
    pub sku: String,
    pub qty: u32,
}

/// A stock change from staff, the CLI or the store system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockUpdate {
    pub sku: Ident,
    pub change: StockChange,
    pub reason: StockReason,
    pub note: Option<String>,
}

impl StockUpdate {
    /// A staff stock change: exactly one of `set` (units counted, reason `count`) and
    /// `delta` (positive for `restock`, negative for `damage`, either for `count`).
    pub fn from_parts(
        sku: Ident,
        set: Option<i64>,
        delta: Option<i64>,
        reason: &str,
        note: Option<String>,
    ) -> Result<StockUpdate, String> {
        let reason = match StockReason::parse(reason) {
            Some(r @ (StockReason::Restock | StockReason::Count | StockReason::Damage)) => r,
            _ => {
                return Err(format!(
                    "reason must be restock, count or damage, got {}",
                    caidan_sync::contract::ids::shown(reason)
                ));
            }
        };
        let change = match (set, delta, reason) {
            (Some(n), None, StockReason::Count) if n >= 0 => StockChange::Set(n),
            (None, Some(d), StockReason::Restock) if d > 0 => StockChange::Delta(d),
            (None, Some(d), StockReason::Damage) if d < 0 => StockChange::Delta(d),
            (None, Some(d), StockReason::Count) if d != 0 => StockChange::Delta(d),
            _ => {
                return Err(
                    "give set (units counted, with reason count) or delta (positive for restock, negative for damage)"
                        .into(),
                );
            }
        };
        if note.as_ref().is_some_and(|n| n.chars().count() > 200) {
            return Err("note is at most 200 characters".into());
        }
        Ok(StockUpdate {
            sku,
            change,
            reason,
            note,
        })
    }
}

/// Set units on hand, or change them by a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    Set(i64),
    Delta(i64),
}

/// A SKU's stock after a change.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct StockAfter {
    pub on_hand: u32,
    pub reserved: u32,
    pub available: u32,
}

/// What a catalogue import changed.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub version: u64,
    pub offers: usize,
    pub segments: usize,
    pub new_skus: usize,
}

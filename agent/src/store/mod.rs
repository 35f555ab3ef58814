//! The agent store: one SQLite file in WAL mode, owned by a single writer thread that
//! commits concurrent requests together (group commit). Readers use their own connections.

pub mod budget;
mod ops;
pub mod read;
pub mod schema;
mod state;
mod windows;
pub mod writer;

use caidan_sync::contract::{ClaimCode, IdError, Ident, OfferKind, RejectionReason};
use serde::Serialize;

use crate::catalogue::Text;

pub use budget::{Fill, StorageBudget};
pub use read::Reader;
pub use state::Identity;
pub use writer::{StorageStatus, Writer, WriterHandle};

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
}

impl StoreError {
    fn open(path: &std::path::Path, source: rusqlite::Error) -> Self {
        StoreError::Open {
            path: path.display().to_string(),
            source,
        }
    }
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

/// What a catalogue import changed.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub version: u64,
    pub offers: usize,
    pub segments: usize,
    pub new_skus: usize,
}

//! The agent store: one SQLite file in WAL mode, owned by a single writer thread that
//! commits concurrent requests together (group commit). Readers use their own connections.

pub mod budget;
mod ops;
pub mod read;
pub mod schema;
mod state;
pub mod writer;

use serde::Serialize;

use crate::catalogue::Text;

pub use budget::{Fill, StorageBudget};
pub use read::Reader;
pub use state::Identity;
pub use writer::{StorageStatus, Writer, WriterHandle};

/// The writer's view of who the device is.
pub fn state_identity(
    fleet: String,
    touchpoint: crate::engine::Touchpoint,
    timezone: &str,
) -> Identity {
    let tz = jiff::tz::TimeZone::get(timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    Identity {
        fleet,
        touchpoint,
        tz,
    }
}

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
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("commit failed, nothing was stored: {0}")]
    CommitFailed(String),
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
    pub claim_code: String,
    pub offer_id: String,
    pub brand: String,
    pub kind: String,
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

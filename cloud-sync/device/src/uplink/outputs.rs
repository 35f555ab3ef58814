//! What the uplink core hands the driver: work to do, and what inputs did.

use std::sync::Arc;
use std::time::Duration;

/// Work the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read up to `max` outbox records with `seq > after`, then call
    /// [`UplinkCore::handle_read`] (or [`UplinkCore::handle_read_failed`]).
    Read { after: i64, max: usize },
    /// Publish `payload` (a JSON array) on the events topic, QoS 1.
    Publish(BatchSend),
    /// Delete outbox records with `seq <= through`, then call
    /// [`UplinkCore::handle_trimmed`] (or [`UplinkCore::handle_trim_failed`]).
    Trim { through: i64 },
    /// Publish the retained state message.
    PublishState,
}

/// One batch to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSend {
    pub first: i64,
    pub last: i64,
    pub events: usize,
    /// 1 for the first send; higher for resends.
    pub attempt: u32,
    pub payload: Arc<[u8]>,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// `acked` moved from `from` to `to`.
    Advanced { from: i64, to: i64 },
    /// It claimed `claimed`, beyond what this run has sent; only up to `to` was taken.
    Clamped { claimed: i64, from: i64, to: i64 },
    /// Not newer than what was already acknowledged.
    Stale,
    /// For seqs this run has not sent yet; ignored.
    NotSent { claimed: i64 },
    /// For another epoch (an earlier store of this device); ignored.
    ForeignEpoch,
}

/// What the core decided about a lost connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Failed attempts in a row, this one included.
    pub attempt: u32,
    /// Wait before the next attempt.
    pub delay: Duration,
}

/// Counters and positions, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStatus {
    pub connected: bool,
    pub acked: i64,
    pub sent_through: i64,
    pub read_through: i64,
    pub batches_in_flight: usize,
    pub unsent_events: usize,
    pub batches_sent: u64,
    pub batches_resent: u64,
    /// Successful connections so far.
    pub connects: u64,
    /// Failed connection attempts in a row.
    pub failures: u32,
}

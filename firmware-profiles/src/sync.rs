//! How the uplink batches, waits for acknowledgements and backs off on this hardware class.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sync uplink policy: batching, acknowledgement and retry timing.
///
/// The uplink sends a batch when it holds `batch_max_events` events or `batch_max_bytes` of
/// payload, or when the oldest unsent event has waited `linger_ms`. A batch not acknowledged
/// within `ack_timeout_ms` is sent again. Metered links should batch harder (more events,
/// longer linger) to spend fewer bytes on framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPolicy {
    /// Most events in one batch.
    pub batch_max_events: u32,
    /// Largest batch payload; kept under broker packet limits.
    pub batch_max_bytes: u32,
    /// Longest an event waits for a batch to fill.
    pub linger_ms: u64,
    /// How long to wait for the data bank's acknowledgement before resending.
    pub ack_timeout_ms: u64,
    /// Batches sent but not yet acknowledged at any one time.
    pub max_in_flight: u16,
    /// First reconnect/resend delay after a failure.
    pub initial_backoff_ms: u64,
    /// Ceiling of the doubling backoff.
    pub max_backoff_ms: u64,
}

impl SyncPolicy {
    /// [`SyncPolicy::linger_ms`] as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// [`SyncPolicy::ack_timeout_ms`] as a duration.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    /// [`SyncPolicy::max_backoff_ms`] as a duration.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms)
    }

    /// Delay before the next attempt after `failures` consecutive failures (1 = first failure):
    /// doubling from `initial_backoff_ms`, capped at `max_backoff_ms`. Callers add jitter.
    pub fn backoff_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(63);
        let ms = self
            .initial_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms);
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SyncPolicy {
        SyncPolicy {
            batch_max_events: 100,
            batch_max_bytes: 65_536,
            linger_ms: 500,
            ack_timeout_ms: 10_000,
            max_in_flight: 4,
            initial_backoff_ms: 250,
            max_backoff_ms: 60_000,
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let p = policy();
        assert_eq!(p.backoff_after(0), Duration::from_millis(250));
        assert_eq!(p.backoff_after(1), Duration::from_millis(250));
        assert_eq!(p.backoff_after(2), Duration::from_millis(500));
        assert_eq!(p.backoff_after(3), Duration::from_millis(1_000));
        assert_eq!(p.backoff_after(10), Duration::from_millis(60_000));
        assert_eq!(p.backoff_after(u32::MAX), Duration::from_millis(60_000));
    }

    #[test]
    fn durations_follow_millis() {
        let p = policy();
        assert_eq!(p.linger(), Duration::from_millis(500));
        assert_eq!(p.ack_timeout(), Duration::from_secs(10));
        assert_eq!(p.max_backoff(), Duration::from_secs(60));
    }
}

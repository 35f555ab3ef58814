//! Injectable time: the wall clock for what a person reads, a monotonic clock for durations.
//!
//! Every component is handed a [`Clock`] instead of reading time itself, so the simulator can
//! run a day in seconds and tests can jump across midnight or an expiry. Devices without an
//! RTC can see the wall clock jump when NTP arrives late: events record both readings, and
//! durations are measured on the monotonic one. This module is the only place that reads the
//! system's clocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Time since an arbitrary fixed point of this clock; never goes backwards.
    fn monotonic(&self) -> Duration;
    /// [`Clock::monotonic`] in whole milliseconds.
    fn monotonic_ms(&self) -> i64 {
        self.monotonic().as_millis() as i64
    }
}

fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The real clocks of the machine.
#[derive(Debug)]
pub struct SystemClock {
    started: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// A shared system clock.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(Self::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }

    fn monotonic(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A clock that follows tokio's timer: when a test pauses tokio time, this clock stops and
/// jumps with it. The wall clock starts at the system time and moves with tokio's.
#[derive(Debug)]
pub struct TokioClock {
    started: tokio::time::Instant,
    wall_at_start_ms: i64,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            wall_at_start_ms: system_now_ms(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        self.wall_at_start_ms + self.monotonic_ms()
    }

    fn monotonic(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A clock that only moves when told to; shared by cloning.
#[derive(Debug, Clone)]
pub struct ManualClock {
    wall_ms: Arc<AtomicI64>,
    mono_ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(wall_ms: i64) -> Self {
        Self {
            wall_ms: Arc::new(AtomicI64::new(wall_ms)),
            mono_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Moves both clocks forward.
    pub fn advance_ms(&self, ms: i64) {
        self.wall_ms.fetch_add(ms, Ordering::SeqCst);
        self.mono_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the wall clock only, as an NTP correction would.
    pub fn set_wall_ms(&self, ms: i64) {
        self.wall_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.wall_ms.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_millis(self.mono_ms.load(Ordering::SeqCst).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!((c.now_ms(), c.monotonic_ms()), (1_000, 0));
        c.advance_ms(250);
        assert_eq!((c.now_ms(), c.monotonic_ms()), (1_250, 250));
        c.set_wall_ms(10);
        assert_eq!(
            (c.now_ms(), c.monotonic_ms()),
            (10, 250),
            "monotonic unaffected"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::new();
        let wall = c.now_ms();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(c.monotonic(), Duration::from_secs(3600));
        assert_eq!(c.now_ms() - wall, 3_600_000);
    }
}

//! Injectable time: wall-clock for what a person reads, monotonic for durations.
//!
//! Devices without an RTC can see the wall clock jump when NTP arrives late, so events
//! record both readings and durations are measured on the monotonic one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of time. Every component that needs "now" is handed one.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Milliseconds since an arbitrary fixed point; never goes backwards.
    fn monotonic_ms(&self) -> i64;
}

/// The real clock.
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
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn monotonic_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
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

    fn monotonic_ms(&self) -> i64 {
        self.mono_ms.load(Ordering::SeqCst)
    }
}

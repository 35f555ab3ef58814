//! Injectable time: the wall clock for what a person reads, a monotonic clock for durations.
//!
//! Every component is handed a [`Clock`] instead of reading time itself, so the simulator can
//! run a day in seconds and tests can jump across midnight or an expiry. Devices without an
//! RTC can see the wall clock jump when NTP arrives late: events record both readings, and
//! durations are measured on the monotonic one. This module is the only place that reads the
//! system's clocks.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::contract::ClockStatus;

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
    /// What the wall clock would read had nobody set it since an arbitrary fixed point: it
    /// moves at the wall clock's rate and never steps. On a device that is the monotonic
    /// clock; a simulation whose wall time runs faster than real time says so here.
    fn steady_ms(&self) -> i64 {
        self.monotonic_ms()
    }
    /// What a guarding clock knows about the wall clock's steps; `None` for a raw clock.
    fn status(&self) -> Option<ClockStatus> {
        None
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

/// How far the wall clock may drift from the steady clock before the difference counts as a
/// step. NTP slews by at most 0.5 ms per second, so a minute is far beyond any slew and far
/// below a time-zone or day-sized mistake.
pub const STEP_TOLERANCE_MS: i64 = 60_000;

/// The time the agent goes by, kept sane while the wall clock steps: plain logic fed with
/// readings, so its rules are tested without a clock.
///
/// The rules: while the wall clock agrees with the steady clock (within
/// [`STEP_TOLERANCE_MS`]), the wall clock is the time. When it steps, back or forward, the
/// time goes on from the last agreeing reading on the steady clock, and the step is counted
/// and reported. The wall clock is followed again when it comes back into agreement. At the
/// start, a wall clock behind the last time the store recorded (`floor`) is not believed
/// either: the time starts at the floor, as a lower bound, and the first wall reading ahead
/// of it is taken (a device without a real-time clock, set by NTP once it is online). The
/// time handed out never goes backwards.
#[derive(Debug, Clone)]
pub struct Timekeeper {
    anchor_ms: i64,
    anchor_steady: i64,
    last_ms: i64,
    offset_ms: i64,
    jumps: u32,
    stepped: bool,
    lower_bound: bool,
}

impl Timekeeper {
    /// Starts from a first reading; `floor` is the last time the store recorded, if any.
    pub fn start(wall_ms: i64, steady_ms: i64, floor: Option<i64>) -> Timekeeper {
        let behind = floor.filter(|f| wall_ms < *f);
        let anchor_ms = behind.unwrap_or(wall_ms);
        Timekeeper {
            anchor_ms,
            anchor_steady: steady_ms,
            last_ms: anchor_ms,
            offset_ms: wall_ms - anchor_ms,
            jumps: u32::from(behind.is_some()),
            stepped: behind.is_some(),
            lower_bound: behind.is_some(),
        }
    }

    /// The time to go by, given the clocks' readings now.
    pub fn observe(&mut self, wall_ms: i64, steady_ms: i64) -> i64 {
        let predicted = self
            .anchor_ms
            .saturating_add(steady_ms.saturating_sub(self.anchor_steady));
        let offset = wall_ms.saturating_sub(predicted);
        let agrees = offset.abs() <= STEP_TOLERANCE_MS;
        let believed = if agrees || (self.lower_bound && offset > 0) {
            self.lower_bound = false;
            self.stepped = false;
            self.anchor_ms = wall_ms;
            self.anchor_steady = steady_ms;
            wall_ms
        } else {
            // A new step, or the stepped clock stepping again.
            if !self.stepped || (offset - self.offset_ms).abs() > STEP_TOLERANCE_MS {
                self.jumps = self.jumps.saturating_add(1);
            }
            self.stepped = true;
            predicted
        };
        self.offset_ms = wall_ms.saturating_sub(believed);
        self.last_ms = self.last_ms.max(believed);
        self.last_ms
    }

    /// Wall clock minus the time gone by at the last reading.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// Steps seen so far.
    pub fn jumps(&self) -> u32 {
        self.jumps
    }

    /// Whether the time is only a lower bound (see the type's rules).
    pub fn lower_bound(&self) -> bool {
        self.lower_bound
    }
}

/// A [`Clock`] whose wall time is kept by a [`Timekeeper`]: what the agent runs on, so its
/// quotas, dayparts, QR windows, hold expiries and event times never see a step. Monotonic
/// time passes through unchanged.
pub struct GuardedClock {
    inner: Arc<dyn Clock>,
    keeper: Mutex<Timekeeper>,
    boot: uuid::Uuid,
}

impl GuardedClock {
    /// Guards `inner`; `floor` is the last time the store recorded.
    pub fn new(inner: Arc<dyn Clock>, floor: Option<i64>) -> GuardedClock {
        let keeper = Timekeeper::start(inner.now_ms(), inner.steady_ms(), floor);
        if keeper.lower_bound() {
            tracing::warn!(
                wall_ms = inner.now_ms(),
                floor_ms = floor.unwrap_or_default(),
                "the wall clock reads earlier than the store's last recorded time: going by that time until the wall clock passes it"
            );
        }
        GuardedClock {
            inner,
            keeper: Mutex::new(keeper),
            boot: uuid::Uuid::now_v7(),
        }
    }

    /// This run's id (in events and the state message).
    pub fn boot(&self) -> uuid::Uuid {
        self.boot
    }

    fn keeper(&self) -> std::sync::MutexGuard<'_, Timekeeper> {
        self.keeper.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for GuardedClock {
    fn now_ms(&self) -> i64 {
        let (wall, steady) = (self.inner.now_ms(), self.inner.steady_ms());
        let mut k = self.keeper();
        let jumps = k.jumps();
        let now = k.observe(wall, steady);
        if k.jumps() != jumps {
            tracing::warn!(
                wall_ms = wall,
                offset_ms = k.offset_ms(),
                jumps = k.jumps(),
                "the wall clock stepped: going by the steady clock until it agrees again"
            );
        }
        now
    }

    fn monotonic(&self) -> Duration {
        self.inner.monotonic()
    }

    fn steady_ms(&self) -> i64 {
        self.inner.steady_ms()
    }

    fn status(&self) -> Option<ClockStatus> {
        let _ = self.now_ms();
        let k = self.keeper();
        Some(ClockStatus {
            boot: self.boot,
            uptime_ms: self.inner.monotonic_ms().max(0) as u64,
            offset_ms: k.offset_ms(),
            jumps: k.jumps(),
            lower_bound: k.lower_bound(),
        })
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

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_750_000_000_000;

    #[test]
    fn a_wall_clock_in_agreement_is_the_time_slews_included() {
        let mut k = Timekeeper::start(T0, 0, None);
        assert_eq!(k.observe(T0 + 1_000, 1_000), T0 + 1_000);
        // NTP slewing it by half a minute is no step.
        assert_eq!(k.observe(T0 + 31_000, 1_000), T0 + 31_000);
        assert_eq!((k.jumps(), k.offset_ms()), (0, 0));
    }

    #[test]
    fn a_step_back_a_day_is_ridden_out_on_the_steady_clock() {
        let mut k = Timekeeper::start(T0, 0, None);
        assert_eq!(k.observe(T0 + 10_000, 10_000), T0 + 10_000);
        let back = T0 + 20_000 - DAY;
        assert_eq!(k.observe(back, 20_000), T0 + 20_000);
        assert_eq!((k.jumps(), k.offset_ms()), (1, -DAY));
        // Still a day behind later: still one step, and the time keeps moving.
        assert_eq!(k.observe(back + 60_000, 80_000), T0 + 80_000);
        assert_eq!(k.jumps(), 1);
        // Set right again: followed again, nothing handed out twice.
        assert_eq!(k.observe(T0 + 90_000, 90_000), T0 + 90_000);
        assert_eq!((k.jumps(), k.offset_ms()), (1, 0));
    }

    #[test]
    fn a_step_forward_a_year_is_ridden_out_too_and_a_second_step_counts_again() {
        let mut k = Timekeeper::start(T0, 0, None);
        let year = 365 * DAY;
        assert_eq!(k.observe(T0 + year, 5_000), T0 + 5_000);
        assert_eq!((k.jumps(), k.offset_ms()), (1, year - 5_000));
        assert_eq!(k.observe(T0 + 2 * year, 6_000), T0 + 6_000);
        assert_eq!(k.jumps(), 2);
    }

    #[test]
    fn a_clock_behind_the_store_starts_from_the_store_and_takes_the_first_later_reading() {
        // A board without a real-time clock boots at 1970.
        let mut k = Timekeeper::start(0, 0, Some(T0));
        assert!(k.lower_bound());
        assert_eq!(k.jumps(), 1);
        assert_eq!(k.observe(1_000, 1_000), T0 + 1_000);
        // NTP sets it hours later than the floor (the board was off): believed at once.
        let ntp = T0 + 6 * 3_600_000;
        assert_eq!(k.observe(ntp, 2_000), ntp);
        assert!(!k.lower_bound());
        assert_eq!(k.offset_ms(), 0);
        // From then on a step is a step.
        assert_eq!(k.observe(ntp + DAY, 3_000), ntp + 1_000);
    }

    #[test]
    fn the_time_never_goes_backwards() {
        let mut k = Timekeeper::start(T0, 0, None);
        assert_eq!(k.observe(T0 + 50_000, 50_000), T0 + 50_000);
        // Slewed back within the tolerance: held, not reversed.
        assert_eq!(k.observe(T0 + 10_000, 50_000), T0 + 50_000);
        // A floor ahead of a good wall clock still wins at the start.
        let k = Timekeeper::start(T0, 0, Some(T0 + 5));
        assert_eq!(k.last_ms, T0 + 5);
    }

    #[test]
    fn a_guarded_clock_reports_its_steps() {
        let raw = ManualClock::new(T0);
        let c = GuardedClock::new(Arc::new(raw.clone()), None);
        raw.advance_ms(1_000);
        assert_eq!(c.now_ms(), T0 + 1_000);
        raw.set_wall_ms(T0 + 1_000 - DAY);
        raw.advance_ms(1_000);
        assert_eq!(c.now_ms(), T0 + 2_000);
        let s = c.status().unwrap();
        assert_eq!((s.jumps, s.offset_ms, s.uptime_ms), (1, -DAY, 2_000));
        assert_eq!(s.boot, c.boot());
        assert_eq!(raw.status(), None);
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

//! Event times from devices whose wall clock cannot be believed, placed on the data bank's
//! own time line.
//!
//! Every event carries its run (`boot`) and the run's monotonic clock (`data.uptime_ms`).
//! Each message from a run, received at bank time `r` with uptime `u`, bounds the run's start
//! on the bank's clock from above: `start <= r - u` (the message cannot arrive before it was
//! written). The least such bound seen is the run's anchor; a live connection makes it tight
//! to the network delay. An event's time is replaced by `anchor + uptime_ms` when its run
//! said its time is only a lower bound, or when the event claims to come from the future of
//! the bank's clock: a backlog of old events is normal (a device offline for days), a future
//! one is a wrong clock. Plain logic, fed with readings.

use std::collections::HashMap;

use caidan_sync::clock::STEP_TOLERANCE_MS;
use caidan_sync::contract::{ClockStatus, Event};
use jiff::Timestamp;
use uuid::Uuid;

/// Runs remembered at most; past it the oldest-started half is forgotten (their events are
/// then stored with the device's time until the next message of the run).
pub const MAX_RUNS: usize = 100_000;

#[derive(Debug, Clone)]
struct Run {
    /// The device that reported the run first; another device naming the run is ignored.
    fleet: String,
    device: String,
    /// Least `received - uptime` seen: the run's start on the bank's clock, from above.
    start_ms: i64,
    /// The run said its time is only a lower bound.
    unsure: bool,
}

/// Anchors of the runs seen, by run id: a device's backlog of an earlier run keeps its own
/// anchor and leaves the current run's alone. Looked up without allocating.
#[derive(Debug, Default)]
pub struct Timeline {
    runs: HashMap<Uuid, Run>,
}

impl Timeline {
    /// Learns from a state message received at `now_ms`.
    pub fn note_state(&mut self, fleet: &str, device: &str, clock: &ClockStatus, now_ms: i64) {
        if let Some(run) = self.bound(fleet, device, clock.boot, clock.uptime_ms, now_ms) {
            run.unsure = clock.lower_bound;
        }
    }

    /// Places the events of one batch received at `now_ms`; returns how many were moved.
    pub fn place(&mut self, events: &mut [&mut Event], now_ms: i64) -> usize {
        // Every event bounds its run's start first, so the batch's own freshest event counts.
        for e in events.iter() {
            if let (Some(boot), Some(uptime)) = (e.boot, e.data.uptime_ms()) {
                self.bound(e.fleet.as_str(), e.device.as_str(), boot, uptime, now_ms);
            }
        }
        let mut moved = 0;
        for e in events.iter_mut() {
            let (Some(boot), Some(uptime)) = (e.boot, e.data.uptime_ms()) else {
                continue;
            };
            let Some(run) = self
                .runs
                .get(&boot)
                .filter(|r| r.fleet == e.fleet.as_str() && r.device == e.device.as_str())
            else {
                continue;
            };
            let claimed = e.time.as_millisecond();
            let from_future = claimed > now_ms.saturating_add(STEP_TOLERANCE_MS);
            if !(run.unsure || from_future) {
                continue;
            }
            let placed = run
                .start_ms
                .saturating_add(uptime.min(i64::MAX as u64) as i64);
            if (placed - claimed).abs() > STEP_TOLERANCE_MS
                && let Ok(t) = Timestamp::from_millisecond(placed)
            {
                e.time = t;
                moved += 1;
            }
        }
        moved
    }

    /// Tightens the start of run `boot` of `fleet`/`device`; `None` when another device
    /// reported that run first.
    fn bound(
        &mut self,
        fleet: &str,
        device: &str,
        boot: Uuid,
        uptime: u64,
        now_ms: i64,
    ) -> Option<&mut Run> {
        if self.runs.len() >= MAX_RUNS && !self.runs.contains_key(&boot) {
            self.forget_oldest_half();
        }
        let start = now_ms.saturating_sub(uptime.min(i64::MAX as u64) as i64);
        let run = self.runs.entry(boot).or_insert_with(|| Run {
            fleet: fleet.to_owned(),
            device: device.to_owned(),
            start_ms: start,
            unsure: false,
        });
        if run.fleet != fleet || run.device != device {
            return None;
        }
        run.start_ms = run.start_ms.min(start);
        Some(run)
    }

    fn forget_oldest_half(&mut self) {
        let mut starts: Vec<i64> = self.runs.values().map(|r| r.start_ms).collect();
        let mid = starts.len() / 2;
        let (_, median, _) = starts.select_nth_unstable(mid);
        let median = *median;
        self.runs.retain(|_, r| r.start_ms > median);
    }

    /// Runs remembered.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::contract::{EventData, Name, ScanData, Scene, ShopperHash};

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_750_000_000_000;

    fn boot(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn scan(device: &str, run: Uuid, time_ms: i64, uptime_ms: u64) -> Event {
        Event {
            id: Uuid::now_v7(),
            time: Timestamp::from_millisecond(time_ms).unwrap(),
            fleet: Name::new("demo").unwrap(),
            device: Name::new(device).unwrap(),
            epoch: boot(99),
            seq: 1,
            boot: Some(run),
            subject: None,
            brand: None,
            data: EventData::Scan(ScanData {
                shopper: ShopperHash::new("0".repeat(32).as_str()).unwrap(),
                brands: vec![],
                scene: Scene::Cinema,
                uptime_ms,
            }),
        }
    }

    fn status(run: Uuid, uptime_ms: u64, lower_bound: bool) -> ClockStatus {
        ClockStatus {
            boot: run,
            uptime_ms,
            offset_ms: 0,
            jumps: u32::from(lower_bound),
            lower_bound,
        }
    }

    fn place(t: &mut Timeline, mut events: Vec<Event>, now_ms: i64) -> Vec<i64> {
        let mut refs: Vec<&mut Event> = events.iter_mut().collect();
        t.place(&mut refs, now_ms);
        events.iter().map(|e| e.time.as_millisecond()).collect()
    }

    #[test]
    fn a_believed_clock_is_left_alone_backlog_included() {
        let mut t = Timeline::default();
        // Two days of backlog from a device whose clock is fine.
        let times = place(&mut t, vec![scan("d1", boot(1), T0 - 48 * HOUR, 1_000)], T0);
        assert_eq!(times, vec![T0 - 48 * HOUR]);
    }

    #[test]
    fn a_lower_bound_run_is_placed_from_its_uptime() {
        let mut t = Timeline::default();
        // The run started 10 s before the bank heard from it, its clock a week behind.
        t.note_state("demo", "d1", &status(boot(1), 10_000, true), T0);
        let week = 7 * 24 * HOUR;
        let times = place(&mut t, vec![scan("d1", boot(1), T0 - week, 5_000)], T0 + 1);
        assert_eq!(times, vec![T0 - 5_000]);
    }

    #[test]
    fn events_from_the_future_are_placed_and_the_tightest_bound_wins() {
        let mut t = Timeline::default();
        let year = 365 * 24 * HOUR;
        // A queued state (delivered an hour late) gives a loose bound; a live one a tight one.
        t.note_state("demo", "d1", &status(boot(1), 60_000, false), T0 + HOUR);
        t.note_state("demo", "d1", &status(boot(1), 120_000, false), T0 + 60_000);
        let times = place(
            &mut t,
            vec![scan("d1", boot(1), T0 + year, 90_000)],
            T0 + 100_000,
        );
        assert_eq!(times, vec![T0 - 60_000 + 90_000]);
    }

    #[test]
    fn a_new_run_starts_a_new_anchor_and_other_devices_are_apart() {
        let mut t = Timeline::default();
        t.note_state("demo", "d1", &status(boot(1), 1_000, true), T0);
        t.note_state("demo", "d1", &status(boot(2), 1_000, false), T0 + HOUR);
        // Run 2 said nothing about a lower bound: its past times stand.
        let times = place(
            &mut t,
            vec![scan("d1", boot(2), T0, 2_000)],
            T0 + HOUR + 1_000,
        );
        assert_eq!(times, vec![T0]);
        // An event of the forgotten run 1 is left as it came.
        let times = place(&mut t, vec![scan("d2", boot(1), T0 - HOUR, 1)], T0);
        assert_eq!(times, vec![T0 - HOUR]);
    }

    #[test]
    fn the_map_stays_bounded() {
        let mut t = Timeline::default();
        for i in 0..(MAX_RUNS + 10) {
            t.note_state(
                "demo",
                &format!("d{i}"),
                &status(boot(i as u128), 0, false),
                T0 + i as i64,
            );
        }
        assert!(t.len() <= MAX_RUNS);
        assert!(t.len() > MAX_RUNS / 3);
    }
}

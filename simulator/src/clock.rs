//! The virtual clock every agent runs on: wall time the simulator steps (plus a device's own
//! offset, for a clock jump), monotonic time that is real, so the uplink's timeouts and
//! backoff keep working between steps, and a steady clock that is the simulation's time, so
//! an agent's guarded clock rides out a jump as on a device.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

pub use caidan_sync::clock::Clock;

/// The simulation's wall clock, shared by every device.
#[derive(Debug, Clone)]
pub struct SimTime {
    wall_ms: Arc<AtomicI64>,
}

impl SimTime {
    pub fn new(start_ms: i64) -> SimTime {
        SimTime {
            wall_ms: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.wall_ms.load(Ordering::SeqCst)
    }

    pub fn set(&self, ms: i64) {
        self.wall_ms.store(ms, Ordering::SeqCst);
    }
}

/// One device's clock: the simulation's wall time plus its offset.
#[derive(Debug, Clone)]
pub struct DeviceClock {
    time: SimTime,
    offset_ms: Arc<AtomicI64>,
    started: Instant,
}

impl DeviceClock {
    pub fn new(time: SimTime) -> DeviceClock {
        DeviceClock {
            time,
            offset_ms: Arc::new(AtomicI64::new(0)),
            started: Instant::now(),
        }
    }

    /// This device's wall time `ms` from now.
    pub fn now_ms_plus(&self, ms: i64) -> i64 {
        self.now_ms() + ms
    }

    /// Moves this device's wall clock by `ms` from now on.
    pub fn jump(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for DeviceClock {
    fn now_ms(&self) -> i64 {
        self.time.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        self.started.elapsed()
    }

    /// Simulated time runs faster than real time: the steady clock is the simulation's,
    /// without this device's jumps.
    fn steady_ms(&self) -> i64 {
        self.time.now_ms()
    }
}

/// A clock read from a file another process writes (a real-process agent's view of the
/// simulation's time): the file holds the wall time in ms as decimal text. Read on every
/// call, so the agent sees exactly the time the simulator published before a step.
#[derive(Debug)]
pub struct FileClock {
    path: PathBuf,
    last_ms: AtomicI64,
    started: Instant,
}

fn read_ms(p: &Path) -> Option<i64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

impl FileClock {
    pub fn follow(path: &Path) -> std::io::Result<FileClock> {
        let first = read_ms(path).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: no time in ms", path.display()),
            )
        })?;
        Ok(FileClock {
            path: path.to_owned(),
            last_ms: AtomicI64::new(first),
            started: Instant::now(),
        })
    }
}

impl Clock for FileClock {
    fn now_ms(&self) -> i64 {
        match read_ms(&self.path) {
            Some(ms) => {
                self.last_ms.store(ms, Ordering::SeqCst);
                ms
            }
            // Mid-rename: the last time read.
            None => self.last_ms.load(Ordering::SeqCst),
        }
    }

    fn monotonic(&self) -> Duration {
        self.started.elapsed()
    }

    /// The simulation's time, which never steps for a real-process agent.
    fn steady_ms(&self) -> i64 {
        self.now_ms()
    }
}

/// Writes `ms` to `path` for a [`FileClock`] to read, atomically (write then rename).
pub fn publish(path: &PathBuf, ms: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ms.to_string())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_clock_follows_the_simulation_plus_its_own_jump() {
        let t = SimTime::new(1_000);
        let (a, b) = (DeviceClock::new(t.clone()), DeviceClock::new(t.clone()));
        b.jump(-86_400_000);
        t.set(61_000);
        assert_eq!(a.now_ms(), 61_000);
        assert_eq!(b.now_ms(), 61_000 - 86_400_000);
    }

    #[test]
    fn a_file_clock_reads_what_the_simulator_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock");
        publish(&p, 42).unwrap();
        let c = FileClock::follow(&p).unwrap();
        assert_eq!(c.now_ms(), 42);
        publish(&p, 43).unwrap();
        assert_eq!(c.now_ms(), 43);
    }
}

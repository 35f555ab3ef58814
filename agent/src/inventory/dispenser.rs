//! The dispenser of a vending machine or locker: the driver the agent calls to hand units
//! out, and a simulated one that can jam or run empty on purpose.
//!
//! A dispense call blocks while the mechanism runs; the agent calls it off the async
//! runtime and records the outcome afterwards. Units count as handed out only when the
//! driver says they came out.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use caidan_sync::contract::DispenseFault;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// A dispense that stopped early: how many units came out before the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub given: u32,
    pub fault: DispenseFault,
}

/// Hands units of a SKU out of the machine.
pub trait Dispenser: Send + Sync + std::fmt::Debug {
    /// Whether a slot of this machine holds `sku`.
    fn has_slot(&self, sku: &str) -> bool;
    /// Dispenses `qty` units of `sku`, one by one; blocks while the mechanism runs.
    fn dispense(&self, sku: &str, qty: u32) -> Result<(), Stopped>;
}

/// How the simulated dispenser behaves (`[dispenser]` in the agent config).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedConfig {
    /// SKUs loaded in the machine's slots; empty means every SKU the touchpoint stocks.
    pub slots: Vec<String>,
    /// Dispense attempts (1 = the first since start) that jam before any unit comes out.
    pub jam_attempts: Vec<u64>,
    /// Chance, 0 to 1, that any attempt jams (for the simulator's faults).
    pub jam_rate: f64,
    /// SKUs whose slot turns out to be empty, whatever the stock says.
    pub empty: Vec<String>,
    /// Time one unit takes to come out.
    pub unit_ms: u64,
    /// Seed of `jam_rate`'s draws.
    pub seed: u64,
}

impl SimulatedConfig {
    pub fn validate(&self, slots_in_profile: u32) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.jam_rate) {
            return Err(format!("jam_rate must be 0 to 1, got {}", self.jam_rate));
        }
        if self.slots.len() > slots_in_profile as usize {
            return Err(format!(
                "{} slots listed, the profile's machine has {slots_in_profile}",
                self.slots.len()
            ));
        }
        if let Some(s) = self
            .slots
            .iter()
            .chain(&self.empty)
            .find(|s| !caidan_sync::contract::Ident::valid(s))
        {
            return Err(format!("{s:?} is not a valid SKU"));
        }
        if self.unit_ms > 60_000 {
            return Err("unit_ms is at most 60000".into());
        }
        Ok(())
    }
}

/// A dispenser that does what its config says: for development, tests and the simulator.
#[derive(Debug)]
pub struct SimulatedDispenser {
    slots: BTreeSet<String>,
    empty: BTreeSet<String>,
    jams: BTreeSet<u64>,
    jam_rate: f64,
    unit: Duration,
    state: Mutex<(u64, StdRng)>,
}

impl SimulatedDispenser {
    pub fn new(cfg: &SimulatedConfig) -> Self {
        SimulatedDispenser {
            slots: cfg.slots.iter().cloned().collect(),
            empty: cfg.empty.iter().cloned().collect(),
            jams: cfg.jam_attempts.iter().copied().collect(),
            jam_rate: cfg.jam_rate,
            unit: Duration::from_millis(cfg.unit_ms),
            state: Mutex::new((0, StdRng::seed_from_u64(cfg.seed))),
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Dispenser for SimulatedDispenser {
    fn has_slot(&self, sku: &str) -> bool {
        self.slots.is_empty() || self.slots.contains(sku)
    }

    fn dispense(&self, sku: &str, qty: u32) -> Result<(), Stopped> {
        let jammed = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.0 += 1;
            let attempt = s.0;
            self.jams.contains(&attempt) || (self.jam_rate > 0.0 && s.1.random_bool(self.jam_rate))
        };
        if !self.has_slot(sku) {
            return Err(Stopped {
                given: 0,
                fault: DispenseFault::Offline,
            });
        }
        if jammed {
            std::thread::sleep(self.unit);
            return Err(Stopped {
                given: 0,
                fault: DispenseFault::Jam,
            });
        }
        if self.empty.contains(sku) {
            return Err(Stopped {
                given: 0,
                fault: DispenseFault::Empty,
            });
        }
        std::thread::sleep(self.unit * qty);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jams_on_the_attempts_it_is_told() {
        let d = SimulatedDispenser::new(&SimulatedConfig {
            jam_attempts: vec![1, 3],
            empty: vec!["gum".into()],
            ..Default::default()
        });
        let jam = Err(Stopped {
            given: 0,
            fault: DispenseFault::Jam,
        });
        assert_eq!(d.dispense("cola", 1), jam);
        assert_eq!(d.dispense("cola", 2), Ok(()));
        assert_eq!(d.dispense("cola", 1), jam);
        assert_eq!(
            d.dispense("gum", 1),
            Err(Stopped {
                given: 0,
                fault: DispenseFault::Empty
            })
        );
        assert_eq!(d.attempts(), 4);
    }

    #[test]
    fn slots_bound_what_it_can_dispense() {
        let cfg = SimulatedConfig {
            slots: vec!["cola".into()],
            ..Default::default()
        };
        let d = SimulatedDispenser::new(&cfg);
        assert!(d.has_slot("cola") && !d.has_slot("gum"));
        assert!(cfg.validate(0).is_err());
        assert!(cfg.validate(4).is_ok());
        let bad = SimulatedConfig {
            jam_rate: 1.5,
            ..Default::default()
        };
        assert!(bad.validate(4).unwrap_err().contains("jam_rate"));
    }
}

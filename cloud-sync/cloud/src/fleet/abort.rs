//! When a rollout stops, as AWS IoT Jobs' abort criteria do: failures are the devices that
//! rejected or timed out among those sent so far; once enough have finished, too large a
//! share of failures halts the rollout.

use std::fmt;

use super::answers::Tally;

/// The threshold and the number of finished devices before it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortCriteria {
    /// Halt when failures are at least this share of finished devices (0 to 100); 0 halts
    /// on the first failure.
    pub halt_on_percent: u8,
    /// Finished devices (answered or timed out) needed before the threshold is checked.
    pub min_devices: usize,
}

/// Why a rollout halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    pub failures: usize,
    pub finished: usize,
    pub rejected: usize,
    pub timed_out: usize,
    pub halt_on_percent: u8,
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} finished devices failed ({} rejected, {} timed out): {}% is at or over --halt-on {}%",
            self.failures,
            self.finished,
            self.rejected,
            self.timed_out,
            self.failures * 100 / self.finished.max(1),
            self.halt_on_percent
        )
    }
}

impl AbortCriteria {
    /// The reason to halt now, if the tally calls for it.
    pub fn check(&self, tally: &Tally) -> Option<Halt> {
        let finished = tally.finished();
        let failures = tally.failures();
        let over = failures > 0
            && finished >= self.min_devices.max(1)
            && failures * 100 >= self.halt_on_percent as usize * finished;
        over.then_some(Halt {
            failures,
            finished,
            rejected: tally.rejected,
            timed_out: tally.timed_out,
            halt_on_percent: self.halt_on_percent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tally(applied: usize, rejected: usize, timed_out: usize) -> Tally {
        Tally {
            applied,
            rejected,
            timed_out,
            ..Tally::default()
        }
    }

    #[test]
    fn threshold_applies_after_min_devices() {
        let c = AbortCriteria {
            halt_on_percent: 30,
            min_devices: 3,
        };
        assert!(
            c.check(&tally(0, 1, 0)).is_none(),
            "one finished, three needed"
        );
        assert!(c.check(&tally(1, 1, 0)).is_none());
        let h = c.check(&tally(2, 1, 0)).expect("1 of 3 is 33%");
        assert_eq!((h.failures, h.finished), (1, 3));
        assert!(
            h.to_string().contains("33% is at or over --halt-on 30%"),
            "{h}"
        );
        assert!(c.check(&tally(3, 1, 0)).is_none(), "1 of 4 is 25%");
        assert!(
            c.check(&tally(3, 0, 1)).is_none(),
            "timeouts count the same"
        );
        assert!(c.check(&tally(4, 1, 1)).is_some(), "2 of 6 is 33%");
        assert!(
            c.check(&tally(10, 0, 0)).is_none(),
            "no failures never halts"
        );
    }

    #[test]
    fn zero_percent_halts_on_the_first_failure() {
        let c = AbortCriteria {
            halt_on_percent: 0,
            min_devices: 1,
        };
        assert!(c.check(&tally(50, 0, 0)).is_none());
        assert!(c.check(&tally(50, 0, 1)).is_some());
    }

    proptest! {
        #[test]
        fn halts_exactly_at_the_threshold(a in 0usize..200, r in 0usize..200, t in 0usize..200,
                                           pct in 0u8..=100, min in 0usize..50) {
            let c = AbortCriteria { halt_on_percent: pct, min_devices: min };
            let finished = a + r + t;
            let expect = r + t > 0 && finished >= min.max(1)
                && (r + t) as f64 / finished as f64 * 100.0 >= pct as f64 - 1e-9;
            prop_assert_eq!(c.check(&tally(a, r, t)).is_some(), expect);
        }
    }
}

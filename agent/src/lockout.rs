//! Lockouts after repeated wrong codes (redemption codes now, pickup codes next): pure
//! bookkeeping on the injected clock, no I/O. A key (a staff token, the whole touchpoint) that
//! collects `max_failures` wrong codes within `window` is locked for `lock_for`; while locked,
//! every attempt is refused before anything is looked up, and the refusal says when the
//! lock ends. Right codes do not count.

use std::collections::HashMap;
use std::hash::Hash;

/// When a key gets locked and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window_ms: i64,
    pub lock_ms: i64,
}

/// A refusal: locked until this wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub until_ms: i64,
}

impl Locked {
    /// Milliseconds left at `now_ms`.
    pub fn remaining_ms(&self, now_ms: i64) -> i64 {
        (self.until_ms - now_ms).max(0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: i64,
    failures: u32,
    locked_until: Option<i64>,
}

/// Most keys tracked; past it, the stalest are forgotten (their count starts again).
const MAX_KEYS: usize = 10_000;

/// Failure counts and locks per key.
#[derive(Debug, Clone)]
pub struct Lockouts<K> {
    policy: LockoutPolicy,
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Lockouts<K> {
    pub fn new(policy: LockoutPolicy) -> Self {
        Lockouts {
            policy,
            entries: HashMap::new(),
        }
    }

    /// `Err` while `key` is locked at `now_ms`.
    pub fn check(&self, key: &K, now_ms: i64) -> Result<(), Locked> {
        match self.entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if now_ms < until => Err(Locked { until_ms: until }),
            _ => Ok(()),
        }
    }

    /// Counts one wrong code for `key`; returns the lock when this one set it.
    pub fn failure(&mut self, key: &K, now_ms: i64) -> Option<Locked> {
        if self.entries.len() >= MAX_KEYS && !self.entries.contains_key(key) {
            self.prune(now_ms);
        }
        let p = self.policy;
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            window_start: now_ms,
            failures: 0,
            locked_until: None,
        });
        if e.locked_until.is_some_and(|until| now_ms < until) {
            return None;
        }
        if now_ms - e.window_start >= p.window_ms || e.locked_until.is_some() {
            // A new window, or the first failure after a lock ended: count from zero.
            *e = Entry {
                window_start: now_ms,
                failures: 0,
                locked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= p.max_failures {
            let until = now_ms + p.lock_ms;
            e.locked_until = Some(until);
            return Some(Locked { until_ms: until });
        }
        None
    }

    /// Forgets keys whose window and lock are over; then, if still too many, the oldest.
    pub fn prune(&mut self, now_ms: i64) {
        let p = self.policy;
        self.entries.retain(|_, e| {
            e.locked_until.is_some_and(|u| now_ms < u) || now_ms - e.window_start < p.window_ms
        });
        if self.entries.len() >= MAX_KEYS {
            let mut starts: Vec<i64> = self.entries.values().map(|e| e.window_start).collect();
            starts.sort_unstable();
            let cutoff = starts[starts.len() - MAX_KEYS / 2];
            self.entries.retain(|_, e| e.window_start >= cutoff);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        max_failures: 3,
        window_ms: 60_000,
        lock_ms: 600_000,
    };

    #[test]
    fn locks_after_max_failures_and_unlocks_when_the_lock_ends() {
        let mut l = Lockouts::new(POLICY);
        assert_eq!(l.failure(&"t", 0), None);
        assert_eq!(l.failure(&"t", 1_000), None);
        assert_eq!(l.failure(&"t", 2_000), Some(Locked { until_ms: 602_000 }));
        assert_eq!(l.check(&"t", 601_999), Err(Locked { until_ms: 602_000 }));
        assert_eq!(l.check(&"other", 10_000), Ok(()), "keys are apart");
        assert_eq!(l.check(&"t", 602_000), Ok(()));
        assert_eq!(l.failure(&"t", 602_000), None, "counting starts again");
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let mut l = Lockouts::new(POLICY);
        for i in 0..100 {
            assert_eq!(l.failure(&"t", i * 30_000), None, "failure {i}");
            // Two per window at most: the window restarts before the third.
        }
    }

    proptest! {
        /// A fast guesser (faster than `max_failures` a window) gets at most `max_failures`
        /// guesses through per lock period, whatever its rhythm; a refusal only ever comes
        /// inside a lock, and names when that lock ends.
        #[test]
        fn fast_guessing_is_bounded_by_the_lock(
            steps in proptest::collection::vec(0i64..(POLICY.window_ms / 4), 1..400)
        ) {
            let mut l = Lockouts::new(POLICY);
            let (mut now, mut through) = (0i64, 0u64);
            let mut lock: Option<Locked> = None;
            for step in steps {
                now += step;
                match l.check(&"k", now) {
                    Err(refused) => {
                        prop_assert_eq!(Some(refused), lock);
                        prop_assert!(now < refused.until_ms);
                    }
                    Ok(()) => {
                        through += 1;
                        if let Some(new) = l.failure(&"k", now) {
                            prop_assert_eq!(new.until_ms, now + POLICY.lock_ms);
                            lock = Some(new);
                        }
                    }
                }
            }
            let periods = (now / POLICY.lock_ms) as u64 + 1;
            prop_assert!(through <= periods * u64::from(POLICY.max_failures));
        }
    }
}

//! The storage budget: how full the store may get before the agent warns, and before it
//! stops taking new eggs. Pure logic; the writer feeds it the store's size.
//!
//! Claims are never dropped to make room: once the store is full, new eggs are refused
//! with a clear error (the shopper is told, nothing half-recorded) and the per-minute
//! impression counts are the only events not written. Nothing already in the outbox is
//! removed, so its sequence stays gapless. Room comes back as the data bank acknowledges
//! and the outbox is trimmed.

/// Limits in bytes of store in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageBudget {
    pub limit: u64,
    pub warn: u64,
}

pub use caidan_sync::contract::Fill;

impl StorageBudget {
    /// A budget of `limit` bytes warning at `warn_percent` of it.
    pub fn new(limit: u64, warn_percent: u8) -> Self {
        let warn = (u128::from(limit) * u128::from(warn_percent.min(100)) / 100) as u64;
        Self { limit, warn }
    }

    pub fn fill(&self, used: u64) -> Fill {
        if used >= self.limit {
            Fill::Full
        } else if used >= self.warn {
            Fill::Warning
        } else {
            Fill::Normal
        }
    }
}

/// Remembers the last fill level so that each change is reported once.
#[derive(Debug, Clone, Copy)]
pub struct FillWatch {
    last: Fill,
}

impl Default for FillWatch {
    fn default() -> Self {
        Self { last: Fill::Normal }
    }
}

impl FillWatch {
    /// The new level when it differs from the last one seen.
    pub fn update(&mut self, now: Fill) -> Option<Fill> {
        (now != std::mem::replace(&mut self.last, now)).then_some(now)
    }

    pub fn current(&self) -> Fill {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_at_their_thresholds() {
        let b = StorageBudget::new(1000, 80);
        assert_eq!(b.warn, 800);
        assert_eq!(b.fill(0), Fill::Normal);
        assert_eq!(b.fill(799), Fill::Normal);
        assert_eq!(b.fill(800), Fill::Warning);
        assert_eq!(b.fill(999), Fill::Warning);
        assert_eq!(b.fill(1000), Fill::Full);
        assert_eq!(b.fill(u64::MAX), Fill::Full);
    }

    #[test]
    fn huge_budgets_do_not_overflow() {
        let b = StorageBudget::new(u64::MAX, 100);
        assert_eq!(b.warn, u64::MAX);
        assert_eq!(StorageBudget::new(u64::MAX, 50).warn, u64::MAX / 2);
    }

    #[test]
    fn each_change_is_reported_once() {
        let mut w = FillWatch::default();
        assert_eq!(w.update(Fill::Normal), None);
        assert_eq!(w.update(Fill::Warning), Some(Fill::Warning));
        assert_eq!(w.update(Fill::Warning), None);
        assert_eq!(w.update(Fill::Full), Some(Fill::Full));
        assert_eq!(w.update(Fill::Normal), Some(Fill::Normal));
        assert_eq!(w.current(), Fill::Normal);
    }
}

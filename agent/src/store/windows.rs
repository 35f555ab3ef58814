//! What each QR window has seen: the new claims (capped at what one physical screen can
//! plausibly see) and the shoppers who scanned (so repeated scans count once). Pure
//! bookkeeping, kept for the current and the previous window (a token is accepted in both).

use std::collections::{BTreeMap, HashSet};

use caidan_sync::contract::ShopperHash;

/// Most distinct scanners remembered per window; scans past it are not recorded at all.
pub const MAX_SCANNERS_PER_WINDOW: usize = 10_000;

#[derive(Debug, Default, Clone)]
struct Tally {
    claims: u32,
    scanned: HashSet<ShopperHash>,
}

/// Tallies of the last two QR windows.
#[derive(Debug, Clone)]
pub struct Windows {
    claims_per_window: u32,
    tallies: BTreeMap<i64, Tally>,
}

impl Windows {
    pub fn new(claims_per_window: u32) -> Self {
        Windows {
            claims_per_window: claims_per_window.max(1),
            tallies: BTreeMap::new(),
        }
    }

    fn tally(&mut self, window: i64) -> &mut Tally {
        // Forget windows more than one older than the newest seen.
        let newest = self
            .tallies
            .keys()
            .next_back()
            .copied()
            .unwrap_or(window)
            .max(window);
        self.tallies.retain(|w, _| *w >= newest - 1);
        self.tallies.entry(window).or_default()
    }

    /// Whether one more new claim fits in `window`.
    pub fn claim_fits(&mut self, window: i64) -> bool {
        let cap = self.claims_per_window;
        self.tally(window).claims < cap
    }

    /// Counts a new claim made in `window`.
    pub fn claimed(&mut self, window: i64) {
        self.tally(window).claims += 1;
    }

    /// Whether a scan by `shopper` in `window` should be recorded: its first there, and
    /// the window not past [`MAX_SCANNERS_PER_WINDOW`].
    pub fn scan_is_new(&mut self, window: i64, shopper: &ShopperHash) -> bool {
        let t = self.tally(window);
        t.scanned.len() < MAX_SCANNERS_PER_WINDOW && !t.scanned.contains(shopper)
    }

    /// Notes a recorded scan.
    pub fn scanned(&mut self, window: i64, shopper: &ShopperHash) {
        self.tally(window).scanned.insert(shopper.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shopper(n: u64) -> ShopperHash {
        ShopperHash::new(format!("{n:032x}")).unwrap()
    }

    #[test]
    fn claims_are_capped_per_window_and_scans_counted_once() {
        let mut w = Windows::new(2);
        for _ in 0..2 {
            assert!(w.claim_fits(10));
            w.claimed(10);
        }
        assert!(!w.claim_fits(10), "the cap");
        assert!(w.claim_fits(11), "a new window starts afresh");
        assert!(w.scan_is_new(10, &shopper(1)));
        w.scanned(10, &shopper(1));
        assert!(!w.scan_is_new(10, &shopper(1)), "again in the same window");
        assert!(w.scan_is_new(11, &shopper(1)), "a new window");
        // Two windows are kept: the previous one still refuses past its cap.
        assert!(!w.claim_fits(10));
        w.claimed(12);
        assert!(w.claim_fits(10), "window 10 is forgotten once 12 arrives");
    }
}

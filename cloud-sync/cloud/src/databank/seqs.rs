//! Highest contiguous sequence number per device and epoch, remembering what arrived
//! beyond a gap. Plain data, no I/O: the store persists it in the batch's transaction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Sequence progress of one (device, epoch).
///
/// `contiguous` is the highest `n` such that 1..=n were all received. Seqs received past a
/// gap are kept as disjoint, non-adjacent inclusive ranges `start -> end`, all above
/// `contiguous + 1`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqProgress {
    contiguous: u64,
    beyond: BTreeMap<u64, u64>,
}

impl SeqProgress {
    /// Progress restored from its persisted parts.
    pub fn from_parts(contiguous: u64, ranges: Vec<(u64, u64)>) -> Self {
        let mut p = SeqProgress {
            contiguous,
            beyond: BTreeMap::new(),
        };
        for (start, end) in ranges {
            p.record_range(start, end);
        }
        p
    }

    /// Highest contiguous seq received (0 when seq 1 has not arrived).
    pub fn contiguous(&self) -> u64 {
        self.contiguous
    }

    /// Ranges received beyond the first gap, ascending.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.beyond.iter().map(|(s, e)| (*s, *e)).collect()
    }

    /// Whether `seq` was received already.
    pub fn contains(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq <= self.contiguous {
            return true;
        }
        self.beyond
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, end)| seq <= *end)
    }

    /// Records one received seq (0 is ignored). Returns whether anything changed.
    pub fn record(&mut self, seq: u64) -> bool {
        seq != 0 && self.record_range(seq, seq)
    }

    /// Records the inclusive range `start..=end`. Returns whether anything changed.
    pub fn record_range(&mut self, start: u64, end: u64) -> bool {
        let start = start.max(self.contiguous + 1);
        if start > end {
            return false;
        }
        let before = (self.contiguous, self.beyond.len());
        let (mut s, mut e) = (start, end);
        // Merge with every stored range that overlaps or touches [s, e].
        let touching: Vec<(u64, u64)> = self
            .beyond
            .range(..=e.saturating_add(1))
            .rev()
            .take_while(|(_, re)| re.saturating_add(1) >= s)
            .map(|(rs, re)| (*rs, *re))
            .collect();
        let covered = touching.iter().any(|(rs, re)| *rs <= s && *re >= e);
        for (rs, re) in touching {
            self.beyond.remove(&rs);
            s = s.min(rs);
            e = e.max(re);
        }
        if s == self.contiguous + 1 {
            self.contiguous = e;
        } else {
            self.beyond.insert(s, e);
        }
        !covered || before.0 != self.contiguous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_and_gaps() {
        let mut p = SeqProgress::default();
        assert!(p.record(1));
        assert!(p.record(2));
        assert_eq!(p.contiguous(), 2);
        assert!(p.record(5));
        assert!(p.record(4));
        assert_eq!(p.contiguous(), 2);
        assert_eq!(p.ranges(), vec![(4, 5)]);
        assert!(p.record(3));
        assert_eq!(p.contiguous(), 5);
        assert!(p.ranges().is_empty());
        assert!(!p.record(3), "duplicate below contiguous changes nothing");
        assert!(!p.record(0));
    }

    #[test]
    fn duplicate_beyond_gap_changes_nothing() {
        let mut p = SeqProgress::default();
        assert!(p.record_range(10, 20));
        assert!(!p.record_range(12, 15));
        assert!(p.record_range(21, 21));
        assert_eq!(p.ranges(), vec![(10, 21)]);
        assert!(p.record_range(1, 9));
        assert_eq!(p.contiguous(), 21);
    }

    #[test]
    fn restores_from_parts() {
        let mut p = SeqProgress::default();
        for s in [1, 2, 7, 8, 12] {
            p.record(s);
        }
        let q = SeqProgress::from_parts(p.contiguous(), p.ranges());
        assert_eq!(p, q);
    }

    proptest! {
        /// Whatever order seqs arrive in, duplicated or not, the acknowledged seq never moves
        /// backwards, and at the end equals the longest prefix 1..=n that arrived.
        #[test]
        fn contiguous_never_moves_backwards(seqs in prop::collection::vec(1u64..60, 0..200)) {
            let mut p = SeqProgress::default();
            let mut seen = std::collections::BTreeSet::new();
            let mut last = 0;
            for s in &seqs {
                p.record(*s);
                seen.insert(*s);
                prop_assert!(p.contiguous() >= last);
                last = p.contiguous();
                let expected = (1..).take_while(|n| seen.contains(n)).count() as u64;
                prop_assert_eq!(p.contiguous(), expected);
                // Ranges are disjoint, non-adjacent and above the gap.
                let ranges = p.ranges();
                let mut floor = p.contiguous() + 1;
                for (rs, re) in ranges {
                    prop_assert!(rs > floor && rs <= re);
                    floor = re + 1;
                }
                let reloaded = SeqProgress::from_parts(p.contiguous(), p.ranges());
                prop_assert_eq!(&reloaded, &p);
                for probe in 0..62 {
                    prop_assert_eq!(p.contains(probe), seen.contains(&probe), "contains({})", probe);
                }
            }
        }

        /// Batches (ranges) in any order reach the same result as single seqs.
        #[test]
        fn ranges_match_single_seqs(batches in prop::collection::vec((1u64..50, 0u64..10), 0..40)) {
            let mut by_range = SeqProgress::default();
            let mut by_seq = SeqProgress::default();
            for (start, len) in batches {
                by_range.record_range(start, start + len);
                for s in start..=start + len {
                    by_seq.record(s);
                }
            }
            prop_assert_eq!(by_range, by_seq);
        }
    }
}

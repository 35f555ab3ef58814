//! How a rollout splits the devices in scope: a canary first, then waves that double in size,
//! the last taking what remains.

/// Sizes of the canary and of each wave after it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavePlan {
    pub sizes: Vec<usize>,
}

/// Plans `devices` into a canary of `canary_percent` (rounded up, at least one device) and
/// up to `waves` growing waves: each twice the one before, starting from what makes the
/// doubling series fit the rest, the last taking the remainder. Waves that would be empty are
/// left out, so a small fleet may get fewer.
pub fn plan(devices: usize, canary_percent: u8, waves: usize) -> WavePlan {
    if devices == 0 {
        return WavePlan { sizes: Vec::new() };
    }
    let canary = (devices * canary_percent as usize)
        .div_ceil(100)
        .clamp(1, devices);
    let mut sizes = vec![canary];
    let mut rest = devices - canary;
    if rest == 0 || waves == 0 {
        // With no waves asked for, what the canary did not take goes in one last wave.
        if rest > 0 {
            sizes.push(rest);
        }
        return WavePlan { sizes };
    }
    // Doubling from `first`: first * (2^waves - 1) <= rest, so the last wave is the largest.
    let series = 1usize
        .checked_shl(waves.min(63) as u32)
        .map_or(usize::MAX, |p| p - 1);
    let first = (rest / series).max(1);
    for i in 0..waves {
        if rest == 0 {
            break;
        }
        let size = if i + 1 == waves {
            rest
        } else {
            first.saturating_mul(1usize << i.min(62)).min(rest)
        };
        sizes.push(size);
        rest -= size;
    }
    WavePlan { sizes }
}

impl WavePlan {
    /// The devices of each wave, in order, from `devices` (sorted by the caller).
    pub fn split<T: Clone>(&self, devices: &[T]) -> Vec<Vec<T>> {
        let mut at = 0;
        self.sizes
            .iter()
            .map(|&n| {
                let wave = devices[at..at + n].to_vec();
                at += n;
                wave
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(plan(10, 10, 3).sizes, vec![1, 1, 2, 6]);
        assert_eq!(plan(100, 5, 3).sizes, vec![5, 13, 26, 56]);
        assert_eq!(plan(1, 10, 3).sizes, vec![1]);
        assert_eq!(plan(3, 10, 3).sizes, vec![1, 1, 1]);
        assert_eq!(plan(4, 100, 3).sizes, vec![4]);
        assert_eq!(
            plan(10, 0, 3).sizes[0],
            1,
            "the canary is at least one device"
        );
        assert_eq!(plan(10, 25, 0).sizes, vec![3, 7]);
        assert!(plan(0, 10, 3).sizes.is_empty());
        let split = plan(5, 20, 2).split(&["a", "b", "c", "d", "e"]);
        assert_eq!(split, vec![vec!["a"], vec!["b"], vec!["c", "d", "e"]]);
    }

    proptest! {
        #[test]
        fn every_device_once_in_growing_waves(n in 0usize..5000, canary in 0u8..=100, waves in 0usize..12) {
            let p = plan(n, canary, waves);
            prop_assert_eq!(p.sizes.iter().sum::<usize>(), n);
            prop_assert!(p.sizes.iter().all(|&s| s > 0));
            if n > 0 {
                prop_assert_eq!(p.sizes[0], (n * canary as usize).div_ceil(100).clamp(1, n));
                prop_assert!(p.sizes.len() <= 1 + waves.max(1));
            }
            // After the canary the waves never shrink, except a short tail of a tiny rest.
            let after = &p.sizes[1.min(p.sizes.len())..];
            if after.iter().sum::<usize>() >= (1usize << waves.min(20)) {
                prop_assert!(after.windows(2).all(|w| w[0] <= w[1]), "{:?}", p.sizes);
            }
        }
    }
}

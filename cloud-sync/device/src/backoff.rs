//! Jittered exponential backoff as a pure function, so a fleet reconnecting after a broker
//! outage spreads out instead of arriving all at once.

use std::time::Duration;

/// Delay before reconnect attempt `attempt` (1 = after the first failure): the ceiling doubles
/// from `initial` up to `max`, and the delay is drawn from `[ceiling/2, ceiling]` by a hash of
/// `seed` and `attempt` ("equal jitter"). The same inputs always give the same delay.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, seed: u64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    let initial_ms = initial.as_millis().max(1) as u64;
    let ceiling = initial_ms
        .saturating_mul(1u64 << doublings)
        .min(max.as_millis() as u64)
        .max(1);
    let half = ceiling / 2;
    let jitter = splitmix64(seed ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        % (ceiling - half + 1);
    Duration::from_millis(half + jitter)
}

/// A seed that differs between processes and devices.
pub fn random_seed(device: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(device.as_bytes());
    h.finish()
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_within_bounds_then_caps() {
        let (initial, max) = (ms(250), ms(10_000));
        for seed in 0..50u64 {
            assert!((ms(125)..=ms(250)).contains(&backoff(1, initial, max, seed)));
            assert!((ms(500)..=ms(1000)).contains(&backoff(3, initial, max, seed)));
            assert!((ms(5_000)..=ms(10_000)).contains(&backoff(40, initial, max, seed)));
        }
    }

    #[test]
    fn seeds_spread_delays() {
        let delays: std::collections::HashSet<_> = (0..100u64)
            .map(|s| backoff(6, ms(250), ms(60_000), s))
            .collect();
        assert!(delays.len() > 50, "only {} distinct delays", delays.len());
    }

    proptest! {
        #[test]
        fn never_above_max_nor_below_half_ceiling(
            attempt in 0u32..200, seed: u64, initial in 1u64..5_000, max in 1u64..600_000,
        ) {
            let d = backoff(attempt, ms(initial), ms(max), seed);
            prop_assert!(d <= ms(max));
            prop_assert_eq!(d, backoff(attempt, ms(initial), ms(max), seed));
            let ceiling = initial.saturating_mul(1 << attempt.saturating_sub(1).min(32)).min(max).max(1);
            prop_assert!(d >= ms(ceiling / 2));
        }
    }
}

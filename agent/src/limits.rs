//! What one client may take: rate limits on eggs and scans per client address and per
//! shopper (GCRA, from `governor`, on the agent's injected clock), and the settings behind
//! them. A refusal says when to retry.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use caidan_sync::clock::Clock;
use caidan_sync::contract::ShopperHash;
use governor::clock::Reference;
use governor::{Quota, RateLimiter};
use serde::Deserialize;

/// `governor`'s view of the agent clock: monotonic time since the clock started.
#[derive(Clone)]
pub struct GovernorClock(pub Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.0.monotonic()
    }
}

type Keyed<K> = RateLimiter<
    K,
    governor::state::keyed::DashMapStateStore<K>,
    GovernorClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// Limits of one kind of request: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        let per_minute = NonZeroU32::new(self.per_minute.max(1)).expect("at least 1");
        Quota::per_minute(per_minute)
            .allow_burst(NonZeroU32::new(self.burst.max(1)).expect("at least 1"))
    }
}

/// Per-client limits of the shopper-facing routes. Behind a venue's Wi-Fi many phones share
/// one address, so the per-address rates are generous; the per-window claim cap (from the
/// profile) bounds what all of them together can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// `POST /api/v1/eggs` per client address.
    pub eggs_per_client: Rate,
    /// `POST /api/v1/eggs` per shopper (a shopper's rescans return the same claim anyway).
    pub eggs_per_shopper: Rate,
    /// `GET /e/{token}` per client address.
    pub scans_per_client: Rate,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            eggs_per_client: Rate {
                per_minute: 60,
                burst: 20,
            },
            eggs_per_shopper: Rate {
                per_minute: 6,
                burst: 3,
            },
            scans_per_client: Rate {
                per_minute: 120,
                burst: 40,
            },
        }
    }
}

/// A refusal: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

/// The limiters, keyed per client address and per shopper.
pub struct Limiters {
    eggs_per_client: Keyed<IpAddr>,
    eggs_per_shopper: Keyed<ShopperHash>,
    scans_per_client: Keyed<IpAddr>,
    clock: GovernorClock,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiters")
    }
}

impl Limiters {
    pub fn new(limits: &ClientLimits, clock: Arc<dyn Clock>) -> Limiters {
        fn keyed<K: std::hash::Hash + Eq + Clone>(r: Rate, clock: &GovernorClock) -> Keyed<K> {
            RateLimiter::dashmap_with_clock(r.quota(), clock.clone())
        }
        let clock = GovernorClock(clock);
        Limiters {
            eggs_per_client: keyed(limits.eggs_per_client, &clock),
            eggs_per_shopper: keyed(limits.eggs_per_shopper, &clock),
            scans_per_client: keyed(limits.scans_per_client, &clock),
            clock,
        }
    }

    fn check<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &Keyed<K>,
        key: &K,
    ) -> Result<(), RetryAfter> {
        limiter.check_key(key).map_err(|not_until| {
            let now = governor::clock::Clock::now(&self.clock);
            RetryAfter(not_until.earliest_possible().duration_since(now).into())
        })
    }

    /// An egg request from `client`.
    pub fn egg_from(&self, client: IpAddr) -> Result<(), RetryAfter> {
        self.check(&self.eggs_per_client, &client)
    }

    /// An egg request for `shopper`.
    pub fn egg_for(&self, shopper: &ShopperHash) -> Result<(), RetryAfter> {
        self.check(&self.eggs_per_shopper, shopper)
    }

    /// A scan (egg page) from `client`.
    pub fn scan_from(&self, client: IpAddr) -> Result<(), RetryAfter> {
        self.check(&self.scans_per_client, &client)
    }

    /// Forgets clients and shoppers whose limits are back to full.
    pub fn forget_idle(&self) {
        for l in [&self.eggs_per_client, &self.scans_per_client] {
            l.retain_recent();
            l.shrink_to_fit();
        }
        self.eggs_per_shopper.retain_recent();
        self.eggs_per_shopper.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::clock::ManualClock;

    #[test]
    fn bursts_then_refuses_with_a_retry_time_on_the_injected_clock() {
        let clock = ManualClock::new(0);
        let limits = ClientLimits {
            eggs_per_client: Rate {
                per_minute: 60,
                burst: 3,
            },
            ..ClientLimits::default()
        };
        let l = Limiters::new(&limits, Arc::new(clock.clone()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.egg_from(a).is_ok());
        }
        let RetryAfter(wait) = l.egg_from(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.egg_from(b).is_ok(), "another client is not held back");
        clock.advance_ms(1_000);
        assert!(l.egg_from(a).is_ok(), "one more a second");
        assert!(l.egg_from(a).is_err());
    }
}

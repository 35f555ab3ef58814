//! Everything that will happen in a run, drawn from the seed before it starts: shopper visits
//! shaped per scene and hour, orders and their pickups, the rollout and the faults. Pure: the
//! same scenario and seed always give the same plan.

use caidan_profiles::Scene;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{FaultKind, Scenario};

/// Relative traffic per local hour (0..=23), the busiest hour being 1.0.
pub fn shape(scene: Scene) -> [f64; 24] {
    // Hours:     0    1    2    3    4    5    6    7    8    9   10   11   12   13   14   15   16   17   18   19   20   21   22   23
    match scene {
        // Before the evening shows, and the late show.
        Scene::Cinema => [
            0.2, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.5, 0.5,
            0.6, 0.9, 1.0, 0.9, 0.6, 0.5, 0.3,
        ],
        // Parcels on the way to work and home from it.
        Scene::Community => [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.6, 0.5, 0.2, 0.2, 0.2, 0.3, 0.2, 0.2, 0.2, 0.3,
            0.5, 0.9, 1.0, 0.8, 0.5, 0.2, 0.1,
        ],
        // Lunch and dinner.
        Scene::Restaurant => [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.2, 0.4, 0.9, 1.0, 0.7, 0.3, 0.2, 0.3,
            0.7, 0.9, 0.8, 0.4, 0.2, 0.1, 0.0,
        ],
        // Canteen at lunch, again at dinner.
        Scene::Campus => [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.4, 0.5, 0.3, 0.4, 0.8, 1.0, 0.6, 0.3, 0.3, 0.4,
            0.6, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1,
        ],
        // The rush hours.
        Scene::Transit => [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.4, 0.9, 1.0, 0.6, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.5,
            0.9, 1.0, 0.6, 0.4, 0.3, 0.2, 0.1,
        ],
        // Afternoon and evening strolls.
        Scene::Plaza => [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8,
            0.9, 1.0, 1.0, 0.8, 0.5, 0.3, 0.1,
        ],
        // All day, with the rush hours.
        Scene::Vending => [
            0.1, 0.0, 0.0, 0.0, 0.0, 0.1, 0.3, 0.8, 1.0, 0.5, 0.4, 0.5, 0.7, 0.6, 0.5, 0.5, 0.6,
            0.9, 1.0, 0.7, 0.5, 0.4, 0.3, 0.2,
        ],
    }
}

/// One planned action, `minute` virtual minutes after the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub minute: u32,
    pub act: Act,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// A shopper scans the device's QR and cracks an egg; `redeem`: then redeems it.
    Visit {
        device: usize,
        shopper: u32,
        redeem: bool,
    },
    /// An order for the device, held `hold_minutes`.
    Order {
        device: usize,
        order: u32,
        hold_minutes: u32,
    },
    /// The order's code is entered at the device.
    Pickup { device: usize, order: u32 },
    /// The fleet config layer is published.
    Rollout,
    /// Fault `index` of the scenario begins.
    FaultStart { index: usize },
    /// Fault `index` ends (the link, broker, data bank or process is back).
    FaultEnd { index: usize },
}

/// What each device is, for planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub scene: Scene,
    /// Hands orders over (counter staff, a keypad, locker doors).
    pub pickups: bool,
}

/// Local hour of minute `m` of the run, given the start's local hour and minute.
fn local_hour(start_minute_of_day: u32, m: u32) -> usize {
    (((start_minute_of_day + m) / 60) % 24) as usize
}

/// Draws a Poisson count with mean `lambda` (small means; Knuth's method).
fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0u32, 1.0f64);
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// The whole run's actions in time order (ties in a fixed order).
pub fn plan(
    s: &Scenario,
    seed: u64,
    devices: &[DeviceInfo],
    start_minute_of_day: u32,
) -> Vec<Planned> {
    let minutes = s.time.hours * 60;
    let mut out = Vec::new();
    for (d, info) in devices.iter().enumerate() {
        // One stream per device: adding a device does not change the others' shoppers.
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (d as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let shape = shape(info.scene);
        let per_minute = f64::from(s.shoppers.peak_visits_per_hour) / 60.0;
        for m in 0..minutes {
            let n = poisson(
                &mut rng,
                per_minute * shape[local_hour(start_minute_of_day, m)],
            );
            for _ in 0..n {
                out.push(Planned {
                    minute: m,
                    act: Act::Visit {
                        device: d,
                        shopper: rng.random_range(0..s.shoppers.pool_per_device),
                        redeem: rng.random::<f64>() < s.shoppers.redeem_rate,
                    },
                });
            }
        }
        if info.pickups && s.orders.per_device_per_day > 0 {
            let count = (u64::from(s.orders.per_device_per_day) * u64::from(s.time.hours))
                .div_ceil(24) as u32;
            let hold = s.orders.hold_minutes;
            for order in 0..count {
                // Orders arrive while the store is open: follow the scene's shape.
                let m = loop {
                    let m = rng.random_range(0..minutes);
                    if rng.random::<f64>() < shape[local_hour(start_minute_of_day, m)] {
                        break m;
                    }
                };
                out.push(Planned {
                    minute: m,
                    act: Act::Order {
                        device: d,
                        order,
                        hold_minutes: hold,
                    },
                });
                if rng.random::<f64>() < s.orders.pickup_rate && hold > 2 {
                    let at = m + rng.random_range(1..hold - 1);
                    if at < minutes {
                        out.push(Planned {
                            minute: at,
                            act: Act::Pickup { device: d, order },
                        });
                    }
                }
            }
        }
    }
    if let Some(r) = &s.rollout {
        out.push(Planned {
            minute: (r.at_hour * 60.0) as u32,
            act: Act::Rollout,
        });
    }
    for (index, f) in s.faults.iter().enumerate() {
        let start = (f.at_hour * 60.0) as u32;
        out.push(Planned {
            minute: start,
            act: Act::FaultStart { index },
        });
        let lasts = match &f.kind {
            FaultKind::LinkCut { minutes, .. }
            | FaultKind::BrokerRestart { minutes }
            | FaultKind::DatabankRestart { minutes }
            | FaultKind::Kill9 { minutes, .. }
            | FaultKind::LinkFault { minutes, .. } => Some(*minutes),
            FaultKind::ClockJump { .. } | FaultKind::DispenserJam { .. } => None,
        };
        if let Some(m) = lasts {
            out.push(Planned {
                minute: (start + m).min(minutes.saturating_sub(1)),
                act: Act::FaultEnd { index },
            });
        }
    }
    // Stable: within a minute, the order drawn above (devices in order, faults last).
    out.sort_by_key(|p| p.minute);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(s: &Scenario) -> Vec<DeviceInfo> {
        s.devices_with_groups()
            .map(|(_, g)| DeviceInfo {
                scene: s.devices[g].scene,
                pickups: true,
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let s = Scenario::demo();
        let d = devices(&s);
        let a = plan(&s, 7, &d, 360);
        assert_eq!(a, plan(&s, 7, &d, 360));
        assert_ne!(a, plan(&s, 8, &d, 360));
        assert!(a.windows(2).all(|w| w[0].minute <= w[1].minute));
    }

    #[test]
    fn traffic_follows_the_scene_hours() {
        let mut s = Scenario::demo();
        s.shoppers.peak_visits_per_hour = 600;
        let d = devices(&s);
        let p = plan(&s, 1, &d, 0);
        let visits_at = |device: usize, hour: u32| {
            p.iter()
                .filter(|x| x.minute / 60 == hour)
                .filter(|x| matches!(x.act, Act::Visit { device: v, .. } if v == device))
                .count()
        };
        // Transit (group 4): the 08:00 rush against the small hours.
        assert!(visits_at(4, 8) > 450, "{}", visits_at(4, 8));
        assert_eq!(visits_at(4, 3), 0);
        // Cinema (group 0): 19:00 busier than 10:00.
        assert!(visits_at(0, 19) > 3 * visits_at(0, 10));
    }

    #[test]
    fn a_pickup_comes_after_its_order_and_within_the_hold() {
        let s = Scenario::demo();
        let p = plan(&s, 3, &devices(&s), 360);
        for x in &p {
            if let Act::Pickup { device, order } = x.act {
                let placed = p
                    .iter()
                    .find(|o| matches!(o.act, Act::Order { device: d, order: n, .. } if d == device && n == order))
                    .unwrap();
                assert!(
                    placed.minute < x.minute && x.minute < placed.minute + s.orders.hold_minutes
                );
            }
        }
    }
}

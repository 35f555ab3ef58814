//! Pacing: spread a daily quota over the day in proportion to each hour's expected traffic.
//!
//! At the start of each local hour the quota still left today is divided over the hours
//! still to come, weighted by the scene's traffic curve; the current hour may hand out its
//! share. An hour that under-delivers leaves its share to the hours after it, so the plan
//! corrects itself as the day goes, the way ad servers pace a daily budget.

use caidan_profiles::Scene;

/// Expected relative traffic per local hour (0..24) for a scene. Rough shapes from the
/// venues' opening hours; the cloud may later send measured curves.
pub fn hourly_traffic(scene: Scene) -> [u32; 24] {
    match scene {
        //                 0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18 19 20 21 22 23
        Scene::Cinema => [
            3, 1, 0, 0, 0, 0, 0, 0, 0, 1, 3, 4, 5, 5, 5, 5, 6, 7, 9, 10, 10, 9, 7, 5,
        ],
        Scene::Community => [
            0, 0, 0, 0, 0, 0, 2, 5, 6, 4, 3, 3, 4, 3, 3, 3, 4, 6, 8, 8, 6, 4, 2, 1,
        ],
        Scene::Restaurant => [
            1, 0, 0, 0, 0, 0, 1, 3, 4, 2, 2, 7, 10, 8, 3, 2, 2, 5, 9, 10, 7, 4, 2, 1,
        ],
        Scene::Campus => [
            0, 0, 0, 0, 0, 0, 1, 4, 7, 6, 6, 8, 10, 7, 6, 6, 6, 8, 8, 6, 5, 4, 2, 1,
        ],
        Scene::Transit => [
            0, 0, 0, 0, 0, 1, 3, 9, 10, 6, 4, 4, 4, 4, 4, 4, 5, 8, 10, 8, 5, 3, 2, 1,
        ],
        Scene::Plaza => [
            0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 5, 6, 7, 7, 7, 7, 7, 7, 8, 9, 9, 7, 4, 1,
        ],
        Scene::Vending => [
            1, 1, 0, 0, 0, 1, 2, 4, 5, 4, 4, 5, 6, 5, 4, 4, 5, 6, 6, 5, 4, 3, 2, 1,
        ],
    }
}

/// How many claims an evenly paced offer may have handed out today by the end of `hour`,
/// given `used_before_hour` claims before this hour and a daily quota.
///
/// Never more than `daily_quota`: the hour's share is at most what is left.
pub fn allowed_through_hour(
    curve: &[u32; 24],
    hour: usize,
    daily_quota: u32,
    used_before_hour: u32,
) -> u32 {
    let remaining = daily_quota.saturating_sub(used_before_hour);
    let ahead: u64 = curve[hour..].iter().map(|&w| u64::from(w)).sum();
    let share = if ahead == 0 {
        // No traffic expected for the rest of the day: release what is left.
        u64::from(remaining)
    } else {
        // Round up so a small quota is not starved to zero in quiet hours.
        (u64::from(remaining) * u64::from(curve[hour])).div_ceil(ahead)
    };
    used_before_hour + (share.min(u64::from(remaining)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_day_of_unlimited_demand_spends_exactly_the_quota_spread_over_the_day() {
        let curve = hourly_traffic(Scene::Cinema);
        let quota = 240;
        let mut used = 0;
        let mut by_hour = [0u32; 24];
        for (hour, slot) in by_hour.iter_mut().enumerate() {
            let allowed = allowed_through_hour(&curve, hour, quota, used);
            *slot = allowed - used;
            used = allowed;
        }
        assert_eq!(used, quota);
        let before_10: u32 = by_hour[..10].iter().sum();
        assert!(before_10 < quota / 4, "not all before 10am: {by_hour:?}");
        assert!(
            by_hour[19] > by_hour[11],
            "evening gets more than late morning: {by_hour:?}"
        );
    }

    #[test]
    fn under_delivery_moves_to_later_hours() {
        let curve = hourly_traffic(Scene::Transit);
        let planned = allowed_through_hour(&curve, 12, 100, 20);
        let behind = allowed_through_hour(&curve, 12, 100, 5);
        assert!(behind - 5 >= planned - 20);
    }

    proptest! {
        #[test]
        fn pacing_never_releases_more_than_the_quota(
            scene in 0usize..7,
            quota in 1u32..100_000,
            demand in proptest::collection::vec(0u32..5_000, 24),
        ) {
            let curve = hourly_traffic(Scene::ALL[scene]);
            let mut used = 0u32;
            for (hour, want) in demand.iter().enumerate() {
                let allowed = allowed_through_hour(&curve, hour, quota, used);
                prop_assert!(allowed <= quota);
                prop_assert!(allowed >= used);
                used += (allowed - used).min(*want);
            }
            prop_assert!(used <= quota);
        }
    }
}

//! A filled-in [`Summary`] for the report's tests (unit tests here, the browser test in
//! `tests/report_browser.rs`): devices, samples, faults, a funnel, orders and one screen each.
use std::collections::BTreeMap;

use caidan_cloud::databank::funnel::FunnelRow;

use crate::check::Verdict;
use crate::drive::{FaultLog, Sample, Tally};
use crate::summary::{DeviceSummary, Orders, Summary, Timing};

/// `n` devices; device `i`'s outbox peaks at `3 * i`.
pub fn summary(n: usize) -> Summary {
    let scenes = ["cafe", "gym", "station"];
    let devices: Vec<DeviceSummary> = (0..n)
        .map(|i| DeviceSummary {
            id: format!("kiosk-{:02}", i + 1),
            scene: scenes[i % scenes.len()].into(),
            profile: "pi-zero-2w".into(),
            region: "eu-west".into(),
            tally: Tally {
                visits: 40 + i as u64,
                claims: 20,
                redemptions: 6,
                pickups: 2,
                ..Tally::default()
            },
            screens: vec![format!("screens/kiosk-{:02}-attract.png", i + 1)],
        })
        .collect();
    let samples: Vec<Sample> = (0..=24u32)
        .map(|k| Sample {
            minute: k * 5,
            stored: i64::from(k) * 37,
            outbox: (0..n)
                .map(|i| {
                    let peak = 3 * i as i64;
                    // Rises to the peak at minute 60, then drains.
                    peak - (peak * (i64::from(k) - 12).abs() / 12)
                })
                .collect(),
            offline: usize::from((10..14).contains(&k)),
        })
        .collect();
    let row = |key: &str, i: u64, p: u64, l: u64| FunnelRow {
        key: key.into(),
        awareness: 0,
        interest: i,
        purchase: p,
        loyalty: l,
    };
    let funnel = BTreeMap::from([
        (
            "Bolt".to_owned(),
            vec![
                row("cafe", 30, 9, 2),
                row("gym", 12, 4, 0),
                row("total", 42, 13, 2),
            ],
        ),
        (
            "Orbit".to_owned(),
            vec![row("station", 18, 5, 1), row("total", 18, 5, 1)],
        ),
    ]);
    let claims_per_hour = BTreeMap::from([
        (
            "cafe".to_owned(),
            BTreeMap::from([("07".into(), 5), ("08".into(), 9), ("09".into(), 3)]),
        ),
        (
            "gym".to_owned(),
            BTreeMap::from([("08".into(), 2), ("09".into(), 6)]),
        ),
    ]);
    Summary {
        scenario: "lunch rush".into(),
        seed: 42,
        start: "2025-03-01T07:00:00Z".into(),
        hours: 2,
        devices,
        tally: Tally {
            visits: 400,
            claims: 200,
            refused: BTreeMap::from([("quota".into(), 7)]),
            ..Tally::default()
        },
        events: BTreeMap::from([("com.caidan.claim".into(), 200)]),
        claims_per_hour,
        funnel,
        orders: Orders {
            reserved: 12,
            rejected: 1,
            picked_up: 9,
            expired: 2,
            dispense_failed: 1,
        },
        faults: vec![
            FaultLog {
                minute: 50,
                what: "broker down".into(),
            },
            FaultLog {
                minute: 90,
                what: "kiosk-02 killed (kill -9)".into(),
            },
        ],
        verdicts: vec![Verdict {
            promise: "every claim is stored once".into(),
            holds: true,
            checked: "200 claims".into(),
            breaches: vec![],
        }],
        all_hold: true,
        timing: Timing {
            wall_secs: 12.5,
            run_secs: 10.0,
            achieved_speed: 1440.0,
            peak_rss_kib: 30_000,
            events_per_sec: 640.0,
            samples,
        },
    }
}

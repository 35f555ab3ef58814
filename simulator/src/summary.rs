//! `summary.json`: every figure and verdict of a run, and the funnel per brand and scene as
//! the data bank computes it.

use std::collections::BTreeMap;

use anyhow::Result;
use caidan_cloud::databank::funnel::{self, FunnelRow, GroupBy};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::check::Verdict;
use crate::drive::{FaultLog, Outcome, Sample, Tally};

/// The brands of the demo catalogue, whose funnels the report shows.
pub fn brands() -> Vec<String> {
    let c: serde_json::Value =
        serde_json::from_str(caidan_agent::config::DEMO_CATALOGUE).expect("demo catalogue");
    let mut b: Vec<String> = c["offers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["brand"].as_str().map(str::to_owned))
        .collect();
    b.sort();
    b.dedup();
    b
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    pub id: String,
    pub scene: String,
    pub profile: String,
    pub region: String,
    pub tally: Tally,
    /// Relative paths of the screen PNGs in the report folder.
    pub screens: Vec<String>,
}

/// One order's fate, counted from the data bank.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Orders {
    pub reserved: u64,
    pub rejected: u64,
    pub picked_up: u64,
    pub expired: u64,
    pub dispense_failed: u64,
}

/// Figures that depend on timing (how fast this machine ran the steps), kept out of the
/// determinism promise: impressions (per-minute aggregation flushed on real time), sync lag,
/// outbox depth over time, wall time.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub wall_secs: f64,
    /// Wall time of the simulated span alone (start-up and the final drain excluded).
    pub run_secs: f64,
    /// Virtual seconds per real second achieved over the simulated span.
    pub achieved_speed: f64,
    pub events_per_sec: f64,
    /// Peak resident memory of the simulator process (in-process agents included), KiB.
    pub peak_rss_kib: u64,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub start: String,
    pub hours: u32,
    pub devices: Vec<DeviceSummary>,
    /// What shoppers and staff did and were answered, counted by the simulator.
    pub tally: Tally,
    /// Events the data bank stored, by type.
    pub events: BTreeMap<String, i64>,
    /// Claims per local hour (device time) per scene.
    pub claims_per_hour: BTreeMap<String, BTreeMap<String, i64>>,
    /// brand -> scene -> funnel row (the deterministic part: impressions excluded).
    pub funnel: BTreeMap<String, Vec<FunnelRow>>,
    pub orders: Orders,
    pub faults: Vec<FaultLog>,
    pub verdicts: Vec<Verdict>,
    pub all_hold: bool,
    pub timing: Timing,
}

impl Summary {
    /// The figures the same seed and scenario must reproduce exactly.
    pub fn deterministic(&self) -> serde_json::Value {
        serde_json::json!({
            "tally": self.tally,
            "claims_per_hour": self.claims_per_hour,
            "funnel": self.funnel,
            "orders": self.orders,
            "verdicts": self.verdicts.iter().map(|v| (&v.promise, v.holds)).collect::<Vec<_>>(),
        })
    }
}

/// Counts and funnels from the data bank's store, and everything else from the run.
pub fn summarize(
    o: &Outcome,
    scenario: &str,
    seed: u64,
    hours: u32,
    verdicts: Vec<Verdict>,
    screens: Vec<Vec<String>>,
) -> Result<Summary> {
    let bank = Connection::open_with_flags(&o.bank_store, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut events = BTreeMap::new();
    let mut stmt = bank.prepare("SELECT type, COUNT(*) FROM events GROUP BY type")?;
    for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (t, n) = r?;
        events.insert(t, n);
    }
    let mut claims_per_hour: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut stmt = bank.prepare(
        "SELECT scene, json_extract(body, '$.data.local_hour'), COUNT(*) FROM events
         WHERE type = 'com.caidan.claim' GROUP BY 1, 2",
    )?;
    for r in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (scene, hour, n) = r?;
        claims_per_hour
            .entry(scene)
            .or_default()
            .insert(format!("{hour:02}"), n);
    }
    let mut funnels = BTreeMap::new();
    for brand in brands() {
        let facts = funnel::load_facts(&bank, &brand, i64::MIN / 2, i64::MAX / 2)?
            .into_iter()
            // Impressions are aggregated per minute on real time: kept out of the
            // reproducible funnel (the dashboard's Awareness has them).
            .filter(|f| f.ty != Some(caidan_sync::contract::EventType::Impression));
        let (rows, total) = funnel::aggregate(&brand, GroupBy::Scene, facts);
        let mut rows = rows;
        rows.push(total);
        funnels.insert(brand, rows);
    }
    let mut orders = Orders::default();
    let mut stmt = bank.prepare(
        "SELECT order_state, COUNT(*) FROM events WHERE type = 'com.caidan.order'
         AND json_extract(body, '$.data.order') NOT LIKE 'egg-%' GROUP BY 1",
    )?;
    for r in stmt.query_map([], |r| {
        Ok((r.get::<_, Option<String>>(0)?, r.get::<_, u64>(1)?))
    })? {
        let (state, n) = r?;
        match state.as_deref() {
            Some("reserved") => orders.reserved = n,
            Some("rejected") => orders.rejected = n,
            Some("picked_up") => orders.picked_up = n,
            Some("expired") => orders.expired = n,
            Some("dispense_failed") => orders.dispense_failed = n,
            _ => {}
        }
    }
    let stored: i64 = events.values().sum();
    let devices = o
        .devices
        .iter()
        .zip(&o.tally_by_device)
        .zip(screens)
        .map(|((d, t), screens)| DeviceSummary {
            id: d.id.clone(),
            scene: d.scene.to_string(),
            profile: d.profile.clone(),
            region: d.region.clone(),
            tally: t.clone(),
            screens,
        })
        .collect();
    let all_hold = verdicts.iter().all(|v| v.holds);
    Ok(Summary {
        scenario: scenario.into(),
        seed,
        start: jiff::Timestamp::from_millisecond(o.start_ms)?.to_string(),
        hours,
        devices,
        tally: o.tally.clone(),
        events,
        claims_per_hour,
        funnel: funnels,
        orders,
        faults: o.faults.clone(),
        verdicts,
        all_hold,
        timing: Timing {
            wall_secs: o.wall.as_secs_f64(),
            run_secs: o.run.as_secs_f64(),
            achieved_speed: f64::from(hours) * 3600.0 / o.run.as_secs_f64().max(1e-9),
            peak_rss_kib: peak_rss_kib(),
            events_per_sec: stored as f64 / o.wall.as_secs_f64().max(1e-9),
            samples: o.samples.clone(),
        },
    })
}

/// VmHWM of this process, KiB (0 where /proc is not there).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

//! The simulator end to end: a short scenario with every kind of fault holds every promise,
//! two runs with one seed give the same funnel, and the checks catch a breach planted in
//! the data bank.

mod browser;

use std::process::Command;

use caidan_sim::scenario::Scenario;
use caidan_sim::{check, drive};

const FAULTS: &str = include_str!("faults.toml");

struct Quiet;
impl drive::Progress for Quiet {
    fn start(&self, _: u64) {}
    fn step(&self, _: u32, _: i64, _: i64, _: usize) {}
    fn phase(&self, _: &str) {}
    fn finish(&self) {}
}

fn run_cli(out: &std::path::Path) -> (bool, String, serde_json::Value) {
    let dir = out.parent().unwrap();
    let scenario = dir.join("faults.toml");
    std::fs::write(&scenario, FAULTS).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_caidan-sim"))
        .args(["run", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(out)
        .env("CI", "true")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    (o.status.success(), text, summary)
}

#[test]
fn every_fault_every_promise_and_the_same_funnel_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text, a) = run_cli(&dir.path().join("one"));
    assert!(ok, "{text}");
    for kind in [
        "link cut",
        "broker stopped",
        "data bank stopped",
        "kill -9",
        "wall clock jumped",
        "dispenser jams",
        "rollout",
    ] {
        assert!(text.contains(kind), "no {kind} in:\n{text}");
    }
    let verdicts = a["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 6, "{text}");
    assert!(verdicts.iter().all(|v| v["holds"] == true), "{text}");
    assert!(a["tally"]["claims"].as_u64().unwrap() > 20, "{text}");
    assert!(a["orders"]["picked_up"].as_u64().unwrap() > 0, "{text}");
    assert!(
        a["orders"]["dispense_failed"].as_u64().unwrap() > 0,
        "the jam: {text}"
    );
    let dir2 = dir.path().join("two");
    let (ok, text2, b) = run_cli(&dir2);
    assert!(ok, "{text2}");
    for k in ["tally", "claims_per_hour", "funnel", "orders"] {
        assert_eq!(a[k], b[k], "{k} differs between two runs with one seed");
    }
    // The screens of every device are in the report, and the real report opens in a
    // browser with every plot drawn and every screen loaded.
    for d in a["devices"].as_array().unwrap() {
        for s in d["screens"].as_array().unwrap() {
            assert!(dir.path().join("one").join(s.as_str().unwrap()).is_file());
        }
    }
    let page = dir.path().join("one/report.html").canonicalize().unwrap();
    let seen = browser::open(&page);
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["figures"].as_array().unwrap().len(), 5, "{seen}");
    assert_eq!(seen["imgs"], seen["imgs_loaded"], "{seen}");
    assert!(seen["imgs"].as_u64().unwrap() >= 6, "{seen}");
}

#[test]
fn the_checks_name_a_planted_breach() {
    // SAFETY of the environment: only this test sets it, before any thread reads it.
    unsafe { std::env::set_var("CAIDAN_SIM_EXE", env!("CARGO_BIN_EXE_caidan-sim")) };
    let mut s = Scenario::parse(FAULTS, "faults.toml").unwrap();
    s.time.hours = 1;
    s.faults.clear();
    s.rollout = None;
    s.devices.truncate(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outcome = rt.block_on(drive::run(&s, 5, &Quiet)).unwrap();
    assert!(check::all(&outcome).unwrap().iter().all(|v| v.holds));
    let bank = rusqlite::Connection::open(&outcome.bank_store).unwrap();
    // One event lost, one redemption twice, one stock figure below zero.
    let (device, seq): (String, i64) = bank
        .query_row(
            "SELECT device, seq FROM events WHERE type = 'com.caidan.claim' LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    bank.execute(
        "DELETE FROM events WHERE device = ?1 AND seq = ?2",
        rusqlite::params![device, seq],
    )
    .unwrap();
    let n = bank
        .execute(
            "INSERT INTO events (id, fleet, device, epoch, seq, type, time_ms, brand, offer, scene, shopper, count, brands, body)
             SELECT id || 'x', fleet, device, epoch, seq + 100000, type, time_ms, brand, offer, scene, shopper, count, brands, body
             FROM events WHERE type = 'com.caidan.redemption' LIMIT 1",
            [],
        )
        .unwrap();
    assert_eq!(n, 1, "the run redeemed something");
    bank.execute(
        "UPDATE events SET body = json_set(body, '$.data.on_hand', -1) WHERE rowid = (SELECT rowid FROM events WHERE type = 'com.caidan.stock' LIMIT 1)",
        [],
    )
    .unwrap();
    drop(bank);
    let verdicts = check::all(&outcome).unwrap();
    let failed: Vec<&check::Verdict> = verdicts.iter().filter(|v| !v.holds).collect();
    let text = format!("{failed:#?}");
    assert_eq!(failed.len(), 3, "{text}");
    assert!(
        text.contains(&device) && text.contains(&format!("missing [{seq}]")),
        "{text}"
    );
    assert!(text.contains("redeemed 2 times"), "{text}");
    assert!(text.contains("on hand -1"), "{text}");
}

//! The promises of DESIGN.md checked after a run, from what the data bank stored and what the
//! devices' stores hold. Each check gives a verdict and names every breach: what, where, when.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;

use crate::drive::Outcome;

/// One promise and how it fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub promise: String,
    pub holds: bool,
    /// What was checked, in numbers.
    pub checked: String,
    /// Every breach found (the first 50).
    pub breaches: Vec<String>,
}

fn verdict(promise: &str, checked: String, breaches: Vec<String>) -> Verdict {
    Verdict {
        promise: promise.into(),
        holds: breaches.is_empty(),
        checked,
        breaches: breaches.into_iter().take(50).collect(),
    }
}

fn open(path: &std::path::Path) -> Result<Connection> {
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?)
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Every check, in the order of DESIGN.md's promises.
pub fn all(o: &Outcome) -> Result<Vec<Verdict>> {
    let bank = open(&o.bank_store)?;
    Ok(vec![
        exactly_once(o, &bank)?,
        quotas(o, &bank)?,
        stock(&bank)?,
        codes_once(&bank)?,
        config(o)?,
        expired_released_once(o, &bank)?,
    ])
}

/// Every event a device made is in the data bank exactly once: for each device's store epoch,
/// sequence numbers 1..=last are all there, none twice.
fn exactly_once(o: &Outcome, bank: &Connection) -> Result<Verdict> {
    let mut breaches = Vec::new();
    let mut total = 0i64;
    if !o.drained {
        breaches.push("the outboxes did not drain within the time allowed after the run".into());
    }
    for d in &o.devices {
        let reader =
            caidan_agent::store::Reader::open(&caidan_agent::runtime::store_path(&d.data))?;
        let epoch = reader.epoch()?.to_string();
        let last = reader.outbox_stats()?.last_seq;
        total += last;
        let (count, distinct, lo, hi): (i64, i64, Option<i64>, Option<i64>) = bank.query_row(
            "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM events
             WHERE device = ?1 AND epoch = ?2",
            params![d.id, epoch],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        if count != distinct {
            breaches.push(format!(
                "{}: {} events stored twice (same seq)",
                d.id,
                count - distinct
            ));
        }
        if distinct != last || (last > 0 && (lo != Some(1) || hi != Some(last))) {
            let mut missing = Vec::new();
            let mut stmt = bank
                .prepare("SELECT seq FROM events WHERE device = ?1 AND epoch = ?2 ORDER BY seq")?;
            let have: Vec<i64> = stmt
                .query_map(params![d.id, epoch], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut it = have.iter().peekable();
            for seq in 1..=last {
                if it.next_if(|s| **s == seq).is_none() {
                    missing.push(seq);
                }
            }
            breaches.push(format!(
                "{}: the device wrote seq 1..={last} in epoch {epoch}, the data bank holds {distinct}; missing {:?}",
                d.id,
                &missing[..missing.len().min(10)]
            ));
        }
        let others: i64 = bank.query_row(
            "SELECT COUNT(*) FROM events WHERE device = ?1 AND epoch <> ?2",
            params![d.id, epoch],
            |r| r.get(0),
        )?;
        if others > 0 {
            breaches.push(format!(
                "{}: {others} events under another epoch (the store was recreated)",
                d.id
            ));
        }
    }
    Ok(verdict(
        "Every event generated on a device is in the data bank exactly once",
        format!("{total} events from {} devices", o.devices.len()),
        breaches,
    ))
}

/// The demo catalogue's quotas, per offer.
#[derive(Default)]
struct Quota {
    total: Option<i64>,
    per_device_per_day: Option<i64>,
    per_shopper: Option<i64>,
}

fn quotas_of_catalogue() -> HashMap<String, Quota> {
    let c: serde_json::Value =
        serde_json::from_str(caidan_agent::config::DEMO_CATALOGUE).expect("demo catalogue");
    c["offers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let q = &o["quota"];
            (
                o["id"].as_str().unwrap_or_default().to_owned(),
                Quota {
                    total: q["total"].as_i64(),
                    per_device_per_day: q["per_device_per_day"].as_i64(),
                    per_shopper: q["per_shopper"].as_i64(),
                },
            )
        })
        .collect()
}

/// No offer was claimed past its quota: per device in total, per device per local day (the
/// device's own clock and time zone), per shopper.
fn quotas(o: &Outcome, bank: &Connection) -> Result<Verdict> {
    let q = quotas_of_catalogue();
    let tz: HashMap<&str, jiff::tz::TimeZone> = o
        .devices
        .iter()
        .map(|d| (d.id.as_str(), d.config.timezone()))
        .collect();
    let mut total: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut daily: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
    let mut shopper: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let mut stmt = bank.prepare(
        "SELECT device, offer, shopper, time_ms FROM events WHERE type = 'com.caidan.claim'",
    )?;
    let mut claims = 0;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (device, offer, who, at) = row?;
        claims += 1;
        *total.entry((device.clone(), offer.clone())).or_default() += 1;
        let day = tz
            .get(device.as_str())
            .and_then(|z| {
                jiff::Timestamp::from_millisecond(at)
                    .ok()
                    .map(|t| t.to_zoned(z.clone()).date().to_string())
            })
            .unwrap_or_default();
        let e = daily
            .entry((device.clone(), offer.clone(), day))
            .or_insert((0, at));
        e.0 += 1;
        e.1 = e.1.max(at);
        if let Some(s) = who {
            *shopper.entry((device, offer, s)).or_default() += 1;
        }
    }
    let mut breaches = Vec::new();
    for ((device, offer), n) in &total {
        if let Some(max) = q.get(offer).and_then(|x| x.total)
            && *n > max
        {
            breaches.push(format!(
                "{device}: {offer} claimed {n} times, total quota {max}"
            ));
        }
    }
    for ((device, offer, day), (n, last)) in &daily {
        if let Some(max) = q.get(offer).and_then(|x| x.per_device_per_day)
            && *n > max
        {
            breaches.push(format!(
                "{device}: {offer} claimed {n} times on {day} (last at {}), daily quota {max}",
                time(*last)
            ));
        }
    }
    for ((device, offer, s), n) in &shopper {
        if let Some(max) = q.get(offer).and_then(|x| x.per_shopper)
            && *n > max
        {
            breaches.push(format!(
                "{device}: shopper {s} got {offer} {n} times, per-shopper quota {max}"
            ));
        }
    }
    Ok(verdict(
        "Quotas are never exceeded",
        format!("{claims} claims"),
        breaches,
    ))
}

/// Stock never below zero and reserved never above what is on hand, in every stock figure
/// any event reported.
fn stock(bank: &Connection) -> Result<Verdict> {
    let mut stmt = bank.prepare(
        "SELECT device, time_ms, type, body FROM events WHERE type IN ('com.caidan.stock', 'com.caidan.order')",
    )?;
    let mut breaches = Vec::new();
    let mut figures = 0;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (device, at, ty, body) = row?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let data = &v["data"];
        let levels: Vec<&serde_json::Value> = if ty == "com.caidan.stock" {
            vec![data]
        } else {
            data["stock"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        };
        for l in levels {
            figures += 1;
            let (on_hand, reserved) = (
                l["on_hand"].as_i64().unwrap_or(0),
                l["reserved"].as_i64().unwrap_or(0),
            );
            let sku = l["sku"].as_str().unwrap_or("?");
            if on_hand < 0 || reserved < 0 || reserved > on_hand {
                breaches.push(format!(
                    "{device}: {sku} at {}: on hand {on_hand}, reserved {reserved}",
                    time(at)
                ));
            }
        }
    }
    Ok(verdict(
        "Stock never goes below zero; reserved never exceeds stock",
        format!("{figures} stock figures"),
        breaches,
    ))
}

/// A claim redeemed at most once, a hold picked up at most once.
fn codes_once(bank: &Connection) -> Result<Verdict> {
    // (device, code or order, uses, last use) for everything used more than once.
    let twice = |sql: &str| -> Result<Vec<(String, String, i64, i64)>> {
        let mut stmt = bank.prepare(sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    let mut breaches = Vec::new();
    for (d, code, n, at) in twice(
        "SELECT device, json_extract(body, '$.data.claim_code'), COUNT(*), MAX(time_ms) FROM events
         WHERE type = 'com.caidan.redemption' GROUP BY device, 2 HAVING COUNT(*) > 1",
    )? {
        breaches.push(format!(
            "{d}: claim {code} redeemed {n} times (last at {})",
            time(at)
        ));
    }
    for (d, order, n, at) in twice(
        "SELECT device, json_extract(body, '$.data.order'), COUNT(*), MAX(time_ms) FROM events
         WHERE type = 'com.caidan.order' AND order_state = 'picked_up' GROUP BY device, 2 HAVING COUNT(*) > 1",
    )? {
        breaches.push(format!("{d}: {order} picked up {n} times (last at {})", time(at)));
    }
    let (redeemed, picked): (i64, i64) = bank.query_row(
        "SELECT SUM(type = 'com.caidan.redemption'), SUM(type = 'com.caidan.order' AND order_state = 'picked_up') FROM events",
        [],
        |r| Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), r.get::<_, Option<i64>>(1)?.unwrap_or(0))),
    )?;
    Ok(verdict(
        "No claim or pickup code is used twice",
        format!("{redeemed} redemptions, {picked} pickups"),
        breaches,
    ))
}

/// Every device runs the last fleet layer published.
fn config(o: &Outcome) -> Result<Verdict> {
    let mut breaches = Vec::new();
    let Some(version) = o.rollout_version else {
        return Ok(verdict(
            "Every device is on the last good config version",
            "no rollout in this scenario".into(),
            breaches,
        ));
    };
    for d in &o.devices {
        let reader =
            caidan_agent::store::Reader::open(&caidan_agent::runtime::store_path(&d.data))?;
        let layers = reader.config_layers()?;
        let fleet = layers
            .iter()
            .find(|l| l.layer == "fleet")
            .map(|l| l.version);
        if fleet != Some(version) {
            breaches.push(format!(
                "{}: fleet layer {fleet:?}, the rollout published v{version}",
                d.id
            ));
        }
    }
    Ok(verdict(
        "Every device is on the last good config version",
        format!("{} devices, fleet layer v{version}", o.devices.len()),
        breaches,
    ))
}

/// An order whose hold ended unclaimed is released exactly once and never handed over after.
fn expired_released_once(o: &Outcome, bank: &Connection) -> Result<Verdict> {
    let mut states: BTreeMap<(String, String), Vec<(String, i64)>> = BTreeMap::new();
    let mut stmt = bank.prepare(
        "SELECT device, json_extract(body, '$.data.order'), order_state, time_ms FROM events
         WHERE type = 'com.caidan.order' ORDER BY device, seq",
    )?;
    for r in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (d, order, state, at) = r?;
        states.entry((d, order)).or_default().push((state, at));
    }
    let mut breaches = Vec::new();
    let mut expired = 0;
    for ((d, order), s) in &states {
        let n = s.iter().filter(|(x, _)| x == "expired").count();
        expired += usize::from(n > 0);
        if n > 1 {
            breaches.push(format!("{d}: {order} released {n} times"));
        }
        if let Some(i) = s.iter().position(|(x, _)| x == "expired")
            && let Some((_, at)) = s[i + 1..].iter().find(|(x, _)| x == "picked_up")
        {
            breaches.push(format!(
                "{d}: {order} handed over at {} after its hold was released",
                time(*at)
            ));
        }
    }
    // Every order the simulator sent was answered: reserved or rejected, at least.
    for (device, id) in &o.orders {
        let d = &o.devices[*device].id;
        if !states.contains_key(&(d.clone(), id.clone())) {
            breaches.push(format!("{d}: order {id} was sent and never answered"));
        }
    }
    Ok(verdict(
        "Every expired reservation is released once",
        format!(
            "{} holds (orders and eggs held for pickup), {expired} expired",
            states.len()
        ),
        breaches,
    ))
}

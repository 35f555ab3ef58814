//! The HTTP API's reads on the PostgreSQL store. The funnel comes from the hourly rollups,
//! never from raw events.

use std::collections::HashMap;

use caidan_sync::contract::{EventType, Location};
use postgres::Client;
use postgres::types::ToSql;

use super::{DAY_MS, dim, grain};
use crate::databank::funnel::{self, FunnelRow, GroupBy};
use crate::databank::nearby::Candidate;
use crate::databank::store::dead_letter::DeadLetterRow;
use crate::databank::store::{DeviceRow, EpochRow};

/// The cells a query reads: whole UTC days at day grain, the hours before the first and
/// after the last whole day at hour grain; `[start, end)` each, empty when start == end.
struct Spans {
    days: (i64, i64),
    head: (i64, i64),
    tail: (i64, i64),
}

impl Spans {
    fn of(from_hour_ms: i64, to_hour_ms: i64) -> Spans {
        let first_day = (from_hour_ms + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
        let last_day = to_hour_ms.div_euclid(DAY_MS) * DAY_MS;
        if first_day >= last_day {
            return Spans {
                days: (0, 0),
                head: (from_hour_ms, to_hour_ms),
                tail: (0, 0),
            };
        }
        Spans {
            days: (first_day, last_day),
            head: (from_hour_ms, first_day),
            tail: (last_day, to_hour_ms),
        }
    }

    /// Hours only, for the hourly rows.
    fn hours(from_hour_ms: i64, to_hour_ms: i64) -> Spans {
        Spans {
            days: (0, 0),
            head: (from_hour_ms, to_hour_ms),
            tail: (0, 0),
        }
    }

    fn params(&self) -> [i64; 6] {
        [
            self.days.0,
            self.days.1,
            self.head.0,
            self.head.1,
            self.tail.0,
            self.tail.1,
        ]
    }
}

/// `SELECT {cols} FROM {table}` over the cells of `Spans` for brand `$1` and dim `$2`
/// (`$3`..`$8` the spans' bounds).
fn cells_sql(table: &str, cols: &str) -> String {
    let part = |g: i16, lo: u8, hi: u8| {
        format!(
            "SELECT {cols} FROM {table} WHERE brand = $1 AND dim = $2 AND grain = {g}
               AND start_ms >= ${lo} AND start_ms < ${hi}"
        )
    };
    format!(
        "{} UNION ALL {} UNION ALL {}",
        part(grain::DAY, 3, 4),
        part(grain::HOUR, 5, 6),
        part(grain::HOUR, 7, 8)
    )
}

/// Stage sums per key, and loyal shoppers per key.
type CellRows = (Vec<(String, i64, i64, i64)>, HashMap<String, i64>);

/// Rows of (key, awareness, interest, purchase) of `brand`'s cells of `d` over `spans`,
/// and (key, loyal shoppers: two or more purchases in the row) over `[from, to)`; keyed by
/// the cells' key or, `by_start`, by their hour.
fn cell_rows(
    c: &mut Client,
    brand: &str,
    d: i16,
    spans: &Spans,
    (from, to): (i64, i64),
    by_start: bool,
) -> Result<CellRows, postgres::Error> {
    let [a, b, h0, h1, t0, t1] = spans.params();
    let params: [&(dyn ToSql + Sync); 8] = [&brand, &d, &a, &b, &h0, &h1, &t0, &t1];
    let key = if by_start { "start_ms::text" } else { "key" };
    let stages = c.query(
        &format!(
            "SELECT k, sum(awareness)::int8, sum(interest)::int8, sum(purchase)::int8
             FROM ({}) AS c GROUP BY k",
            cells_sql(
                "funnel_cells",
                &format!("{key} AS k, awareness, interest, purchase")
            )
        ),
        &params,
    )?;
    // Purchases of a sorted list in [from, to): the elements up to to - 1 less those up to
    // from - 1 (`width_bucket` binary-searches). Only shoppers who bought since `from`.
    let loyal = if by_start {
        // Only shoppers with two or more purchases in the range can have two in one of
        // its hours; of those, only the slice of the list that lies in the range.
        c.query(
            "SELECT h::text, count(*) FROM (
               SELECT h FROM (
                 SELECT shopper, key, hours, width_bucket($3::int8 - 1, hours) AS lo,
                        width_bucket($4::int8 - 1, hours) AS hi
                 FROM funnel_shopper_hours
                 WHERE brand = $1 AND dim = $2 AND last_ms >= $3) AS s,
                 unnest(hours[lo + 1 : hi]) AS h
               WHERE hi - lo >= 2
               GROUP BY shopper, key, h HAVING count(*) >= 2) AS l
             GROUP BY h",
            &[&brand, &d, &from, &to],
        )?
    } else {
        c.query(
            "SELECT key, count(*) FROM funnel_shopper_hours
             WHERE brand = $1 AND dim = $2 AND last_ms >= $3
               AND width_bucket($4::int8 - 1, hours) - width_bucket($3::int8 - 1, hours) >= 2
             GROUP BY key",
            &[&brand, &d, &from, &to],
        )?
    };
    Ok((
        stages
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect(),
        loyal.iter().map(|r| (r.get(0), r.get(1))).collect(),
    ))
}

/// The funnel of `brand` over the whole UTC hours `[from_hour_ms, to_hour_ms)`: rows by
/// `by`, sorted by key, and the totals.
pub fn funnel(
    c: &mut Client,
    brand: &str,
    by: GroupBy,
    from_hour_ms: i64,
    to_hour_ms: i64,
) -> Result<(Vec<FunnelRow>, FunnelRow), postgres::Error> {
    let spans = Spans::of(from_hour_ms, to_hour_ms);
    let (d, row_spans) = match by {
        GroupBy::Touchpoint => (dim::TOUCHPOINT, &spans),
        GroupBy::Scene => (dim::SCENE, &spans),
        GroupBy::Offer => (dim::OFFER, &spans),
        GroupBy::Hour => (dim::ALL, &Spans::hours(from_hour_ms, to_hour_ms)),
    };
    let shown = |k: String| match by {
        GroupBy::Hour => k.parse().map_or(k, funnel::hour_key),
        _ if k.is_empty() => "(none)".to_owned(),
        _ => k,
    };
    let row = |key: String, (a, i, p): (i64, i64, i64), loyal: i64| FunnelRow {
        key,
        awareness: a as u64,
        interest: i as u64,
        purchase: p as u64,
        loyalty: loyal as u64,
    };
    let range = (from_hour_ms, to_hour_ms);
    let (stages, loyal) = cell_rows(c, brand, d, row_spans, range, by == GroupBy::Hour)?;
    let mut rows: Vec<FunnelRow> = stages
        .into_iter()
        .map(|(k, a, i, p)| {
            let l = loyal.get(&k).copied().unwrap_or(0);
            row(shown(k), (a, i, p), l)
        })
        .collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let (all, all_loyal) = cell_rows(c, brand, dim::ALL, &spans, range, false)?;
    let totals = all
        .into_iter()
        .fold(row("total".into(), (0, 0, 0), 0), |mut t, (_, a, i, p)| {
            t.awareness += a as u64;
            t.interest += i as u64;
            t.purchase += p as u64;
            t
        });
    let totals = FunnelRow {
        loyalty: all_loyal.values().sum::<i64>() as u64,
        ..totals
    };
    Ok((rows, totals))
}

/// The most recently seen dead letters first.
pub fn dead_letters(c: &mut Client, limit: usize) -> Result<Vec<DeadLetterRow>, postgres::Error> {
    let rows = c.query(
        "SELECT topic, reason, detail, size, sha256, head, first_ms, last_ms, count
         FROM dead_letters ORDER BY last_ms DESC, id DESC LIMIT $1",
        &[&(limit as i64)],
    )?;
    Ok(rows
        .iter()
        .map(|r| DeadLetterRow {
            topic: r.get(0),
            reason: r.get(1),
            detail: r.get(2),
            size: r.get(3),
            sha256: r.get(4),
            head: r.get(5),
            first_ms: r.get(6),
            last_ms: r.get(7),
            count: r.get(8),
        })
        .collect())
}

/// Every device's last state, and every epoch's progress (oldest update first).
pub fn devices(c: &mut Client) -> Result<(Vec<DeviceRow>, Vec<EpochRow>), postgres::Error> {
    let devices = c
        .query(
            "SELECT fleet, device, online, state, stock, updated_ms, lat, lon FROM devices
             ORDER BY fleet, device",
            &[],
        )?
        .iter()
        .map(|r| DeviceRow {
            fleet: r.get(0),
            device: r.get(1),
            online: r.get(2),
            state: r.get(3),
            stock: r.get(4),
            updated_ms: r.get(5),
            lat: r.get(6),
            lon: r.get(7),
        })
        .collect();
    let epochs = c
        .query(
            "SELECT fleet, device, epoch, contiguous FROM seq_progress ORDER BY updated_ms",
            &[],
        )?
        .iter()
        .map(|r| EpochRow {
            fleet: r.get(0),
            device: r.get(1),
            epoch: r.get(2),
            seq: r.get(3),
        })
        .collect();
    Ok((devices, epochs))
}

/// Touchpoints of `fleet` whose current epoch's latest level of `sku` has units available.
pub fn available(
    c: &mut Client,
    fleet: &str,
    sku: &str,
) -> Result<Vec<Candidate>, postgres::Error> {
    let rows = c.query(
        "SELECT s.device, s.on_hand, s.reserved, s.time_ms, d.lat, d.lon, d.online
         FROM stock_levels s
         LEFT JOIN devices d ON d.fleet = s.fleet AND d.device = s.device
         WHERE s.fleet = $1 AND s.sku = $2 AND s.on_hand > s.reserved
           AND s.epoch = (SELECT e.epoch FROM device_epochs e
                          WHERE e.fleet = s.fleet AND e.device = s.device
                          ORDER BY e.last_time_ms DESC, e.epoch DESC LIMIT 1)",
        &[&fleet, &sku],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let (lat, lon): (Option<f64>, Option<f64>) = (r.get(4), r.get(5));
            Candidate {
                device: r.get(0),
                on_hand: r.get::<_, i64>(1).clamp(0, u32::MAX.into()) as u32,
                reserved: r.get::<_, i64>(2).clamp(0, u32::MAX.into()) as u32,
                time_ms: r.get(3),
                location: lat.zip(lon).and_then(|(lat, lon)| Location::new(lat, lon)),
                online: r.get(6),
            }
        })
        .collect())
}

/// The config answers of a device: (epoch, seq, time_ms, body), oldest first.
pub fn config_events(
    c: &mut Client,
    fleet: &str,
    device: &str,
) -> Result<Vec<(String, i64, i64, String)>, postgres::Error> {
    // The type is spelled out so the planner can use the partial index on it.
    let rows = c.query(
        &format!(
            "SELECT epoch, seq, time_ms, body FROM events
             WHERE fleet = $1 AND device = $2 AND type = '{}' ORDER BY time_ms, seq",
            EventType::Config.as_str()
        ),
        &[&fleet, &device],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

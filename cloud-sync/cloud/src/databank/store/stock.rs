//! The latest stock level of each SKU at each touchpoint, kept from order events (their
//! `stock` array) and stock events in the transaction that stores them, and the read that
//! finds the touchpoints of a fleet with units of a SKU available.
//!
//! Which level is the latest:
//!
//! - Levels are kept per (fleet, device, epoch, SKU). Within one epoch the level with the
//!   highest `seq` wins: seqs are the device's own order of its facts, gapless, written in
//!   the same transaction as the change and untouched by the device's wall clock. An older
//!   event that arrives late (a redelivery, or two ingesters committing out of order) never
//!   replaces a newer level.
//! - Across epochs (the device's store was created anew) only the device's current epoch
//!   counts: the one whose latest event time (any event type, device clock) is the latest,
//!   ties broken by the greater epoch id. A device whose new store starts with its clock
//!   behind the old epoch's events keeps showing the old levels until its clock passes them.
//!
//! Both are functions of the set of stored events, not of the order in which they arrived,
//! so every ingester on a shared store converges on the same levels.

use caidan_sync::contract::{Event, EventData, Location, StockLevel};
use rusqlite::{Connection, params};

use super::StoreError;
use crate::databank::nearby::Candidate;

/// The stock levels `event` carries: an order's `stock` array, a stock event's level, or
/// none.
pub fn carried(event: &Event) -> std::borrow::Cow<'_, [StockLevel]> {
    match &event.data {
        EventData::Order(d) => std::borrow::Cow::Borrowed(&d.stock),
        EventData::Stock(d) => std::borrow::Cow::Owned(vec![d.level()]),
        _ => std::borrow::Cow::Borrowed(&[]),
    }
}

/// Records the stock levels `event` carries (order and stock events; others carry none).
/// Call it once for an event that was newly stored.
pub fn record(conn: &Connection, event: &Event, now_ms: i64) -> Result<(), StoreError> {
    let levels = carried(event);
    if levels.is_empty() {
        return Ok(());
    }
    let mut upsert = conn.prepare_cached(
        "INSERT INTO stock_levels
           (fleet, device, epoch, sku, on_hand, reserved, seq, time_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (fleet, device, epoch, sku) DO UPDATE SET
           on_hand = excluded.on_hand, reserved = excluded.reserved, seq = excluded.seq,
           time_ms = excluded.time_ms, updated_ms = excluded.updated_ms
         WHERE excluded.seq > stock_levels.seq",
    )?;
    let epoch = event.epoch.to_string();
    for l in levels.iter() {
        upsert.execute(params![
            event.fleet.as_str(),
            event.device.as_str(),
            epoch,
            l.sku.as_str(),
            l.on_hand,
            l.reserved,
            event.seq as i64,
            event.time.as_millisecond(),
            now_ms
        ])?;
    }
    Ok(())
}

/// Notes that an event of (fleet, device, epoch) with device time `time_ms` was stored: the
/// epoch with the latest such time is the device's current one.
pub fn note_epoch_time(
    conn: &Connection,
    fleet: &str,
    device: &str,
    epoch: &str,
    time_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO device_epochs (fleet, device, epoch, last_time_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (fleet, device, epoch) DO UPDATE SET
           last_time_ms = MAX(device_epochs.last_time_ms, excluded.last_time_ms)",
    )?
    .execute(params![fleet, device, epoch, time_ms])?;
    Ok(())
}

/// Touchpoints of `fleet` whose current epoch's latest level of `sku` has units available,
/// with the location and online flag of their last state message.
pub fn available(conn: &Connection, fleet: &str, sku: &str) -> rusqlite::Result<Vec<Candidate>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.device, s.on_hand, s.reserved, s.time_ms, d.lat, d.lon, d.online
         FROM stock_levels s
         LEFT JOIN devices d ON d.fleet = s.fleet AND d.device = s.device
         WHERE s.fleet = ?1 AND s.sku = ?2 AND s.on_hand > s.reserved
           AND s.epoch = (SELECT e.epoch FROM device_epochs e
                          WHERE e.fleet = s.fleet AND e.device = s.device
                          ORDER BY e.last_time_ms DESC, e.epoch DESC LIMIT 1)",
    )?;
    let rows = stmt.query_map(params![fleet, sku], |r| {
        let (lat, lon): (Option<f64>, Option<f64>) = (r.get(4)?, r.get(5)?);
        Ok(Candidate {
            device: r.get(0)?,
            on_hand: r.get(1)?,
            reserved: r.get(2)?,
            time_ms: r.get(3)?,
            location: lat.zip(lon).and_then(|(lat, lon)| Location::new(lat, lon)),
            online: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// The level of `sku` at `device` as [`available`] would judge it (units available or
/// not), or `None` when the device's current epoch has none: for tests and the operator.
pub fn current_level(
    conn: &Connection,
    fleet: &str,
    device: &str,
    sku: &str,
) -> rusqlite::Result<Option<(u32, u32)>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(
        "SELECT s.on_hand, s.reserved FROM stock_levels s
         WHERE s.fleet = ?1 AND s.device = ?2 AND s.sku = ?3
           AND s.epoch = (SELECT e.epoch FROM device_epochs e
                          WHERE e.fleet = s.fleet AND e.device = s.device
                          ORDER BY e.last_time_ms DESC, e.epoch DESC LIMIT 1)",
    )?
    .query_row(params![fleet, device, sku], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

#[cfg(test)]
#[path = "stock_tests.rs"]
mod tests;

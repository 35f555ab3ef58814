//! What the writer keeps in memory between commits: the engine, quota counters, stock and
//! the next outbox sequence. Always reloadable from the store, and reloaded whenever a
//! commit fails or another process changed the store.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::tz::TimeZone;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rusqlite::{Connection, OptionalExtension};

use caidan_sync::contract::Name;
use uuid::Uuid;

use super::StoreError;
use super::schema;
use super::windows::Windows;
use crate::catalogue::Offer;
use crate::engine::quota::{OfferCount, QuotaBook};
use crate::engine::{EggEngine, Moment, Pool, Touchpoint};
use crate::events::{EventBuilder, Source};
use crate::inventory::{Hold, Level, StockBook};
use crate::pickup::PickupHasher;

/// Stock levels and the open holds, as stored. A hold left `dispensing` by a crash is open
/// again: its units never counted as handed out.
fn load_stock(conn: &Connection) -> Result<StockBook, StoreError> {
    let mut book = StockBook::default();
    let mut stmt = conn.prepare("SELECT sku, quantity, reserved FROM stock")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let sku: String = r.get(0)?;
        let (on_hand, reserved): (i64, i64) = (r.get(1)?, r.get(2)?);
        if !(0..=on_hand).contains(&reserved) || on_hand > i64::from(u32::MAX) {
            return Err(StoreError::StockOutOfStep { sku });
        }
        let level = Level {
            on_hand: on_hand as u32,
            reserved: reserved as u32,
        };
        book.load_level(&sku, level);
    }
    let mut stmt = conn.prepare(
        "SELECT id, lines, expires_ms FROM holds WHERE state IN ('reserved', 'dispensing')",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let lines: String = r.get(1)?;
        let lines =
            super::ops::parse_hold_lines(&lines).map_err(|reason| StoreError::HoldUnreadable {
                id: id.clone(),
                reason,
            })?;
        let hold = Hold {
            lines,
            expires_ms: r.get(2)?,
            dispensing: false,
        };
        book.load_hold(&id, hold);
    }
    Ok(book)
}

/// Who the device is: fixed for the writer's life.
#[derive(Debug, Clone)]
pub struct Identity {
    pub fleet: Name,
    pub touchpoint: Touchpoint,
    pub tz: TimeZone,
    /// New claims one QR window may hand out.
    pub claims_per_window: u32,
    /// Hashes pickup codes, and derives those of egg holds.
    pub pickups: PickupHasher,
    /// The vending machine's dispenser, whose slots orders must fit.
    pub dispenser: Option<std::sync::Arc<dyn crate::inventory::dispenser::Dispenser>>,
    /// This run of the agent (from its guarded clock), stamped on every event.
    pub boot: Option<Uuid>,
}

/// The store's epoch, as written when the store was created.
pub fn epoch(conn: &Connection) -> Result<Uuid, StoreError> {
    let text = schema::meta(conn, "epoch")?.ok_or(StoreError::MissingMeta("epoch"))?;
    text.parse().map_err(|_| StoreError::BadEpoch(text))
}

pub(crate) struct State {
    pub engine: EggEngine,
    pub tz: TimeZone,
    pub book: QuotaBook,
    pub stock: StockBook,
    pub pickups: PickupHasher,
    pub next_seq: i64,
    pub depth: i64,
    pub events: EventBuilder,
    pub catalogue_version: u64,
    pub codes: StdRng,
    /// Offers on screen, rebuilt each second it is needed.
    pub pool: Pool,
    /// Full offers (with their copy) recently handed out, by rule index.
    pub offers: HashMap<usize, Arc<Offer>>,
    /// New claims and scanners of the current and previous QR windows.
    pub windows: Windows,
}

impl State {
    /// The offer pool for `at`, rebuilt when the second has changed.
    pub fn pool_for(&mut self, at: &Moment) -> &Pool {
        if !self.pool.is_for(at) {
            self.pool = self.engine.pool(at);
        }
        &self.pool
    }

    pub fn load(conn: &Connection, id: &Identity) -> Result<Self, StoreError> {
        let epoch = epoch(conn)?;
        let catalogue_version = schema::meta(conn, "catalogue_version")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Offers stream into the engine one at a time, which keeps only what it decides with.
        let mut stmt = conn.prepare("SELECT id, json FROM offers ORDER BY id")?;
        let mut failure = None;
        let offers = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?
            .map_while(|row| {
                let parsed = row.map_err(StoreError::from).and_then(|(id, json)| {
                    serde_json::from_str::<Offer>(&json)
                        .map_err(|source| StoreError::OfferUnreadable { id, source })
                });
                parsed.map_err(|e| failure = Some(e)).ok()
            });
        let engine = EggEngine::new(offers, id.touchpoint.clone());
        if let Some(e) = failure {
            return Err(e);
        }
        let mut book = QuotaBook::default();
        let mut stmt = conn.prepare(
            "SELECT offer_id, total, day, day_count, hour, hour_count FROM quota_counters",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let day: Option<String> = r.get(2)?;
            book.set(
                &id,
                OfferCount {
                    total: r.get(1)?,
                    day: day.and_then(|d| d.parse().ok()),
                    day_count: r.get(3)?,
                    hour: r.get(4)?,
                    hour_count: r.get(5)?,
                },
            );
        }
        let stock = load_stock(conn)?;
        // sqlite_sequence keeps the high-water mark after trimmed rows are gone.
        let last_seq: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let depth: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
        let source = Source {
            fleet: id.fleet.clone(),
            device: id.touchpoint.device.clone(),
            epoch,
            scene: id.touchpoint.scene,
            boot: id.boot,
        };
        Ok(State {
            engine,
            tz: id.tz.clone(),
            book,
            stock,
            pickups: id.pickups.clone(),
            next_seq: last_seq + 1,
            depth,
            events: EventBuilder::new(source),
            catalogue_version,
            codes: StdRng::from_os_rng(),
            pool: Pool::default(),
            offers: HashMap::new(),
            windows: Windows::new(id.claims_per_window),
        })
    }
}

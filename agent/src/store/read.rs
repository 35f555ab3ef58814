//! Read-only queries on their own connection; WAL lets them run beside the writer.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::schema::{self, Access};
use super::{HoldView, StoreError, ops};

/// One outbox record: its sequence number and CloudEvents JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub json: String,
}

/// A claim as listed for staff and operators.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimListing {
    pub claim_code: String,
    pub offer_id: String,
    pub brand: String,
    pub kind: String,
    pub fallback: bool,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub redeemed_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxStats {
    pub epoch: String,
    pub depth: i64,
    pub first_seq: Option<i64>,
    pub last_seq: i64,
    pub by_type: Vec<(String, i64)>,
    pub bytes: i64,
    /// Bytes of store pages in use (the whole store, not only the outbox).
    pub store_used_bytes: u64,
}

/// A read-only view of the store, shareable across threads.
#[derive(Debug)]
pub struct Reader {
    conn: Mutex<Connection>,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: Mutex::new(schema::open(path, Access::Reader, 0)?),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    pub fn epoch(&self) -> Result<uuid::Uuid, StoreError> {
        self.with(super::state::epoch)
    }

    /// Up to `max` outbox records after `after`, ascending.
    pub fn outbox_after(&self, after: i64, max: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, json FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after, max as i64], |r| {
                    Ok(OutboxRow {
                        seq: r.get(0)?,
                        json: r.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.with(|c| {
            let epoch = schema::meta(c, "epoch")?.unwrap_or_default();
            let (depth, first_seq, bytes): (i64, Option<i64>, Option<i64>) = c.query_row(
                "SELECT count(*), min(seq), sum(length(json)) FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let last_seq: i64 = c.query_row(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
                [],
                |r| r.get(0),
            )?;
            let by_type = c
                .prepare("SELECT type, count(*) FROM outbox GROUP BY type ORDER BY type")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(OutboxStats {
                epoch,
                depth,
                first_seq,
                last_seq,
                by_type,
                bytes: bytes.unwrap_or(0),
                store_used_bytes: schema::used_bytes(c)?,
            })
        })
    }

    /// Most recent claims first.
    pub fn claims(&self, limit: usize) -> Result<Vec<ClaimListing>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT c.code, c.offer_id, c.brand, c.kind, c.fallback, c.created_ms, c.expires_ms, r.redeemed_ms
                 FROM claims c LEFT JOIN redemptions r ON r.claim_code = c.code ORDER BY c.id DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok(ClaimListing {
                        claim_code: r.get(0)?,
                        offer_id: r.get(1)?,
                        brand: r.get(2)?,
                        kind: r.get(3)?,
                        fallback: r.get(4)?,
                        created_ms: r.get(5)?,
                        expires_ms: r.get(6)?,
                        redeemed_ms: r.get(7)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Open holds (waiting orders and egg holds), soonest to end first.
    pub fn open_holds(&self, limit: usize) -> Result<Vec<HoldView>, StoreError> {
        self.holds_where(
            "state IN ('reserved', 'dispensing') ORDER BY expires_ms",
            limit,
        )
    }

    /// Hand-overs, most recent first.
    pub fn handovers(&self, limit: usize) -> Result<Vec<HoldView>, StoreError> {
        self.holds_where("state = 'picked_up' ORDER BY closed_ms DESC", limit)
    }

    /// A hold by id.
    pub fn hold(&self, id: &str) -> Result<Option<HoldView>, StoreError> {
        self.with(|c| Ok(ops::find_hold(c, id)?.map(|h| h.view())))
    }

    fn holds_where(&self, clause: &str, limit: usize) -> Result<Vec<HoldView>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {} FROM holds WHERE {clause} LIMIT ?1",
                ops::HOLD_COLUMNS
            ))?;
            let rows = stmt
                .query_map([limit as i64], ops::hold_from_row)?
                .map(|r| r.map(|h| h.view()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Every SKU's stock, by SKU.
    pub fn stock(&self) -> Result<Vec<StockListing>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT sku, quantity, reserved FROM stock ORDER BY sku")?;
            let rows = stmt
                .query_map([], stock_listing)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// One SKU's stock; `None` for a SKU never stocked here.
    pub fn stock_of(&self, sku: &str) -> Result<Option<StockListing>, StoreError> {
        self.with(|c| {
            Ok(
                c.prepare_cached("SELECT sku, quantity, reserved FROM stock WHERE sku = ?1")?
                    .query_row([sku], stock_listing)
                    .optional()?,
            )
        })
    }

    /// The config layers applied, as stored: `(layer, target, version, digest, document)`.
    pub fn config_layers(&self) -> Result<Vec<StoredLayer>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT layer, target, version, digest, document FROM config_layers",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredLayer {
                    layer: r.get(0)?,
                    target: r.get(1)?,
                    version: r.get::<_, i64>(2)? as u64,
                    digest: r.get(3)?,
                    document: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// A meta value, when set.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
    }

    /// Row counts of the main tables, for tests and `outbox stats`.
    pub fn count(&self, table: Table) -> Result<i64, StoreError> {
        self.with(|c| {
            Ok(
                c.query_row(&format!("SELECT count(*) FROM {}", table.name()), [], |r| {
                    r.get(0)
                })?,
            )
        })
    }
}

/// A SKU's stock as staff see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct StockListing {
    pub sku: String,
    pub on_hand: u32,
    pub reserved: u32,
    pub available: u32,
}

fn stock_listing(r: &rusqlite::Row<'_>) -> rusqlite::Result<StockListing> {
    let (on_hand, reserved): (u32, u32) = (r.get(1)?, r.get(2)?);
    Ok(StockListing {
        sku: r.get(0)?,
        on_hand,
        reserved,
        available: on_hand.saturating_sub(reserved),
    })
}

/// Tables whose rows can be counted.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Claims,
    Redemptions,
    Outbox,
    Offers,
    Holds,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Claims => "claims",
            Table::Redemptions => "redemptions",
            Table::Outbox => "outbox",
            Table::Offers => "offers",
            Table::Holds => "holds",
        }
    }
}

/// One applied config layer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayer {
    pub layer: String,
    pub target: String,
    pub version: u64,
    pub digest: String,
    /// The signed payload (JSON).
    pub document: String,
}

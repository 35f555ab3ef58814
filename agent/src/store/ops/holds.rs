//! Holds in the store: the rows behind pickup orders and product and sample eggs, the stock
//! columns they move, and the order event each change records.

use caidan_sync::contract::{
    DispenseFault, EventData, Handover, Ident, OrderData, OrderLine, OrderRejection, OrderState,
    ShopperHash, StockLevel,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::events::NewEvent;
use crate::inventory::Units;
use crate::pickup::CodeHash;
use crate::store::state::State;
use crate::store::{HoldView, LineView, StoreError};

use super::Now;

/// Hold states as stored; `reserved` and `dispensing` are open.
pub(super) mod states {
    pub const RESERVED: &str = "reserved";
    pub const DISPENSING: &str = "dispensing";
    pub const REJECTED: &str = "rejected";
    pub const PICKED_UP: &str = "picked_up";
    pub const EXPIRED: &str = "expired";
    pub const CANCELLED: &str = "cancelled";
    pub const RELEASED: &str = "released";
}

/// Order ids the device keeps for the holds of its own eggs.
pub const EGG_PREFIX: &str = "egg-";

/// One row of `holds`.
#[derive(Debug, Clone)]
pub(crate) struct HoldRow {
    pub id: String,
    pub state: String,
    pub code_hash: String,
    pub lines: Vec<Units>,
    pub expires_ms: i64,
    pub created_ms: i64,
    pub closed_ms: Option<i64>,
    pub shopper: Option<String>,
    pub brand: Option<String>,
    pub offer: Option<String>,
    pub handed_by: Option<String>,
}

impl HoldRow {
    pub fn is_open(&self) -> bool {
        self.state == states::RESERVED || self.state == states::DISPENSING
    }

    pub fn view(&self) -> HoldView {
        HoldView {
            id: self.id.clone(),
            state: self.state.clone(),
            lines: self
                .lines
                .iter()
                .map(|u| LineView {
                    sku: u.sku.clone(),
                    qty: u.qty,
                })
                .collect(),
            expires_ms: self.expires_ms,
            created_ms: self.created_ms,
            closed_ms: self.closed_ms,
            brand: self.brand.clone(),
            offer: self.offer.clone(),
            handed_by: self.handed_by.clone(),
        }
    }
}

pub(crate) const HOLD_COLUMNS: &str = "id, state, code_hash, lines, expires_ms, created_ms, closed_ms, shopper, brand, offer, handed_by";

pub(crate) fn hold_from_row(r: &Row<'_>) -> rusqlite::Result<HoldRow> {
    let id: String = r.get(0)?;
    let lines: String = r.get(3)?;
    let lines = parse_lines(&lines).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(HoldRow {
        id,
        state: r.get(1)?,
        code_hash: r.get(2)?,
        lines,
        expires_ms: r.get(4)?,
        created_ms: r.get(5)?,
        closed_ms: r.get(6)?,
        shopper: r.get(7)?,
        brand: r.get(8)?,
        offer: r.get(9)?,
        handed_by: r.get(10)?,
    })
}

pub(super) fn lines_json(lines: &[Units]) -> String {
    let views: Vec<LineView> = lines
        .iter()
        .map(|u| LineView {
            sku: u.sku.clone(),
            qty: u.qty,
        })
        .collect();
    serde_json::to_string(&views).expect("lines always serialise")
}

pub fn parse_lines(text: &str) -> Result<Vec<Units>, String> {
    let views: Vec<LineView> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(views
        .into_iter()
        .map(|v| Units {
            sku: v.sku,
            qty: v.qty,
        })
        .collect())
}

pub(crate) fn find_by_id(conn: &Connection, id: &str) -> Result<Option<HoldRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"))?
        .query_row([id], hold_from_row)
        .optional()?)
}

/// The most recent hold with this pickup code: the open one if any (codes are unique
/// among open holds), else the last closed one.
pub(super) fn find_by_code(
    conn: &Connection,
    code: &CodeHash,
) -> Result<Option<HoldRow>, StoreError> {
    let hex = code.to_hex();
    let row = conn
        .prepare_cached(&format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE code_hash = ?1
             ORDER BY state IN ('reserved', 'dispensing') DESC, created_ms DESC LIMIT 1"
        ))?
        .query_row([&hex], hold_from_row)
        .optional()?;
    // The index found it by equality; compare again in constant time all the same.
    Ok(row.filter(|h| CodeHash::from_hex(&h.code_hash).is_some_and(|s| s.matches(code))))
}

/// Whether an open hold already uses this pickup code.
pub(super) fn code_in_use(conn: &Connection, code: &CodeHash) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM holds WHERE code_hash = ?1 AND state IN ('reserved', 'dispensing')",
        )?
        .query_row([code.to_hex()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// A new hold row.
pub(super) struct NewHold<'a> {
    pub id: &'a str,
    pub state: &'a str,
    pub code: &'a CodeHash,
    pub lines: &'a [Units],
    pub expires_ms: i64,
    pub shopper: Option<&'a ShopperHash>,
    pub brand: Option<&'a Ident>,
    pub offer: Option<&'a Ident>,
    pub claim_code: Option<&'a str>,
}

pub(super) fn insert(conn: &Connection, now: Now, h: NewHold<'_>) -> Result<(), StoreError> {
    let open = h.state == states::RESERVED;
    conn.prepare_cached(
        "INSERT INTO holds (id, state, code_hash, lines, expires_ms, created_ms, closed_ms, shopper, brand, offer, claim_code)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        h.id,
        h.state,
        h.code.to_hex(),
        lines_json(h.lines),
        h.expires_ms,
        now.ms,
        (!open).then_some(now.ms),
        h.shopper.map(|s| s.as_str()),
        h.brand.map(|b| b.as_str()),
        h.offer.map(|o| o.as_str()),
        h.claim_code,
    ])?;
    Ok(())
}

/// Closes a hold in the store (`picked_up`, `expired`, `cancelled`, `released`).
pub(super) fn close(
    conn: &Connection,
    id: &str,
    state: &str,
    now: Now,
    by: Option<Handover>,
) -> Result<(), StoreError> {
    let by = by.map(|b| match b {
        Handover::Staff => "staff",
        Handover::Dispenser => "dispenser",
    });
    conn.prepare_cached(
        "UPDATE holds SET state = ?2, closed_ms = ?3, handed_by = ?4 WHERE id = ?1",
    )?
    .execute(params![id, state, now.ms, by])?;
    Ok(())
}

/// Sets an open hold's state and remaining lines.
pub(super) fn reopen(
    conn: &Connection,
    id: &str,
    state: &str,
    lines: &[Units],
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE holds SET state = ?2, lines = ?3 WHERE id = ?1")?
        .execute(params![id, state, lines_json(lines)])?;
    Ok(())
}

/// Moves units of each line in the stock table: `reserved += sign * qty`, and when
/// `taken`, `quantity -= qty` as well (they left the machine). Refuses, as corruption,
/// a change the stored row cannot take.
pub(super) fn move_units(
    conn: &Connection,
    lines: &[Units],
    reserve: i64,
    taken: bool,
) -> Result<(), StoreError> {
    for l in lines {
        let q = i64::from(l.qty);
        let n = conn
            .prepare_cached(
                "UPDATE stock SET reserved = reserved + ?2, quantity = quantity - ?3
                 WHERE sku = ?1 AND reserved + ?2 >= 0 AND quantity - ?3 >= reserved + ?2",
            )?
            .execute(params![l.sku, reserve * q, if taken { q } else { 0 }])?;
        if n != 1 {
            return Err(StoreError::StockOutOfStep { sku: l.sku.clone() });
        }
    }
    Ok(())
}

/// The wire levels of `lines`' SKUs once `reserve * qty` more are reserved and, when
/// `taken`, `qty` fewer are on hand.
pub(super) fn levels_after(
    st: &State,
    lines: &[Units],
    reserve: i64,
    taken: bool,
) -> Vec<StockLevel> {
    lines
        .iter()
        .map(|l| {
            let mut level = st.stock.report(&l.sku);
            let q = i64::from(l.qty);
            level.reserved = (i64::from(level.reserved) + reserve * q).max(0) as u32;
            if taken {
                level.on_hand = level.on_hand.saturating_sub(l.qty);
            }
            level
        })
        .collect()
}

/// The wire form of lines (SKUs were checked on entry).
pub(super) fn wire_lines(lines: &[Units]) -> Result<Vec<OrderLine>, StoreError> {
    lines
        .iter()
        .map(|l| {
            Ok(OrderLine {
                sku: Ident::new(l.sku.as_str())?,
                qty: l.qty,
            })
        })
        .collect()
}

/// What an order event says, beyond the hold itself.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Change {
    pub reason: Option<OrderRejection>,
    pub fault: Option<DispenseFault>,
    pub by: Option<Handover>,
}

/// The `com.caidan.order` event of a hold's new `state`.
pub(super) fn order_event(
    st: &State,
    now: Now,
    hold: &HoldRow,
    state: OrderState,
    change: Change,
    stock: Vec<StockLevel>,
) -> Result<NewEvent, StoreError> {
    let ident = |v: &Option<String>| -> Result<Option<Ident>, StoreError> {
        v.as_deref().map(Ident::new).transpose().map_err(Into::into)
    };
    let brand = ident(&hold.brand)?;
    let offer = ident(&hold.offer)?;
    let shopper = hold.shopper.as_deref().map(ShopperHash::new).transpose()?;
    Ok(NewEvent {
        subject: offer.clone(),
        brand: brand.clone(),
        data: EventData::Order(OrderData {
            order: Ident::new(hold.id.as_str())?,
            state,
            reason: change.reason,
            fault: change.fault,
            by: change.by,
            lines: wire_lines(&hold.lines)?,
            stock,
            shopper,
            brand,
            offer,
            scene: st.events.source().scene,
            uptime_ms: now.uptime(),
        }),
    })
}

//! Units on hand changed by staff, the CLI or the store system: restock, count, damage.

use caidan_sync::contract::{EventData, StockData, StockReason};
use rusqlite::{Connection, params};

use super::{Now, write_event};
use crate::events::NewEvent;
use crate::inventory::StockRefusal;
use crate::store::state::State;
use crate::store::{StockAfter, StockChange, StockUpdate, StoreError};

/// Longest note kept with a stock change.
pub const MAX_NOTE_CHARS: usize = caidan_sync::contract::inventory::MAX_NOTE_CHARS;

/// Applies one stock change with its event, or refuses it and changes nothing. Units on
/// hand never go below what is reserved; a SKU is created by a restock or a count.
pub fn change_stock(
    conn: &Connection,
    st: &mut State,
    now: Now,
    update: &StockUpdate,
) -> Result<Result<StockAfter, StockRefusal>, StoreError> {
    let sku = update.sku.as_str();
    let create = matches!(
        update.reason,
        StockReason::Restock | StockReason::Count | StockReason::Cloud | StockReason::Catalogue
    );
    let before = st.stock.level(sku).map_or(0, |l| l.on_hand);
    let planned = match update.change {
        StockChange::Set(n) => st.stock.plan_set(sku, n, create),
        StockChange::Delta(d) => st.stock.plan_adjust(sku, d, create),
    };
    let level = match planned {
        Ok(l) => l,
        Err(r) => return Ok(Err(r)),
    };
    conn.prepare_cached(
        "INSERT INTO stock (sku, quantity, reserved) VALUES (?1, ?2, ?3)
         ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity",
    )?
    .execute(params![sku, level.on_hand, level.reserved])?;
    let note = update
        .note
        .as_ref()
        .map(|n| n.chars().take(MAX_NOTE_CHARS).collect::<String>())
        .filter(|n| !n.trim().is_empty());
    let event = NewEvent {
        subject: None,
        brand: None,
        data: EventData::Stock(StockData {
            sku: update.sku.clone(),
            on_hand: level.on_hand,
            reserved: level.reserved,
            delta: i64::from(level.on_hand) - i64::from(before),
            reason: update.reason,
            note,
            scene: st.events.source().scene,
            uptime_ms: now.uptime(),
        }),
    };
    write_event(conn, st, now, event)?;
    st.stock.apply(sku, level);
    Ok(Ok(StockAfter {
        on_hand: level.on_hand,
        reserved: level.reserved,
        available: level.available(),
    }))
}

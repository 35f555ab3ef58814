//! Importing a validated catalogue.

use caidan_sync::contract::{Ident, StockReason};
use rusqlite::{Connection, params};
use serde_json::json;

use super::Now;
use crate::catalogue::Catalogue;
use crate::store::state::State;
use crate::store::{ImportSummary, StockChange, StockUpdate, StoreError};

/// Replaces offers and segments with a validated catalogue; stock only for new SKUs, each
/// with its stock event.
pub fn import(
    conn: &Connection,
    st: &mut State,
    now: Now,
    cat: &Catalogue,
) -> Result<ImportSummary, StoreError> {
    conn.execute("DELETE FROM offers", [])?;
    {
        let mut ins = conn.prepare_cached("INSERT INTO offers (id, json) VALUES (?1, ?2)")?;
        for o in &cat.offers {
            let json = serde_json::to_string(o).map_err(|source| StoreError::OfferUnreadable {
                id: o.id.clone(),
                source,
            })?;
            ins.execute(params![o.id, json])?;
        }
    }
    conn.execute("DELETE FROM segments", [])?;
    {
        let mut ins =
            conn.prepare_cached("INSERT INTO segments (shopper, tags) VALUES (?1, ?2)")?;
        for (shopper, tags) in &cat.segments {
            ins.execute(params![shopper, json!(tags).to_string()])?;
        }
    }
    let mut new_skus = 0;
    for (sku, qty) in &cat.stock {
        if st.stock.level(sku).is_some() {
            continue;
        }
        let update = StockUpdate {
            sku: Ident::new(sku.as_str())?,
            change: StockChange::Set(*qty),
            reason: StockReason::Catalogue,
            note: None,
        };
        // Validated: a new SKU with 0..=1,000,000 units is always accepted.
        if super::change_stock(conn, st, now, &update)?.is_ok() {
            new_skus += 1;
        }
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('catalogue_version', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [cat.version.to_string()],
    )?;
    Ok(ImportSummary {
        version: cat.version,
        offers: cat.offers.len(),
        segments: cat.segments.len(),
        new_skus,
    })
}

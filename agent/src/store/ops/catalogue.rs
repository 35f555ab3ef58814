//! Importing a validated catalogue.

use rusqlite::{Connection, params};
use serde_json::json;

use crate::catalogue::Catalogue;
use crate::store::{ImportSummary, StoreError};

/// Replaces offers and segments with a validated catalogue; stock only for new SKUs.
pub fn import(conn: &Connection, cat: &Catalogue) -> Result<ImportSummary, StoreError> {
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
    {
        let mut ins = conn.prepare_cached(
            "INSERT INTO stock (sku, quantity) VALUES (?1, ?2) ON CONFLICT (sku) DO NOTHING",
        )?;
        for (sku, qty) in &cat.stock {
            new_skus += ins.execute(params![sku, qty])?;
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

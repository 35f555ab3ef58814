//! Facts that only feed the funnel: scans and per-minute impression counts.

use caidan_sync::contract::{EventData, ImpressionData, ScanData, ShopperHash};
use jiff::Timestamp;
use rusqlite::Connection;

use super::{Now, brand_ids, write_event};
use crate::events::NewEvent;
use crate::store::StoreError;
use crate::store::state::State;

/// Records that a shopper opened the egg page of QR window `window`, once per shopper and
/// window: a reload or a flood of the page from one shopper is one scan. Returns whether it
/// was recorded.
pub fn scan(
    conn: &Connection,
    st: &mut State,
    now: Now,
    shopper: &ShopperHash,
    window: i64,
) -> Result<bool, StoreError> {
    if !st.windows.scan_is_new(window, shopper) {
        return Ok(false);
    }
    let brands = brand_ids(st.engine.brands_in_rotation(&now.moment(st)))?;
    let event = NewEvent {
        subject: None,
        brand: None,
        data: EventData::Scan(ScanData {
            shopper: shopper.clone(),
            brands,
            scene: st.events.source().scene,
            uptime_ms: now.uptime(),
        }),
    };
    write_event(conn, st, now, event)?;
    st.windows.scanned(window, shopper);
    Ok(true)
}

/// One aggregated impression event for a minute of QR displays.
pub fn impressions(
    conn: &Connection,
    st: &mut State,
    now: Now,
    minute_ms: i64,
    count: u64,
) -> Result<(), StoreError> {
    let minute = Timestamp::from_millisecond(minute_ms).unwrap_or(Timestamp::UNIX_EPOCH);
    let brands = brand_ids(
        st.engine
            .brands_in_rotation(&crate::engine::Moment::new(minute, &st.tz)),
    )?;
    let event = NewEvent {
        subject: None,
        brand: None,
        data: EventData::Impression(ImpressionData {
            minute,
            count,
            brands,
            scene: st.events.source().scene,
            uptime_ms: now.uptime(),
        }),
    };
    write_event(conn, st, now, event)?;
    Ok(())
}

//! One function per writer command: the SQL of one fact and its outbox event, run inside
//! the writer's batch transaction. In-memory state changes only after every statement of
//! the command succeeded. Shared here: the clock readings of a batch, appending to the
//! outbox, and reading claims back.

mod catalogue;
mod claim;
mod config;
mod facts;
mod holds;
mod orders;
mod pickups;
mod redeem;
mod stock;

use caidan_sync::contract::Ident;
use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

use super::state::State;
use super::{ClaimRecord, StoreError};
use crate::catalogue::{OfferKind, Text};
use crate::engine::Moment;
use crate::events::NewEvent;

pub use catalogue::import;
pub use claim::{claim, claim_today};
pub use config::{
    ConfigApply, META_CATALOGUE, META_REJECTION, META_TRUST, apply_config, reject_config,
};
pub use facts::{impressions, scan};
pub use holds::parse_lines as parse_hold_lines;
pub(crate) use holds::{HOLD_COLUMNS, find_by_id as find_hold, hold_from_row};
pub use orders::{cancel, invalid_order, order, release};
pub use pickups::Dispensing;
pub use pickups::{begin_dispense, expire, finish_dispense, pickup};
pub use redeem::redeem;
pub use stock::change_stock;

/// Clock readings for one batch.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub ms: i64,
    pub uptime_ms: i64,
}

impl Now {
    pub(super) fn moment(&self, st: &State) -> Moment {
        Moment::new(
            Timestamp::from_millisecond(self.ms).unwrap_or(Timestamp::UNIX_EPOCH),
            &st.tz,
        )
    }
}

/// Writes `event` at the next outbox seq; the state follows only once the insert succeeded.
/// Always a command's last statement, so nothing after it can fail.
pub(super) fn write_event(
    conn: &Connection,
    st: &mut State,
    now: Now,
    event: NewEvent,
) -> Result<(), StoreError> {
    write_events(conn, st, now, [event])
}

/// Writes `events` at the next outbox seqs, in order; the state follows only once every
/// insert succeeded.
pub(super) fn write_events(
    conn: &Connection,
    st: &mut State,
    now: Now,
    events: impl IntoIterator<Item = NewEvent>,
) -> Result<(), StoreError> {
    let mut seq = st.next_seq;
    let mut buf = [0u8; 36];
    for event in events {
        let kind = event.data.event_type().as_str();
        let (id, json) = st.events.build(event, seq, now.ms);
        conn.prepare_cached("INSERT INTO outbox (seq, id, type, json) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![
                seq,
                &*id.as_hyphenated().encode_lower(&mut buf),
                kind,
                json
            ])?;
        seq += 1;
    }
    st.depth += seq - st.next_seq;
    st.next_seq = seq;
    Ok(())
}

impl Now {
    pub(super) fn uptime(&self) -> u64 {
        self.uptime_ms.max(0) as u64
    }
}

/// Brands on screen as contract ids; at most as many as an event may carry.
pub(super) fn brand_ids(
    brands: impl IntoIterator<Item = String>,
) -> Result<Vec<Ident>, StoreError> {
    brands
        .into_iter()
        .take(caidan_sync::contract::data::MAX_BRANDS)
        .map(|b| Ident::new(b).map_err(StoreError::from))
        .collect()
}

pub(super) const CLAIM_COLUMNS: &str = "code, offer_id, brand, kind, title_zh, title_en, desc_zh, desc_en, fallback, created_ms, expires_ms";

/// A text column holding a contract value, checked as it is read.
pub(super) fn typed<T: std::str::FromStr>(r: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.get(i)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn claim_from_row(r: &Row<'_>) -> rusqlite::Result<ClaimRecord> {
    let kind: String = r.get(3)?;
    Ok(ClaimRecord {
        claim_code: typed(r, 0)?,
        offer_id: typed(r, 1)?,
        brand: typed(r, 2)?,
        kind: OfferKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown offer kind {kind:?}").into(),
            )
        })?,
        title: Text {
            zh: r.get(4)?,
            en: r.get(5)?,
        },
        description: Text {
            zh: r.get(6)?,
            en: r.get(7)?,
        },
        fallback: r.get(8)?,
        created_ms: r.get(9)?,
        expires_ms: r.get(10)?,
        price: None,
        pickup: None,
    })
}

/// Deletes acknowledged outbox records.
pub fn trim(conn: &Connection, st: &mut State, through: i64) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
        .execute([through])?;
    st.depth -= n as i64;
    Ok(n as u64)
}

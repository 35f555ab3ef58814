//! Pickup orders from the order system: reserved against local stock in one transaction or
//! rejected with a reason, idempotent by order id; cancels; staff releases.

use caidan_sync::contract::{Ident, OrderRejection, OrderState, PickupOrder};
use rusqlite::Connection;

use super::holds::{
    self, Change, EGG_PREFIX, HoldRow, NewHold, find_by_id, levels_after, move_units, order_event,
    states,
};
use super::{Now, write_event};
use crate::inventory::Units;
use crate::inventory::dispenser::Dispenser;
use crate::pickup::CodeHash;
use crate::store::state::State;
use crate::store::{NotOpen, OrderOutcome, StoreError};

/// On a vending machine, the dispenser whose slots an order's SKUs must be in.
pub type Slots<'a> = Option<&'a dyn Dispenser>;

fn lines_of(order: &PickupOrder) -> Vec<Units> {
    crate::inventory::book::merged(
        order
            .lines
            .iter()
            .map(|l| Units {
                sku: l.sku.to_string(),
                qty: l.qty,
            })
            .collect(),
    )
}

/// Reserves an order's lines, all or none, or rejects it with a reason the order system can
/// act on. The same order again changes nothing; so does another order under a used id.
pub fn order(
    conn: &Connection,
    st: &mut State,
    now: Now,
    order: &PickupOrder,
    code: &CodeHash,
    slots: Slots<'_>,
) -> Result<OrderOutcome, StoreError> {
    let lines = lines_of(order);
    let expires_ms = order.expires_at.as_millisecond();
    if let Some(existing) = find_by_id(conn, &order.order_id)? {
        let same = existing.lines == lines
            && existing.expires_ms == expires_ms
            && CodeHash::from_hex(&existing.code_hash).is_some_and(|h| h.matches(code));
        return Ok(if same {
            OrderOutcome::Duplicate
        } else {
            OrderOutcome::Conflict
        });
    }
    let rejection = if order.order_id.starts_with(EGG_PREFIX) {
        Some(OrderRejection::Invalid)
    } else if expires_ms <= now.ms {
        Some(OrderRejection::Expired)
    } else if holds::code_in_use(conn, code)? {
        Some(OrderRejection::Invalid)
    } else if let Some(r) = st.stock.can_reserve(&lines).err() {
        Some(r.0)
    } else if let Some(d) = slots
        && lines.iter().any(|l| !d.has_slot(&l.sku))
    {
        Some(OrderRejection::CannotDispense)
    } else {
        None
    };
    let row = HoldRow {
        id: order.order_id.to_string(),
        state: rejection
            .map_or(states::RESERVED, |_| states::REJECTED)
            .into(),
        code_hash: code.to_hex(),
        lines,
        expires_ms,
        created_ms: now.ms,
        closed_ms: None,
        shopper: order.shopper.as_ref().map(|s| s.to_string()),
        brand: order.brand.as_ref().map(|b| b.to_string()),
        offer: None,
        handed_by: None,
    };
    // A rejected order is kept too, so a redelivery of it is recognised.
    holds::insert(
        conn,
        now,
        NewHold {
            id: &row.id,
            state: &row.state,
            code,
            lines: &row.lines,
            expires_ms,
            shopper: order.shopper.as_ref(),
            brand: order.brand.as_ref(),
            offer: None,
            claim_code: None,
        },
    )?;
    match rejection {
        Some(reason) => {
            let stock = levels_after(st, known(st, &row.lines), 0, false);
            let change = Change {
                reason: Some(reason),
                ..Change::default()
            };
            let event = order_event(st, now, &row, OrderState::Rejected, change, stock)?;
            write_event(conn, st, now, event)?;
            Ok(OrderOutcome::Rejected(reason))
        }
        None => {
            move_units(conn, &row.lines, 1, false)?;
            let stock = levels_after(st, &row.lines, 1, false);
            let event = order_event(
                st,
                now,
                &row,
                OrderState::Reserved,
                Change::default(),
                stock,
            )?;
            write_event(conn, st, now, event)?;
            st.stock
                .reserve(&row.id, row.lines, expires_ms)
                .expect("checked above in the same writer step");
            Ok(OrderOutcome::Reserved)
        }
    }
}

/// The lines whose SKUs this touchpoint stocks (a rejection reports their levels).
fn known<'a>(st: &State, lines: &'a [Units]) -> &'a [Units] {
    if lines.iter().all(|l| st.stock.level(&l.sku).is_some()) {
        lines
    } else {
        &[]
    }
}

/// Rejects as `invalid` an order whose message broke a bound, unless its id is known.
pub fn invalid_order(
    conn: &Connection,
    st: &mut State,
    now: Now,
    order_id: &Ident,
) -> Result<OrderOutcome, StoreError> {
    if find_by_id(conn, order_id)?.is_some() {
        return Ok(OrderOutcome::Conflict);
    }
    // Nothing readable to hold: an empty row with a hash no code has.
    let row = HoldRow {
        id: order_id.to_string(),
        state: states::REJECTED.into(),
        code_hash: "invalid".into(),
        lines: Vec::new(),
        expires_ms: now.ms,
        created_ms: now.ms,
        closed_ms: Some(now.ms),
        shopper: None,
        brand: None,
        offer: None,
        handed_by: None,
    };
    conn.prepare_cached(
        "INSERT INTO holds (id, state, code_hash, lines, expires_ms, created_ms, closed_ms)
         VALUES (?1, 'rejected', 'invalid', '[]', ?2, ?2, ?2)",
    )?
    .execute(rusqlite::params![row.id, now.ms])?;
    let change = Change {
        reason: Some(OrderRejection::Invalid),
        ..Change::default()
    };
    let event = order_event(st, now, &row, OrderState::Rejected, change, Vec::new())?;
    write_event(conn, st, now, event)?;
    Ok(OrderOutcome::Rejected(OrderRejection::Invalid))
}

fn end_hold(
    conn: &Connection,
    st: &mut State,
    now: Now,
    id: &str,
    state: OrderState,
) -> Result<Result<(), NotOpen>, StoreError> {
    let Some(row) = find_by_id(conn, id)? else {
        return Ok(Err(NotOpen::Unknown));
    };
    if !row.is_open() || st.stock.hold(id).is_none() {
        return Ok(Err(NotOpen::Closed(state_name(&row.state))));
    }
    if st.stock.hold(id).is_some_and(|h| h.dispensing) {
        return Ok(Err(NotOpen::Dispensing));
    }
    holds::close(conn, id, state.as_str(), now, None)?;
    move_units(conn, &row.lines, -1, false)?;
    let stock = levels_after(st, &row.lines, -1, false);
    let event = order_event(st, now, &row, state, Change::default(), stock)?;
    write_event(conn, st, now, event)?;
    st.stock.release(id);
    Ok(Ok(()))
}

fn state_name(state: &str) -> &'static str {
    [
        states::REJECTED,
        states::PICKED_UP,
        states::EXPIRED,
        states::CANCELLED,
        states::RELEASED,
    ]
    .into_iter()
    .find(|s| *s == state)
    .unwrap_or("closed")
}

/// The order system cancelled an order: its units go back.
pub fn cancel(
    conn: &Connection,
    st: &mut State,
    now: Now,
    order_id: &Ident,
) -> Result<Result<(), NotOpen>, StoreError> {
    end_hold(conn, st, now, order_id, OrderState::Cancelled)
}

/// Staff released a hold before its window ended: its units go back.
pub fn release(
    conn: &Connection,
    st: &mut State,
    now: Now,
    id: &str,
) -> Result<Result<(), NotOpen>, StoreError> {
    end_hold(conn, st, now, id, OrderState::Released)
}

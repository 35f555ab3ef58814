//! Handing holds over: by staff with the pickup code, or by the dispenser in two steps
//! (claim the hold, then record what came out), and releasing holds whose window ended.

use caidan_sync::contract::{DispenseFault, Handover, OrderState};
use rusqlite::Connection;

use super::holds::{
    self, Change, HoldRow, find_by_code, find_by_id, levels_after, move_units, order_event, states,
};
use super::{Now, write_event};
use crate::inventory::Units;
use crate::pickup::CodeHash;
use crate::store::state::State;
use crate::store::{HoldView, PickupRefusal, StoreError};

/// Most holds one expiry pass releases (the rest in the next), bounding one transaction.
const EXPIRE_BATCH: usize = 256;

/// The open hold behind a pickup code, or why there is none to hand over. An open hold past
/// its window is expired on the spot.
fn open_hold(
    conn: &Connection,
    st: &mut State,
    now: Now,
    code: &CodeHash,
) -> Result<Result<HoldRow, PickupRefusal>, StoreError> {
    let Some(row) = find_by_code(conn, code)? else {
        return Ok(Err(PickupRefusal::UnknownCode));
    };
    let refusal = match row.state.as_str() {
        states::PICKED_UP => Some(PickupRefusal::AlreadyPickedUp),
        states::EXPIRED => Some(PickupRefusal::Expired),
        states::CANCELLED => Some(PickupRefusal::Cancelled),
        states::RELEASED => Some(PickupRefusal::Released),
        states::REJECTED => Some(PickupRefusal::UnknownCode),
        _ => None,
    };
    if let Some(r) = refusal {
        return Ok(Err(r));
    }
    match st.stock.hold(&row.id) {
        None => Err(StoreError::HoldUnreadable {
            id: row.id.clone(),
            reason: "open in the store, not in the writer's memory".into(),
        }),
        Some(h) if h.dispensing => Ok(Err(PickupRefusal::Dispensing)),
        Some(_) if row.expires_ms <= now.ms => {
            expire_one(conn, st, now, &row)?;
            Ok(Err(PickupRefusal::Expired))
        }
        Some(_) => Ok(Ok(row)),
    }
}

/// Staff hand a hold over after checking its pickup code: at most once.
pub fn pickup(
    conn: &Connection,
    st: &mut State,
    now: Now,
    code: &CodeHash,
) -> Result<Result<HoldView, PickupRefusal>, StoreError> {
    let row = match open_hold(conn, st, now, code)? {
        Ok(row) => row,
        Err(r) => return Ok(Err(r)),
    };
    hand_over(conn, st, now, &row, &row.lines, Handover::Staff, None)?;
    let mut view = row.view();
    view.state = states::PICKED_UP.into();
    view.closed_ms = Some(now.ms);
    view.handed_by = Some("staff".into());
    Ok(Ok(view))
}

/// Records that `given` of hold `row` left the machine. All of it: the hold is picked up;
/// part or none (a fault): the rest stays reserved, to be tried again.
fn hand_over(
    conn: &Connection,
    st: &mut State,
    now: Now,
    row: &HoldRow,
    given: &[Units],
    by: Handover,
    fault: Option<DispenseFault>,
) -> Result<(), StoreError> {
    let left = remaining(&row.lines, given);
    move_units(conn, given, -1, true)?;
    let (state, change) = if left.is_empty() {
        holds::close(conn, &row.id, states::PICKED_UP, now, Some(by))?;
        let change = Change {
            by: Some(by),
            ..Change::default()
        };
        (OrderState::PickedUp, change)
    } else {
        holds::reopen(conn, &row.id, states::RESERVED, &left)?;
        let change = Change {
            fault: Some(fault.unwrap_or(DispenseFault::Offline)),
            ..Change::default()
        };
        (OrderState::DispenseFailed, change)
    };
    let stock = levels_after(st, given, -1, true);
    let event = order_event(st, now, row, state, change, stock)?;
    write_event(conn, st, now, event)?;
    if given.is_empty() {
        st.stock.set_dispensing(&row.id, false);
    } else {
        st.stock
            .hand_over(&row.id, given)
            .expect("given is part of the open hold");
    }
    Ok(())
}

fn remaining(lines: &[Units], given: &[Units]) -> Vec<Units> {
    lines
        .iter()
        .filter_map(|l| {
            let g = given.iter().find(|g| g.sku == l.sku).map_or(0, |g| g.qty);
            (l.qty > g).then(|| Units {
                sku: l.sku.clone(),
                qty: l.qty - g,
            })
        })
        .collect()
}

/// A hold claimed by the dispenser: its lines are being dispensed now.
#[derive(Debug, Clone)]
pub struct Dispensing {
    pub id: String,
    pub lines: Vec<Units>,
    pub view: HoldView,
}

/// First step of a dispense: checks the code and marks the hold as being dispensed, so a
/// second entry of the same code cannot dispense it twice and expiry waits.
pub fn begin_dispense(
    conn: &Connection,
    st: &mut State,
    now: Now,
    code: &CodeHash,
) -> Result<Result<Dispensing, PickupRefusal>, StoreError> {
    let row = match open_hold(conn, st, now, code)? {
        Ok(row) => row,
        Err(r) => return Ok(Err(r)),
    };
    holds::reopen(conn, &row.id, states::DISPENSING, &row.lines)?;
    st.stock.set_dispensing(&row.id, true);
    Ok(Ok(Dispensing {
        id: row.id.clone(),
        lines: row.lines.clone(),
        view: row.view(),
    }))
}

/// Second step: what came out. Units count as handed over only here, in the same
/// transaction as the event; a fault leaves the rest reserved and retryable.
pub fn finish_dispense(
    conn: &Connection,
    st: &mut State,
    now: Now,
    id: &str,
    given: &[Units],
    fault: Option<DispenseFault>,
) -> Result<HoldView, StoreError> {
    let row = find_by_id(conn, id)?
        .filter(|r| r.state == states::DISPENSING)
        .ok_or_else(|| StoreError::HoldUnreadable {
            id: id.into(),
            reason: "not being dispensed".into(),
        })?;
    hand_over(conn, st, now, &row, given, Handover::Dispenser, fault)?;
    Ok(find_by_id(conn, id)?.map_or_else(|| row.view(), |r| r.view()))
}

fn expire_one(
    conn: &Connection,
    st: &mut State,
    now: Now,
    row: &HoldRow,
) -> Result<(), StoreError> {
    holds::close(conn, &row.id, states::EXPIRED, now, None)?;
    move_units(conn, &row.lines, -1, false)?;
    let stock = levels_after(st, &row.lines, -1, false);
    let event = order_event(st, now, row, OrderState::Expired, Change::default(), stock)?;
    write_event(conn, st, now, event)?;
    st.stock.release(&row.id);
    Ok(())
}

/// Releases holds whose window ended (not those being dispensed), each once: the state
/// change, the units and the event go in one transaction. Returns how many.
pub fn expire(conn: &Connection, st: &mut State, now: Now) -> Result<usize, StoreError> {
    let due = st.stock.due(now.ms);
    let mut n = 0;
    for id in due.into_iter().take(EXPIRE_BATCH) {
        let Some(row) = find_by_id(conn, &id)?.filter(HoldRow::is_open) else {
            return Err(StoreError::HoldUnreadable {
                id,
                reason: "open in the writer's memory, not in the store".into(),
            });
        };
        expire_one(conn, st, now, &row)?;
        n += 1;
    }
    Ok(n)
}

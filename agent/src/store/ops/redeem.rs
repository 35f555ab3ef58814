//! Redeeming a claim at the counter, at most once.

use caidan_sync::contract::{ClaimCode, EventData, RedemptionData, RejectionData, ShopperHash};
use rusqlite::{Connection, OptionalExtension, params};

use super::{CLAIM_COLUMNS, Now, claim_from_row, typed, write_event};
use crate::events::NewEvent;
use crate::store::state::State;
use crate::store::{RedeemRefusal, Redemption, StoreError};

/// Redeems a claim once. Re-use of a redeemed or expired claim is recorded as a rejection
/// event (a fraud signal for the brand); an unknown code writes nothing.
pub fn redeem(
    conn: &Connection,
    st: &mut State,
    now: Now,
    code: &ClaimCode,
) -> Result<Result<Redemption, RedeemRefusal>, StoreError> {
    let claim_code = code;
    let code = code.as_str();
    let Some(claim) = conn
        .prepare_cached(&format!(
            "SELECT {CLAIM_COLUMNS} FROM claims WHERE code = ?1"
        ))?
        .query_row([code], claim_from_row)
        .optional()?
    else {
        return Ok(Err(RedeemRefusal::UnknownCode));
    };
    let shopper: ShopperHash =
        conn.query_row("SELECT shopper FROM claims WHERE code = ?1", [code], |r| {
            typed(r, 0)
        })?;
    if !claim.kind.redeemable() {
        return Ok(Err(RedeemRefusal::NotRedeemable));
    }
    let redeemed: Option<i64> = conn
        .prepare_cached("SELECT redeemed_ms FROM redemptions WHERE claim_code = ?1")?
        .query_row([code], |r| r.get(0))
        .optional()?;
    let refusal = if redeemed.is_some() {
        Some(RedeemRefusal::AlreadyRedeemed)
    } else if now.ms >= claim.expires_ms {
        Some(RedeemRefusal::Expired)
    } else {
        None
    };
    if let Some(refusal) = refusal {
        let event = NewEvent {
            subject: Some(claim.offer_id.clone()),
            brand: Some(claim.brand.clone()),
            data: EventData::Rejection(RejectionData {
                reason: refusal
                    .recorded()
                    .expect("only recorded refusals reach here"),
                offer: Some(claim.offer_id.clone()),
                brand: Some(claim.brand.clone()),
                claim_code: Some(claim_code.clone()),
                scene: st.events.source().scene,
                uptime_ms: now.uptime(),
            }),
        };
        write_event(conn, st, now, event)?;
        return Ok(Err(refusal));
    }
    conn.prepare_cached("INSERT INTO redemptions (claim_code, redeemed_ms) VALUES (?1, ?2)")?
        .execute(params![code, now.ms])?;
    let event = NewEvent {
        subject: Some(claim.offer_id.clone()),
        brand: Some(claim.brand.clone()),
        data: EventData::Redemption(RedemptionData {
            shopper,
            offer: claim.offer_id.clone(),
            brand: claim.brand.clone(),
            claim_code: claim_code.clone(),
            scene: st.events.source().scene,
            uptime_ms: now.uptime(),
        }),
    };
    write_event(conn, st, now, event)?;
    Ok(Ok(Redemption {
        claim,
        redeemed_ms: now.ms,
    }))
}

//! Cracking the egg: the shopper's claim of today, or a new one chosen by the engine, with
//! its quota counters, the hold of a product or sample egg, and its outbox events in the
//! same transaction.

use std::collections::HashMap;
use std::sync::Arc;

use caidan_sync::contract::{ClaimCode, ClaimData, EventData, Ident, OrderState, ShopperHash};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::holds::{self, Change, EGG_PREFIX, HoldRow, NewHold, find_by_id, order_event, states};
use super::{CLAIM_COLUMNS, Now, claim_from_row, write_events};
use crate::catalogue::{Offer, OfferKind, Text};
use crate::engine::{Pick, ShopperView, daily_seed};
use crate::events::NewEvent;
use crate::inventory::Units;
use crate::store::state::State;
use crate::store::{ClaimOutcome, ClaimRecord, ClaimRefusal, PickupInfo, StoreError};

/// Offers whose copy (titles, descriptions) the writer keeps parsed.
const OFFER_CACHE: usize = 256;

/// The egg of last resort when the catalogue has no eligible content offer.
fn builtin_story() -> Offer {
    let title = Text {
        zh: "今天的彩蛋：谢谢你来！".into(),
        en: "Today's egg: thanks for stopping by!".into(),
    };
    let mut story = Offer::new("caidan-story", "caidan", OfferKind::Content, title);
    story.description = Text {
        zh: "明天再来扫一扫，也许有惊喜。".into(),
        en: "Scan again tomorrow: there may be a surprise.".into(),
    };
    story
}

/// What the store knows of a shopper: today's claim if any, else what the engine needs.
enum Seen {
    Today(Box<ClaimRecord>),
    Before(ShopperView),
}

/// One pass over the shopper's claims (usually none) answers both "already claimed today?"
/// and the engine's per-shopper questions.
fn shopper_view(
    conn: &Connection,
    st: &State,
    shopper: &ShopperHash,
    day: &str,
) -> Result<Seen, StoreError> {
    let shopper = shopper.as_str();
    let mut claimed = HashMap::new();
    let mut previous: Option<(String, i64)> = None;
    let mut stmt =
        conn.prepare_cached("SELECT id, day, offer_id FROM claims WHERE shopper = ?1")?;
    let mut rows = stmt.query([shopper])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        if r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)? == day {
            let mut claim = conn
                .prepare_cached(&format!("SELECT {CLAIM_COLUMNS} FROM claims WHERE id = ?1"))?
                .query_row([id], claim_from_row)?;
            attach_hold(conn, st, &mut claim)?;
            return Ok(Seen::Today(Box::new(claim)));
        }
        let offer: String = r.get(2)?;
        if previous.as_ref().is_none_or(|(_, last)| id > *last) {
            previous = Some((offer.clone(), id));
        }
        *claimed.entry(offer).or_insert(0) += 1;
    }
    // Most catalogues target no segment: then the lookup is skipped.
    let segments = if st.engine.uses_segments() {
        conn.prepare_cached("SELECT tags FROM segments WHERE shopper = ?1")?
            .query_row([shopper], |r| r.get::<_, String>(0))
            .optional()?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Seen::Before(ShopperView {
        segments,
        claimed,
        previous_offer: previous.map(|(o, _)| o),
    }))
}

/// The hold id of an egg's claim.
pub(super) fn egg_hold_id(code: &ClaimCode) -> String {
    format!("{EGG_PREFIX}{code}")
}

/// Fills in the pickup and price of a product or sample claim read back from the store.
fn attach_hold(conn: &Connection, st: &State, claim: &mut ClaimRecord) -> Result<(), StoreError> {
    if !claim.kind.holds_stock() {
        return Ok(());
    }
    if let Some(hold) = find_by_id(conn, &egg_hold_id(&claim.claim_code))? {
        claim.pickup = Some(pickup_info(st, &claim.claim_code, &hold));
    }
    let offer: Option<String> = conn
        .prepare_cached("SELECT json FROM offers WHERE id = ?1")?
        .query_row([claim.offer_id.as_str()], |r| r.get(0))
        .optional()?;
    claim.price = offer
        .and_then(|json| serde_json::from_str::<Offer>(&json).ok())
        .and_then(|o| o.price);
    Ok(())
}

fn pickup_info(st: &State, claim: &ClaimCode, hold: &HoldRow) -> PickupInfo {
    PickupInfo {
        code: st.pickups.egg_code(claim),
        sku: hold
            .lines
            .first()
            .map(|l| l.sku.clone())
            .unwrap_or_default(),
        hold_until_ms: hold.expires_ms,
        state: if hold.state == states::DISPENSING {
            states::RESERVED.into()
        } else {
            hold.state.clone()
        },
    }
}

/// The egg the shopper already holds today, if any; reads only (for a store that is full).
pub fn claim_today(
    conn: &Connection,
    st: &State,
    now: Now,
    shopper: &ShopperHash,
) -> Result<Option<ClaimOutcome>, StoreError> {
    let day = now.moment(st).today().to_string();
    Ok(match shopper_view(conn, st, shopper, &day)? {
        Seen::Today(claim) => Some(ClaimOutcome {
            claim: *claim,
            existing: true,
        }),
        Seen::Before(_) => None,
    })
}

/// Gives the shopper today's egg: the one they already hold, or a new claim.
pub fn claim(
    conn: &Connection,
    st: &mut State,
    now: Now,
    shopper: &ShopperHash,
    window: i64,
) -> Result<Result<ClaimOutcome, ClaimRefusal>, StoreError> {
    let moment = now.moment(st);
    let day = moment.today().to_string();
    let view = match shopper_view(conn, st, shopper, &day)? {
        Seen::Today(claim) => {
            return Ok(Ok(ClaimOutcome {
                claim: *claim,
                existing: true,
            }));
        }
        Seen::Before(view) => view,
    };
    // A rescan gets its claim back above; a new one must fit in what this window may give.
    if !st.windows.claim_fits(window) {
        return Ok(Err(ClaimRefusal::ScreenBusy));
    }
    let seed = daily_seed(&st.engine.touchpoint().device, shopper, moment.today());
    let shopper_id = shopper;
    let shopper = shopper.as_str();
    st.pool_for(&moment);
    let pick = st
        .engine
        .choose(&moment, &st.pool, &view, &st.book, &st.stock, seed);
    let (index, fallback) = match pick {
        Pick::Offer(i) => (Some(i), false),
        Pick::Fallback(i) => (i, true),
    };
    // Titles and copy live in the store, not in the engine.
    let offer: Arc<Offer> = match index {
        Some(i) => match st.offers.get(&i) {
            Some(o) => o.clone(),
            None => {
                let id = &st.engine.rule(i).id;
                let json: String = conn
                    .prepare_cached("SELECT json FROM offers WHERE id = ?1")?
                    .query_row([&**id], |r| r.get(0))?;
                let offer: Arc<Offer> =
                    Arc::new(serde_json::from_str(&json).map_err(|source| {
                        StoreError::OfferUnreadable {
                            id: id.to_string(),
                            source,
                        }
                    })?);
                // Claims gather on few offers; a small bounded cache spares most parses.
                if st.offers.len() >= OFFER_CACHE {
                    st.offers.clear();
                }
                st.offers.insert(i, offer.clone());
                offer
            }
        },
        None => Arc::new(builtin_story()),
    };
    // A product or sample egg holds one unit here until it is picked up or its hold ends.
    let held = match (&offer.sku, offer.kind.holds_stock() && index.is_some()) {
        (Some(sku), true) => Some(sku.clone()),
        _ => None,
    };
    let expires_ms = match held {
        Some(_) => now.ms + i64::from(offer.hold_minutes) * 60_000,
        None => now.ms + i64::from(offer.claim_ttl_hours) * 3_600_000,
    };
    let offer_id = Ident::new(offer.id.as_str())?;
    let brand = Ident::new(offer.brand.as_str())?;
    let mut code = crate::claim::new_code(&mut st.codes);
    let mut inserted = false;
    for _ in 0..8 {
        // The hold's pickup code follows from the claim code; it must be free among the
        // open holds.
        if held.is_some()
            && holds::code_in_use(conn, &st.pickups.hash(&st.pickups.egg_code(&code)))?
        {
            code = crate::claim::new_code(&mut st.codes);
            continue;
        }
        let n = conn
            .prepare_cached(
                "INSERT INTO claims (code, shopper, day, offer_id, brand, kind, title_zh, title_en, desc_zh, desc_en, fallback, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (code) DO NOTHING",
            )?
            .execute(params![
                code.as_str(), shopper, day, offer.id, offer.brand, offer.kind.as_str(), offer.title.zh, offer.title.en,
                offer.description.zh, offer.description.en, fallback, now.ms, expires_ms
            ])?;
        if n == 1 {
            inserted = true;
            break;
        }
        code = crate::claim::new_code(&mut st.codes);
    }
    if !inserted {
        return Err(StoreError::NoFreeClaimCode);
    }
    // Counters exist for quotas; an offer without any (content eggs, as a rule) skips them,
    // so a quota added later to an existing offer counts from then on.
    let counted = index
        .filter(|_| offer.quota != Default::default())
        .map(|_| st.book.get(&offer.id).bumped(moment.today(), moment.hour()));
    if let Some(c) = counted {
        conn.prepare_cached(
            "INSERT INTO quota_counters (offer_id, total, day, day_count, hour, hour_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (offer_id) DO UPDATE SET total = excluded.total, day = excluded.day, day_count = excluded.day_count,
             hour = excluded.hour, hour_count = excluded.hour_count",
        )?
        .execute(params![offer.id, c.total, day, c.day_count, c.hour, c.hour_count])?;
    }
    let record = ClaimRecord {
        claim_code: code,
        offer_id,
        brand,
        kind: offer.kind,
        title: offer.title.clone(),
        description: offer.description.clone(),
        fallback,
        created_ms: now.ms,
        expires_ms,
        price: offer.price.clone().filter(|_| held.is_some()),
        pickup: None,
    };
    let claim_event = NewEvent {
        subject: Some(record.offer_id.clone()),
        brand: Some(record.brand.clone()),
        data: EventData::Claim(ClaimData {
            shopper: shopper_id.clone(),
            offer: record.offer_id.clone(),
            brand: record.brand.clone(),
            kind: record.kind,
            claim_code: record.claim_code.clone(),
            fallback,
            expires_at: Timestamp::from_millisecond(expires_ms).unwrap_or(Timestamp::MAX),
            local_hour: moment.hour().clamp(0, 23) as u8,
            scene: st.events.source().scene,
            uptime_ms: now.uptime(),
        }),
    };
    let mut record = record;
    let mut events = vec![claim_event];
    let mut hold = None;
    if let Some(sku) = held {
        let lines = vec![Units { sku, qty: 1 }];
        let pickup = st.pickups.egg_code(&record.claim_code);
        let row = HoldRow {
            id: egg_hold_id(&record.claim_code),
            state: states::RESERVED.into(),
            code_hash: String::new(),
            lines,
            expires_ms,
            created_ms: now.ms,
            closed_ms: None,
            shopper: Some(shopper.to_owned()),
            brand: Some(record.brand.to_string()),
            offer: Some(record.offer_id.to_string()),
            handed_by: None,
        };
        holds::insert(
            conn,
            now,
            NewHold {
                id: &row.id,
                state: states::RESERVED,
                code: &st.pickups.hash(&pickup),
                lines: &row.lines,
                expires_ms,
                shopper: Some(shopper_id),
                brand: Some(&record.brand),
                offer: Some(&record.offer_id),
                claim_code: Some(record.claim_code.as_str()),
            },
        )?;
        holds::move_units(conn, &row.lines, 1, false)?;
        let stock = holds::levels_after(st, &row.lines, 1, false);
        events.push(order_event(
            st,
            now,
            &row,
            OrderState::Reserved,
            Change::default(),
            stock,
        )?);
        record.pickup = Some(pickup_info(st, &record.claim_code, &row));
        hold = Some(row);
    }
    write_events(conn, st, now, events)?;
    // Every statement succeeded: now memory follows.
    if let Some(c) = counted {
        st.book.set(record.offer_id.as_str(), c);
    }
    if let Some(row) = hold {
        st.stock
            .reserve(&row.id, row.lines, row.expires_ms)
            .expect("the engine checked a unit was available");
    }
    st.windows.claimed(window);
    Ok(Ok(ClaimOutcome {
        claim: record,
        existing: false,
    }))
}

//! One function per writer command: the SQL of one fact and its outbox event, run inside
//! the writer's batch transaction. In-memory state changes only after every statement of
//! the command succeeded.

use std::collections::HashMap;
use std::sync::Arc;

use caidan_sync::contract::{
    ClaimCode, ClaimData, EventData, Ident, ImpressionData, RedemptionData, RejectionData,
    ScanData, ShopperHash,
};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use super::state::State;
use super::{ClaimOutcome, ClaimRecord, ImportSummary, RedeemRefusal, Redemption, StoreError};
use crate::catalogue::{Catalogue, Offer, OfferKind, Text};
use crate::engine::{Moment, Pick, ShopperView, daily_seed};
use crate::events::NewEvent;

/// Offers whose copy (titles, descriptions) the writer keeps parsed.
const OFFER_CACHE: usize = 256;

/// Clock readings for one batch.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub ms: i64,
    pub uptime_ms: i64,
}

impl Now {
    fn moment(&self, st: &State) -> Moment {
        Moment::new(
            Timestamp::from_millisecond(self.ms).unwrap_or(Timestamp::UNIX_EPOCH),
            &st.tz,
        )
    }
}

fn append(
    conn: &Connection,
    st: &State,
    seq: i64,
    now: Now,
    event: NewEvent,
) -> Result<(), StoreError> {
    let kind = event.data.event_type().as_str();
    let (id, json) = st.events.build(event, seq, now.ms);
    let mut buf = [0u8; 36];
    conn.prepare_cached("INSERT INTO outbox (seq, id, type, json) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            seq,
            &*id.as_hyphenated().encode_lower(&mut buf),
            kind,
            json
        ])?;
    Ok(())
}

impl Now {
    fn uptime(&self) -> u64 {
        self.uptime_ms.max(0) as u64
    }
}

/// Brands on screen as contract ids; at most as many as an event may carry.
fn brand_ids(brands: impl IntoIterator<Item = String>) -> Result<Vec<Ident>, StoreError> {
    brands
        .into_iter()
        .take(caidan_sync::contract::data::MAX_BRANDS)
        .map(|b| Ident::new(b).map_err(StoreError::from))
        .collect()
}

fn committed_events(st: &mut State, n: i64) {
    st.next_seq += n;
    st.depth += n;
}

const CLAIM_COLUMNS: &str = "code, offer_id, brand, kind, title_zh, title_en, desc_zh, desc_en, fallback, created_ms, expires_ms";

/// A text column holding a contract value, checked as it is read.
fn typed<T: std::str::FromStr>(r: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.get(i)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn claim_from_row(r: &Row<'_>) -> rusqlite::Result<ClaimRecord> {
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
    })
}

/// The egg of last resort when the catalogue has no eligible content offer.
fn builtin_story() -> Offer {
    Offer {
        id: "caidan-story".into(),
        brand: "caidan".into(),
        kind: OfferKind::Content,
        title: Text {
            zh: "今天的彩蛋：谢谢你来！".into(),
            en: "Today's egg: thanks for stopping by!".into(),
        },
        description: Text {
            zh: "明天再来扫一扫，也许有惊喜。".into(),
            en: "Scan again tomorrow: there may be a surprise.".into(),
        },
        valid_from: None,
        valid_until: None,
        dayparts: vec![],
        scenes: vec![],
        regions: vec![],
        segments: vec![],
        requires: vec![],
        sku: None,
        quota: Default::default(),
        weight: 1,
        pacing: Default::default(),
        claim_ttl_hours: 24,
    }
}

/// What the store knows of a shopper: today's claim if any, else what the engine needs.
enum Seen {
    Today(ClaimRecord),
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
            let claim = conn
                .prepare_cached(&format!("SELECT {CLAIM_COLUMNS} FROM claims WHERE id = ?1"))?
                .query_row([id], claim_from_row)?;
            return Ok(Seen::Today(claim));
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

/// Gives the shopper today's egg: the one they already hold, or a new claim.
pub fn claim(
    conn: &Connection,
    st: &mut State,
    now: Now,
    shopper: &ShopperHash,
) -> Result<ClaimOutcome, StoreError> {
    let moment = now.moment(st);
    let day = moment.today().to_string();
    let view = match shopper_view(conn, st, shopper, &day)? {
        Seen::Today(claim) => {
            return Ok(ClaimOutcome {
                claim,
                existing: true,
            });
        }
        Seen::Before(view) => view,
    };
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
    let expires_ms = now.ms + i64::from(offer.claim_ttl_hours) * 3_600_000;
    let offer_id = Ident::new(offer.id.as_str())?;
    let brand = Ident::new(offer.brand.as_str())?;
    let mut code = crate::claim::new_code(&mut st.codes);
    let mut inserted = false;
    for _ in 0..8 {
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
    let dispensed = match (&offer.sku, offer.kind) {
        (Some(sku), OfferKind::FreeSample) => {
            let n = conn
                .prepare_cached(
                    "UPDATE stock SET quantity = quantity - 1 WHERE sku = ?1 AND quantity > 0",
                )?
                .execute([sku])?;
            if n != 1 {
                return Err(StoreError::StockOutOfStep { sku: sku.clone() });
            }
            Some(sku.clone())
        }
        _ => None,
    };
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
    };
    let event = NewEvent {
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
    append(conn, st, st.next_seq, now, event)?;
    // Every statement succeeded: now memory follows.
    if let Some(c) = counted {
        st.book.set(record.offer_id.as_str(), c);
    }
    if let Some(sku) = dispensed
        && let Some(q) = st.stock.get_mut(&sku)
    {
        *q -= 1;
    }
    committed_events(st, 1);
    Ok(ClaimOutcome {
        claim: record,
        existing: false,
    })
}

/// Records that a shopper opened the egg page with a valid token.
pub fn scan(
    conn: &Connection,
    st: &mut State,
    now: Now,
    shopper: &ShopperHash,
) -> Result<(), StoreError> {
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
    append(conn, st, st.next_seq, now, event)?;
    committed_events(st, 1);
    Ok(())
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
    append(conn, st, st.next_seq, now, event)?;
    committed_events(st, 1);
    Ok(())
}

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
        append(conn, st, st.next_seq, now, event)?;
        committed_events(st, 1);
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
    append(conn, st, st.next_seq, now, event)?;
    committed_events(st, 1);
    Ok(Ok(Redemption {
        claim,
        redeemed_ms: now.ms,
    }))
}

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

/// Deletes acknowledged outbox records.
pub fn trim(conn: &Connection, st: &mut State, through: i64) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
        .execute([through])?;
    st.depth -= n as i64;
    Ok(n as u64)
}

//! The AIPL funnel of one brand: pure aggregation over stored event facts, plus the query
//! that reads those facts.

use std::collections::{BTreeMap, HashMap};

use caidan_sync::contract::{Event, EventData, EventType, OrderState, Stage};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// Funnel row grouping (`by=` query parameter).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Touchpoint,
    Scene,
    Offer,
    /// UTC hour the event happened in, `YYYY-MM-DDTHH:00Z`.
    Hour,
}

/// The columns of one stored event the funnel needs.
#[derive(Debug, Clone, Default)]
pub struct Fact {
    pub ty: Option<EventType>,
    pub device: String,
    pub scene: Option<String>,
    pub offer: Option<String>,
    pub time_ms: i64,
    pub brand: Option<String>,
    pub brands: Vec<String>,
    pub shopper: Option<String>,
    pub count: Option<i64>,
    /// The new state, for an order event.
    pub order_state: Option<OrderState>,
}

impl Fact {
    /// The facts of an event, as the store's columns keep them.
    pub fn of(e: &Event) -> Fact {
        Fact {
            ty: Some(e.event_type()),
            device: e.device.to_string(),
            scene: Some(e.data.scene().as_str().to_owned()),
            offer: e.offer().map(|o| o.as_str().to_owned()),
            time_ms: e.time.as_millisecond(),
            brand: e.brand().map(|b| b.as_str().to_owned()),
            brands: match &e.data {
                EventData::Impression(_) | EventData::Scan(_) => e
                    .data
                    .brands()
                    .iter()
                    .map(|b| b.as_str().to_owned())
                    .collect(),
                _ => Vec::new(),
            },
            shopper: e.data.shopper().map(|s| s.as_str().to_owned()),
            count: matches!(e.data, EventData::Impression(_)).then(|| e.data.count() as i64),
            order_state: match &e.data {
                EventData::Order(d) => Some(d.state),
                _ => None,
            },
        }
    }
}

/// One funnel row (or the totals).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FunnelRow {
    pub key: String,
    pub awareness: u64,
    pub interest: u64,
    pub purchase: u64,
    /// Distinct shoppers with at least two purchases of the brand within this row.
    pub loyalty: u64,
}

/// The API answer.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Funnel {
    pub brand: String,
    pub from: String,
    pub to: String,
    pub by: GroupBy,
    pub rows: Vec<FunnelRow>,
    pub totals: FunnelRow,
}

#[derive(Default)]
struct Acc {
    row: FunnelRow,
    purchases: HashMap<String, u32>,
}

impl Acc {
    fn add(&mut self, stage: Stage, amount: u64, shopper: Option<&str>) {
        match stage {
            Stage::Awareness => self.row.awareness += amount,
            Stage::Interest => self.row.interest += amount,
            Stage::Purchase => {
                self.row.purchase += amount;
                if let Some(s) = shopper {
                    *self.purchases.entry(s.to_owned()).or_default() += 1;
                }
            }
        }
    }

    fn finish(mut self, key: String) -> FunnelRow {
        self.row.key = key;
        self.row.loyalty = self.purchases.values().filter(|n| **n >= 2).count() as u64;
        self.row
    }
}

/// The stage a fact counts toward, as [`caidan_sync::contract::EventData::stage`] decides
/// it from the full event: its type's, and Purchase for an order once picked up.
fn stage_of(f: &Fact) -> Option<Stage> {
    match f.ty? {
        EventType::Order => {
            (f.order_state == Some(OrderState::PickedUp)).then_some(Stage::Purchase)
        }
        ty => ty.stage(),
    }
}

/// Which stage `fact` counts toward for `brand`, and by how much: a claim, redemption or
/// picked-up order counts for its brand, an impression or scan for every brand on screen.
fn classify(brand: &str, f: &Fact) -> Option<(Stage, u64)> {
    let ty = f.ty?;
    let stage = stage_of(f)?;
    let ours = if ty.is_about_one_brand() {
        f.brand.as_deref() == Some(brand)
    } else {
        f.brands.iter().any(|b| b == brand)
    };
    let amount = match stage {
        Stage::Awareness => f.count.unwrap_or(1).max(0) as u64,
        _ => 1,
    };
    ours.then_some((stage, amount))
}

/// Every brand `f` counts toward, with the stage and amount: what a rollup adds for it.
pub fn contributions(f: &Fact) -> Vec<(&str, Stage, u64)> {
    let candidates: Vec<&str> = match f.ty {
        Some(ty) if ty.is_about_one_brand() => f.brand.as_deref().into_iter().collect(),
        Some(_) => {
            let mut b: Vec<&str> = f.brands.iter().map(String::as_str).collect();
            b.sort_unstable();
            b.dedup();
            b
        }
        None => Vec::new(),
    };
    candidates
        .into_iter()
        .filter_map(|b| classify(b, f).map(|(stage, n)| (b, stage, n)))
        .collect()
}

/// The start of the UTC hour `time_ms` falls in.
pub fn hour_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// `[from_ms, to_ms)` widened to whole UTC hours: what a funnel from hourly cells covers.
pub fn whole_hours(from_ms: i64, to_ms: i64) -> (i64, i64) {
    (hour_of(from_ms), hour_of(to_ms.saturating_add(HOUR_MS - 1)))
}

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// The key of an hour row, `YYYY-MM-DDTHH:00Z`.
pub fn hour_key(time_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(time_ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:00Z").to_string())
        .unwrap_or_else(|_| "(invalid)".into())
}

/// The stored `type` values the funnel reads, as an SQL list: every type some of whose
/// facts count (orders too; [`classify`] keeps the picked-up ones).
fn funnel_types_sql() -> String {
    let quoted: Vec<String> = EventType::ALL
        .into_iter()
        .filter(|t| t.in_funnel())
        .map(|t| format!("'{}'", t.as_str()))
        .collect();
    quoted.join(", ")
}

fn key_of(by: GroupBy, f: &Fact) -> String {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    match by {
        GroupBy::Touchpoint => f.device.clone(),
        GroupBy::Scene => or_none(&f.scene),
        GroupBy::Offer => or_none(&f.offer),
        GroupBy::Hour => hour_key(f.time_ms),
    }
}

/// Aggregates `facts` into rows (sorted by key) and totals for `brand`.
pub fn aggregate(
    brand: &str,
    by: GroupBy,
    facts: impl IntoIterator<Item = Fact>,
) -> (Vec<FunnelRow>, FunnelRow) {
    let mut rows: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = Acc::default();
    for f in facts {
        let Some((stage, amount)) = classify(brand, &f) else {
            continue;
        };
        let shopper = f.shopper.as_deref();
        rows.entry(key_of(by, &f))
            .or_default()
            .add(stage, amount, shopper);
        total.add(stage, amount, shopper);
    }
    let rows = rows.into_iter().map(|(k, acc)| acc.finish(k)).collect();
    (rows, total.finish("total".into()))
}

/// Reads the facts of `brand` with `from_ms <= time < to_ms`.
pub fn load_facts(
    conn: &Connection,
    brand: &str,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Vec<Fact>> {
    let quoted = serde_json::Value::from(brand).to_string();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT type, device, scene, offer, time_ms, brand, brands, shopper, count, order_state
         FROM events
         WHERE time_ms >= ?1 AND time_ms < ?2
           AND type IN ({})
           AND (brand = ?3 OR instr(brands, ?4) > 0)",
        funnel_types_sql()
    ))?;
    let rows = stmt.query_map(params![from_ms, to_ms, brand, quoted], |r| {
        let brands: Option<String> = r.get(6)?;
        let ty: String = r.get(0)?;
        Ok(Fact {
            ty: EventType::parse(&ty),
            device: r.get(1)?,
            scene: r.get(2)?,
            offer: r.get(3)?,
            time_ms: r.get(4)?,
            brand: r.get(5)?,
            brands: brands
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or_default(),
            shopper: r.get(7)?,
            count: r.get(8)?,
            order_state: r
                .get::<_, Option<String>>(9)?
                .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok()),
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(ty: &str, device: &str, brand: Option<&str>, brands: &[&str], shopper: &str) -> Fact {
        Fact {
            ty: EventType::parse(&format!("com.caidan.{ty}")),
            device: device.into(),
            scene: Some("cinema".into()),
            offer: brand.map(|b| format!("{b}-offer")),
            time_ms: 1_740_823_200_000 + 90 * 60_000,
            brand: brand.map(str::to_owned),
            brands: brands.iter().map(|b| b.to_string()).collect(),
            shopper: Some(shopper.into()),
            count: Some(7),
            order_state: None,
        }
    }

    fn order(brand: &str, state: OrderState, shopper: &str) -> Fact {
        Fact {
            order_state: Some(state),
            count: None,
            ..fact("order", "d3", Some(brand), &[], shopper)
        }
    }

    #[test]
    fn ranges_widen_to_whole_hours() {
        let h = HOUR_MS;
        assert_eq!(whole_hours(10 * h + 1, 11 * h), (10 * h, 11 * h));
        assert_eq!(whole_hours(10 * h, 11 * h + 1), (10 * h, 12 * h));
        assert_eq!(whole_hours(-1, 0), (-h, 0));
    }

    #[test]
    fn counts_each_stage_for_the_brand_only() {
        let facts = vec![
            fact("impression", "d1", None, &["acme", "bolt"], ""),
            fact("impression", "d2", None, &["bolt"], ""),
            fact("scan", "d1", None, &["acme"], "s1"),
            fact("claim", "d1", Some("acme"), &[], "s1"),
            fact("claim", "d1", Some("bolt"), &[], "s1"),
            fact("redemption", "d1", Some("acme"), &[], "s1"),
            fact("redemption", "d2", Some("acme"), &[], "s1"),
            fact("redemption", "d2", Some("acme"), &[], "s2"),
            fact("rejection", "d2", Some("acme"), &[], "s2"),
        ];
        let (rows, totals) = aggregate("acme", GroupBy::Touchpoint, facts.clone());
        assert_eq!(
            totals,
            FunnelRow {
                key: "total".into(),
                awareness: 7,
                interest: 2,
                purchase: 3,
                loyalty: 1
            }
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key, "d1");
        assert_eq!((rows[0].purchase, rows[0].loyalty), (1, 0));
        assert_eq!((rows[1].purchase, rows[1].loyalty), (2, 0));

        let (rows, _) = aggregate("acme", GroupBy::Hour, facts.clone());
        assert_eq!(rows[0].key, "2025-03-01T11:00Z");
        let (rows, _) = aggregate("acme", GroupBy::Offer, facts);
        assert_eq!(rows[0].key, "(none)");
        assert_eq!(rows[1].key, "acme-offer");
    }

    #[test]
    fn picked_up_orders_are_purchases_of_their_brand() {
        let facts = vec![
            order("acme", OrderState::PickedUp, "s1"),
            order("acme", OrderState::PickedUp, "s1"),
            order("acme", OrderState::PickedUp, "s2"),
            order("bolt", OrderState::PickedUp, "s2"),
            fact("redemption", "d1", Some("acme"), &[], "s2"),
            order("acme", OrderState::Reserved, "s3"),
            order("acme", OrderState::Rejected, "s3"),
            order("acme", OrderState::Expired, "s3"),
            order("acme", OrderState::Released, "s3"),
            order("acme", OrderState::Cancelled, "s3"),
            order("acme", OrderState::DispenseFailed, "s3"),
            Fact {
                count: None,
                ..fact("stock", "d3", Some("acme"), &[], "s3")
            },
        ];
        let (rows, totals) = aggregate("acme", GroupBy::Touchpoint, facts.clone());
        // s1 picked up twice, s2 once and redeemed once: both loyal; s3 never bought.
        assert_eq!(
            totals,
            FunnelRow {
                key: "total".into(),
                awareness: 0,
                interest: 0,
                purchase: 4,
                loyalty: 2
            }
        );
        assert_eq!(rows.iter().map(|r| r.purchase).sum::<u64>(), 4);
        let (_, bolt) = aggregate("bolt", GroupBy::Touchpoint, facts);
        assert_eq!((bolt.purchase, bolt.loyalty), (1, 0));
    }

    /// The funnel decides from stored columns what the contract decides from the event.
    #[test]
    fn order_stages_agree_with_the_contract() {
        use caidan_sync::contract::{EventData, Ident, OrderData, Scene};
        let states = [
            OrderState::Reserved,
            OrderState::Rejected,
            OrderState::PickedUp,
            OrderState::Expired,
            OrderState::Released,
            OrderState::Cancelled,
            OrderState::DispenseFailed,
        ];
        for state in states {
            let data = EventData::Order(OrderData {
                order: Ident::new("o-1").unwrap(),
                state,
                reason: None,
                fault: None,
                by: None,
                lines: vec![],
                stock: vec![],
                shopper: None,
                brand: None,
                offer: None,
                scene: Scene::Vending,
                uptime_ms: 0,
            });
            assert_eq!(
                stage_of(&order("acme", state, "s1")),
                data.stage(),
                "{state:?}"
            );
        }
        let types = funnel_types_sql();
        assert!(types.contains("'com.caidan.order'"), "{types}");
        assert!(
            !types.contains("stock") && !types.contains("rejection"),
            "{types}"
        );
    }
}

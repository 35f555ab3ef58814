//! The offer catalogue: offers, shopper segments and initial stock, as the cloud sends them.
//!
//! A catalogue is validated whole before anything is stored: one bad offer rejects the file,
//! and the error names the offer, the field and the reason.

use std::collections::{BTreeMap, BTreeSet};

pub use caidan_profiles::Capability;
use caidan_profiles::Scene;
pub use caidan_sync::contract::OfferKind;
use jiff::Timestamp;
use jiff::civil::Time;
use serde::{Deserialize, Serialize};

/// Largest catalogue accepted, in offers; bounds memory on small devices.
pub const MAX_OFFERS: usize = 50_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Monotonic version set by the publisher.
    #[serde(default)]
    pub version: u64,
    pub offers: Vec<Offer>,
    /// Segment tags per hashed shopper id.
    #[serde(default)]
    pub segments: BTreeMap<String, Vec<String>>,
    /// Initial stock per SKU; only applied to SKUs the device does not track yet.
    #[serde(default)]
    pub stock: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// Hand out as fast as shoppers come.
    #[default]
    Asap,
    /// Spread the daily quota over the day, weighted by the scene's hourly traffic.
    Even,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Text {
    #[serde(default)]
    pub zh: String,
    #[serde(default)]
    pub en: String,
}

/// A local-time slice of the day; `end` before `start` wraps past midnight.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Daypart {
    pub start: Time,
    pub end: Time,
}

impl Daypart {
    pub fn contains(&self, t: Time) -> bool {
        if self.start <= self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub total: Option<u32>,
    pub per_device_per_day: Option<u32>,
    pub per_shopper: Option<u32>,
}

/// A special price, in the smallest unit of the currency (fen for CNY).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// What the shopper pays.
    pub cents: u32,
    /// ISO 4217 code, e.g. `CNY`.
    pub currency: String,
    /// The usual price, shown struck through.
    #[serde(default)]
    pub list_cents: Option<u32>,
}

impl Price {
    /// `¥9.90`-style text for pages.
    pub fn display(cents: u32, currency: &str) -> String {
        let sign = match currency {
            "CNY" | "JPY" => "¥",
            "USD" => "$",
            "EUR" => "€",
            "GBP" => "£",
            other => return format!("{other} {}.{:02}", cents / 100, cents % 100),
        };
        format!("{sign}{}.{:02}", cents / 100, cents % 100)
    }
}

/// Longest hold of a product or sample egg.
pub const MAX_HOLD_MINUTES: u32 = 24 * 60;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub id: String,
    pub brand: String,
    pub kind: OfferKind,
    pub title: Text,
    #[serde(default)]
    pub description: Text,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    /// Empty means all day.
    #[serde(default)]
    pub dayparts: Vec<Daypart>,
    /// Empty means every scene.
    #[serde(default)]
    pub scenes: Vec<Scene>,
    /// Empty means every region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Empty means every shopper; otherwise the shopper needs one of these tags.
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub requires: Vec<Capability>,
    /// The product a free sample dispenses or a product egg holds; required for both.
    pub sku: Option<String>,
    /// The special price of a product egg; required for `product`.
    #[serde(default)]
    pub price: Option<Price>,
    /// How long a product or sample egg holds its unit for the shopper.
    #[serde(default = "default_hold_minutes")]
    pub hold_minutes: u32,
    #[serde(default)]
    pub quota: Quota,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub pacing: Pacing,
    /// How long a claim stays redeemable.
    #[serde(default = "default_claim_ttl_hours")]
    pub claim_ttl_hours: u32,
}

impl Offer {
    /// An offer with every targeting, quota and pacing field at its default: shown
    /// everywhere, all day, to everyone, weight 1, redeemable for 24 hours.
    pub fn new(id: &str, brand: &str, kind: OfferKind, title: Text) -> Offer {
        Offer {
            id: id.into(),
            brand: brand.into(),
            kind,
            title,
            description: Text::default(),
            valid_from: None,
            valid_until: None,
            dayparts: vec![],
            scenes: vec![],
            regions: vec![],
            segments: vec![],
            requires: vec![],
            sku: None,
            price: None,
            hold_minutes: default_hold_minutes(),
            quota: Quota::default(),
            weight: default_weight(),
            pacing: Pacing::default(),
            claim_ttl_hours: default_claim_ttl_hours(),
        }
    }
}

fn default_weight() -> u32 {
    1
}

fn default_hold_minutes() -> u32 {
    30
}

fn default_claim_ttl_hours() -> u32 {
    72
}

/// Why a catalogue was refused; nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("{origin}: not a valid catalogue: {source}")]
    Parse {
        origin: String,
        source: serde_json::Error,
    },
    #[error("{origin}: offers[{index}] ({id}): {field}: {reason}")]
    Offer {
        origin: String,
        index: usize,
        id: String,
        field: &'static str,
        reason: String,
    },
    #[error("{origin}: {field}: {reason}")]
    Field {
        origin: String,
        field: String,
        reason: String,
    },
}

/// A catalogue file not parsed yet: starting the agent only needs its version to decide
/// whether to import it, and skipping the full parse keeps 10,000 offers out of memory.
#[derive(Debug, Clone)]
pub struct CatalogueFile {
    pub text: String,
    pub origin: String,
}

impl CatalogueFile {
    /// The publisher's version, without building the offers.
    pub fn version(&self) -> Result<u64, CatalogueError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            #[serde(default)]
            version: u64,
        }
        serde_json::from_str::<VersionOnly>(&self.text)
            .map(|v| v.version)
            .map_err(|source| CatalogueError::Parse {
                origin: self.origin.clone(),
                source,
            })
    }

    pub fn parse(&self) -> Result<Catalogue, CatalogueError> {
        Catalogue::from_json(&self.text, &self.origin)
    }
}

/// Offer, brand and SKU ids follow the wire contract's rule, so every event can carry them.
fn valid_id(s: &str) -> bool {
    caidan_sync::contract::Ident::valid(s)
}

impl Catalogue {
    /// Parses and validates catalogue JSON; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, CatalogueError> {
        let cat: Catalogue =
            serde_json::from_str(text).map_err(|source| CatalogueError::Parse {
                origin: origin.to_owned(),
                source,
            })?;
        cat.validate(origin)?;
        Ok(cat)
    }

    pub fn validate(&self, origin: &str) -> Result<(), CatalogueError> {
        let field = |field: String, reason: String| CatalogueError::Field {
            origin: origin.to_owned(),
            field,
            reason,
        };
        if self.offers.is_empty() {
            return Err(field(
                "offers".into(),
                "must hold at least one offer".into(),
            ));
        }
        if self.offers.len() > MAX_OFFERS {
            return Err(field(
                "offers".into(),
                format!("{} offers, at most {MAX_OFFERS} allowed", self.offers.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for (index, offer) in self.offers.iter().enumerate() {
            let bad = |field: &'static str, reason: String| CatalogueError::Offer {
                origin: origin.to_owned(),
                index,
                id: offer.id.clone(),
                field,
                reason,
            };
            if !valid_id(&offer.id) {
                return Err(bad(
                    "id",
                    "1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'".into(),
                ));
            }
            if !seen.insert(offer.id.as_str()) {
                return Err(bad("id", "appears twice in the catalogue".into()));
            }
            if !valid_id(&offer.brand) {
                return Err(bad(
                    "brand",
                    "1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'".into(),
                ));
            }
            if offer.title.zh.trim().is_empty() && offer.title.en.trim().is_empty() {
                return Err(bad("title", "needs Chinese or English text".into()));
            }
            if offer.title.zh.len() > 200 || offer.title.en.len() > 200 {
                return Err(bad("title", "longer than 200 bytes".into()));
            }
            if let (Some(from), Some(until)) = (offer.valid_from, offer.valid_until)
                && from >= until
            {
                return Err(bad(
                    "valid_until",
                    format!("{until} is not after valid_from {from}"),
                ));
            }
            for dp in &offer.dayparts {
                if dp.start == dp.end {
                    return Err(bad(
                        "dayparts",
                        format!("empty daypart {}-{}", dp.start, dp.end),
                    ));
                }
            }
            if offer.weight == 0 || offer.weight > 1_000_000 {
                return Err(bad(
                    "weight",
                    format!("must be 1..=1000000, got {}", offer.weight),
                ));
            }
            if offer.claim_ttl_hours == 0 || offer.claim_ttl_hours > 24 * 366 {
                return Err(bad("claim_ttl_hours", "must be 1..=8784".into()));
            }
            let q = offer.quota;
            for (name, v) in [
                ("quota.total", q.total),
                ("quota.per_device_per_day", q.per_device_per_day),
                ("quota.per_shopper", q.per_shopper),
            ] {
                if v == Some(0) {
                    return Err(bad(
                        name,
                        "0 would never hand the offer out; omit the offer".into(),
                    ));
                }
            }
            if offer.pacing == Pacing::Even && q.per_device_per_day.is_none() {
                return Err(bad(
                    "pacing",
                    "even pacing needs quota.per_device_per_day".into(),
                ));
            }
            if offer.kind.holds_stock() {
                match &offer.sku {
                    None => {
                        return Err(bad(
                            "sku",
                            format!("a {} egg needs the SKU it holds", offer.kind.as_str()),
                        ));
                    }
                    Some(sku) if !valid_id(sku) => {
                        return Err(bad(
                            "sku",
                            "1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'".into(),
                        ));
                    }
                    Some(_) => {}
                }
                if offer.hold_minutes == 0 || offer.hold_minutes > MAX_HOLD_MINUTES {
                    return Err(bad(
                        "hold_minutes",
                        format!("must be 1..={MAX_HOLD_MINUTES}, got {}", offer.hold_minutes),
                    ));
                }
            }
            if offer.kind == OfferKind::FreeSample
                && !offer.requires.contains(&Capability::Dispenser)
            {
                return Err(bad(
                    "requires",
                    "a free_sample must require the dispenser".into(),
                ));
            }
            match (&offer.price, offer.kind) {
                (None, OfferKind::Product) => {
                    return Err(bad("price", "a product egg needs its special price".into()));
                }
                (Some(_), k) if k != OfferKind::Product => {
                    return Err(bad("price", "only product eggs carry a price".into()));
                }
                (Some(p), _) => {
                    if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase())
                    {
                        return Err(bad(
                            "price",
                            format!(
                                "currency must be an ISO 4217 code like CNY, got {:?}",
                                p.currency
                            ),
                        ));
                    }
                    if p.cents > 100_000_000 || p.list_cents.is_some_and(|l| l > 100_000_000) {
                        return Err(bad("price", "at most 1,000,000.00".into()));
                    }
                    if p.list_cents.is_some_and(|l| l <= p.cents) {
                        return Err(bad(
                            "price",
                            "list_cents must be above the special price".into(),
                        ));
                    }
                }
                (None, _) => {}
            }
            for r in &offer.regions {
                if r.trim().is_empty() {
                    return Err(bad("regions", "empty region name".into()));
                }
            }
        }
        for (shopper, tags) in &self.segments {
            if shopper.len() != 32 || !shopper.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(field(
                    format!("segments.{shopper}"),
                    "keys are hashed shopper ids (32 hex digits)".into(),
                ));
            }
            if tags.iter().any(|t| t.trim().is_empty()) {
                return Err(field(format!("segments.{shopper}"), "empty tag".into()));
            }
        }
        for (sku, qty) in &self.stock {
            if !valid_id(sku) {
                return Err(field(format!("stock.{sku}"), "not a valid SKU".into()));
            }
            if !(0..=i64::from(caidan_sync::contract::inventory::MAX_ON_HAND)).contains(qty) {
                return Err(field(
                    format!("stock.{sku}"),
                    format!("stock must be 0..=1000000, got {qty}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const DEMO: &str = include_str!("../demo/catalogue.json");

    #[test]
    fn demo_catalogue_is_valid() {
        let cat = Catalogue::from_json(DEMO, "demo").unwrap();
        assert!(cat.offers.len() >= 5);
    }

    #[test]
    fn one_bad_offer_rejects_the_whole_catalogue_with_its_name() {
        let mut v: serde_json::Value = serde_json::from_str(DEMO).unwrap();
        v["offers"][2]["weight"] = 0.into();
        let err = Catalogue::from_json(&v.to_string(), "bad.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.json") && err.contains("offers[2]") && err.contains("weight"),
            "{err}"
        );

        let mut v: serde_json::Value = serde_json::from_str(DEMO).unwrap();
        v["offers"][0]["colour"] = "red".into();
        let err = Catalogue::from_json(&v.to_string(), "bad.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field") && err.contains("colour"),
            "{err}"
        );
    }

    #[test]
    fn product_eggs_need_a_sku_and_a_price() {
        let offer = |extra: serde_json::Value| {
            let mut o = serde_json::json!({"id": "p1", "brand": "lumi", "kind": "product",
                "title": {"en": "Surprise"}, "sku": "cola-can"});
            for (k, v) in extra.as_object().unwrap() {
                o[k] = v.clone();
            }
            serde_json::json!({"version": 1, "offers": [o]}).to_string()
        };
        let err = |extra| {
            Catalogue::from_json(&offer(extra), "c")
                .unwrap_err()
                .to_string()
        };
        assert!(err(serde_json::json!({})).contains("price"));
        assert!(
            err(serde_json::json!({"price": {"cents": 990, "currency": "rmb"}}))
                .contains("ISO 4217")
        );
        assert!(
            err(serde_json::json!({"price": {"cents": 990, "currency": "CNY", "list_cents": 500}}))
                .contains("list_cents")
        );
        assert!(
            err(serde_json::json!({"price": {"cents": 990, "currency": "CNY"}, "hold_minutes": 0}))
                .contains("hold_minutes")
        );
        let ok = Catalogue::from_json(
            &offer(
                serde_json::json!({"price": {"cents": 990, "currency": "CNY", "list_cents": 1500}}),
            ),
            "c",
        )
        .unwrap();
        assert_eq!(ok.offers[0].hold_minutes, 30);
        assert_eq!(Price::display(990, "CNY"), "¥9.90");
    }

    #[test]
    fn dayparts_wrap_midnight() {
        let late = Daypart {
            start: Time::constant(22, 0, 0, 0),
            end: Time::constant(2, 0, 0, 0),
        };
        assert!(late.contains(Time::constant(23, 30, 0, 0)));
        assert!(late.contains(Time::constant(1, 0, 0, 0)));
        assert!(!late.contains(Time::constant(12, 0, 0, 0)));
    }
}

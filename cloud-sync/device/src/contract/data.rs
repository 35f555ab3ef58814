//! The `data` of each event type: typed fields with bounds, shared by the agent that writes
//! them and the data bank that reads them.

use std::borrow::Cow;

use caidan_profiles::Scene;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::config::ConfigData;
use super::event::Stage;
use super::ids::{ClaimCode, Ident, ShopperHash};
use super::inventory::{MAX_LINES, MAX_NOTE_CHARS, OrderData, OrderState, StockData};

/// Most brands one impression or scan names.
pub const MAX_BRANDS: usize = 128;
/// Most QR impressions one per-minute count may carry (a screen refreshing every frame at
/// 120 Hz shows 7,200 a minute).
pub const MAX_IMPRESSIONS_PER_MINUTE: u64 = 1_000_000;

/// What kind of egg an offer is.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum OfferKind {
    Coupon,
    FreeSample,
    Discount,
    /// A brand story: nothing to redeem; the fallback so no egg is ever empty.
    Content,
    /// A surprise product at a special price: one unit held here for the shopper, picked up
    /// with a pickup code.
    Product,
}

impl OfferKind {
    pub const ALL: [OfferKind; 5] = [
        OfferKind::Coupon,
        OfferKind::FreeSample,
        OfferKind::Discount,
        OfferKind::Content,
        OfferKind::Product,
    ];

    pub fn parse(s: &str) -> Option<OfferKind> {
        OfferKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OfferKind::Coupon => "coupon",
            OfferKind::FreeSample => "free_sample",
            OfferKind::Discount => "discount",
            OfferKind::Content => "content",
            OfferKind::Product => "product",
        }
    }

    /// Coupons and discounts are redeemed at the counter; content has nothing to redeem,
    /// and samples and products are picked up with their pickup code.
    pub fn redeemable(self) -> bool {
        matches!(self, OfferKind::Coupon | OfferKind::Discount)
    }

    /// Samples and products hold a unit of stock for the shopper until picked up.
    pub fn holds_stock(self) -> bool {
        matches!(self, OfferKind::FreeSample | OfferKind::Product)
    }
}

/// Why a redemption was refused and recorded (a fraud signal for the brand).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// The claim was redeemed before.
    AlreadyRedeemed,
    /// The claim's redemption window has passed.
    Expired,
}

impl RejectionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionReason::AlreadyRedeemed => "already_redeemed",
            RejectionReason::Expired => "expired",
        }
    }
}

pub(crate) fn scene_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = Scene::ALL.iter().map(|s| s.as_str()).collect();
    schemars::json_schema!({ "type": "string", "enum": names })
}

/// `com.caidan.impression`: QR impressions on screen, one event per minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImpressionData {
    /// Start of the minute (RFC 3339).
    pub minute: Timestamp,
    /// QR impressions in that minute.
    pub count: u64,
    /// Brands with an offer in rotation then.
    pub brands: Vec<Ident>,
    /// The touchpoint's scene.
    #[schemars(schema_with = "scene_schema")]
    pub scene: Scene,
    /// The device's monotonic clock, in ms since the agent started.
    pub uptime_ms: u64,
}

/// `com.caidan.scan`: a shopper opened the egg page with a valid QR token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanData {
    /// Hashed shopper id.
    pub shopper: ShopperHash,
    /// Brands with an offer in rotation then.
    pub brands: Vec<Ident>,
    /// The touchpoint's scene.
    #[schemars(schema_with = "scene_schema")]
    pub scene: Scene,
    /// The device's monotonic clock, in ms since the agent started.
    pub uptime_ms: u64,
}

/// `com.caidan.claim`: a shopper got an offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimData {
    /// Hashed shopper id.
    pub shopper: ShopperHash,
    /// The offer handed out.
    pub offer: Ident,
    /// The offer's brand.
    pub brand: Ident,
    /// The offer's kind.
    pub kind: OfferKind,
    /// The code the shopper shows or types.
    pub claim_code: ClaimCode,
    /// Whether this was the fallback egg (nothing else was eligible).
    pub fallback: bool,
    /// When the claim stops being redeemable.
    pub expires_at: Timestamp,
    /// Hour of the claim in the device's time zone.
    #[schemars(range(max = 23))]
    pub local_hour: u8,
    /// The touchpoint's scene.
    #[schemars(schema_with = "scene_schema")]
    pub scene: Scene,
    /// The device's monotonic clock, in ms since the agent started.
    pub uptime_ms: u64,
}

/// `com.caidan.redemption`: a claim was redeemed at this touchpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedemptionData {
    /// Hashed shopper id of the claim.
    pub shopper: ShopperHash,
    /// The claim's offer.
    pub offer: Ident,
    /// The offer's brand.
    pub brand: Ident,
    /// The redeemed claim.
    pub claim_code: ClaimCode,
    /// The touchpoint's scene.
    #[schemars(schema_with = "scene_schema")]
    pub scene: Scene,
    /// The device's monotonic clock, in ms since the agent started.
    pub uptime_ms: u64,
}

/// `com.caidan.rejection`: a redemption was refused for a known claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectionData {
    /// Why it was refused.
    pub reason: RejectionReason,
    /// The claim's offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<Ident>,
    /// The offer's brand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Ident>,
    /// The claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_code: Option<ClaimCode>,
    /// The touchpoint's scene.
    #[schemars(schema_with = "scene_schema")]
    pub scene: Scene,
    /// The device's monotonic clock, in ms since the agent started.
    pub uptime_ms: u64,
}

/// An event's `data`, by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    Impression(ImpressionData),
    Scan(ScanData),
    Claim(ClaimData),
    Redemption(RedemptionData),
    Rejection(RejectionData),
    Order(OrderData),
    Stock(StockData),
    Config(ConfigData),
}

/// A `data` that does not satisfy its type's bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data: {0}")]
pub struct DataError(pub Cow<'static, str>);

impl EventData {
    /// The event type this data belongs to.
    pub fn event_type(&self) -> super::EventType {
        use super::EventType as T;
        match self {
            EventData::Impression(_) => T::Impression,
            EventData::Scan(_) => T::Scan,
            EventData::Claim(_) => T::Claim,
            EventData::Redemption(_) => T::Redemption,
            EventData::Rejection(_) => T::Rejection,
            EventData::Order(_) => T::Order,
            EventData::Stock(_) => T::Stock,
            EventData::Config(_) => T::Config,
        }
    }

    /// The AIPL stage this fact counts toward: the type's, and Purchase for an order picked
    /// up.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            EventData::Order(d) => (d.state == OrderState::PickedUp).then_some(Stage::Purchase),
            other => other.event_type().stage(),
        }
    }

    /// Parses the `data` JSON of an event of type `ty`, then checks its bounds.
    pub fn parse(ty: super::EventType, json: &str) -> Result<EventData, DataError> {
        use super::EventType as T;
        fn typed<D: serde::de::DeserializeOwned>(json: &str) -> Result<D, DataError> {
            serde_json::from_str(json).map_err(|e| DataError(super::bounded_reason(&e).into()))
        }
        let data = match ty {
            T::Impression => EventData::Impression(typed(json)?),
            T::Scan => EventData::Scan(typed(json)?),
            T::Claim => EventData::Claim(typed(json)?),
            T::Redemption => EventData::Redemption(typed(json)?),
            T::Rejection => EventData::Rejection(typed(json)?),
            T::Order => EventData::Order(typed(json)?),
            T::Stock => EventData::Stock(typed(json)?),
            T::Config => EventData::Config(typed(json)?),
        };
        data.check()?;
        Ok(data)
    }

    /// The bounds serde cannot express.
    pub fn check(&self) -> Result<(), DataError> {
        let brands = match self {
            EventData::Impression(d) => {
                if d.count > MAX_IMPRESSIONS_PER_MINUTE {
                    return Err(DataError("count is above 1000000 a minute".into()));
                }
                Some(&d.brands)
            }
            EventData::Scan(d) => Some(&d.brands),
            EventData::Claim(d) if d.local_hour > 23 => {
                return Err(DataError("local_hour must be 0-23".into()));
            }
            EventData::Order(d) if d.lines.len() > MAX_LINES || d.stock.len() > MAX_LINES => {
                return Err(DataError(
                    format!("an order event has at most {MAX_LINES} lines").into(),
                ));
            }
            EventData::Stock(d)
                if d.note
                    .as_ref()
                    .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) =>
            {
                return Err(DataError(
                    format!("note is longer than {MAX_NOTE_CHARS} characters").into(),
                ));
            }
            _ => None,
        };
        if brands.is_some_and(|b| b.len() > MAX_BRANDS) {
            return Err(DataError(
                format!("brands lists more than {MAX_BRANDS}").into(),
            ));
        }
        Ok(())
    }

    pub fn scene(&self) -> Scene {
        match self {
            EventData::Impression(d) => d.scene,
            EventData::Scan(d) => d.scene,
            EventData::Claim(d) => d.scene,
            EventData::Redemption(d) => d.scene,
            EventData::Rejection(d) => d.scene,
            EventData::Order(d) => d.scene,
            EventData::Stock(d) => d.scene,
            EventData::Config(d) => d.scene,
        }
    }

    /// The hashed shopper the fact is about, if any.
    pub fn shopper(&self) -> Option<&ShopperHash> {
        match self {
            EventData::Scan(d) => Some(&d.shopper),
            EventData::Claim(d) => Some(&d.shopper),
            EventData::Redemption(d) => Some(&d.shopper),
            EventData::Order(d) => d.shopper.as_ref(),
            EventData::Impression(_)
            | EventData::Rejection(_)
            | EventData::Stock(_)
            | EventData::Config(_) => None,
        }
    }

    /// The offer the fact is about, if any.
    pub fn offer(&self) -> Option<&Ident> {
        match self {
            EventData::Claim(d) => Some(&d.offer),
            EventData::Redemption(d) => Some(&d.offer),
            EventData::Rejection(d) => d.offer.as_ref(),
            EventData::Order(d) => d.offer.as_ref(),
            EventData::Impression(_)
            | EventData::Scan(_)
            | EventData::Stock(_)
            | EventData::Config(_) => None,
        }
    }

    /// The brand of the offer the fact is about, if any.
    /// The writing run's monotonic clock when the fact happened; every type but config
    /// answers carries it.
    pub fn uptime_ms(&self) -> Option<u64> {
        match self {
            EventData::Impression(d) => Some(d.uptime_ms),
            EventData::Scan(d) => Some(d.uptime_ms),
            EventData::Claim(d) => Some(d.uptime_ms),
            EventData::Redemption(d) => Some(d.uptime_ms),
            EventData::Rejection(d) => Some(d.uptime_ms),
            EventData::Order(d) => Some(d.uptime_ms),
            EventData::Stock(d) => Some(d.uptime_ms),
            EventData::Config(_) => None,
        }
    }

    pub fn brand(&self) -> Option<&Ident> {
        match self {
            EventData::Claim(d) => Some(&d.brand),
            EventData::Redemption(d) => Some(&d.brand),
            EventData::Rejection(d) => d.brand.as_ref(),
            EventData::Order(d) => d.brand.as_ref(),
            EventData::Impression(_)
            | EventData::Scan(_)
            | EventData::Stock(_)
            | EventData::Config(_) => None,
        }
    }

    /// Brands on screen, for impressions and scans.
    pub fn brands(&self) -> &[Ident] {
        match self {
            EventData::Impression(d) => &d.brands,
            EventData::Scan(d) => &d.brands,
            _ => &[],
        }
    }

    /// How many facts this event stands for (impressions are counted per minute).
    pub fn count(&self) -> u64 {
        match self {
            EventData::Impression(d) => d.count,
            _ => 1,
        }
    }
}

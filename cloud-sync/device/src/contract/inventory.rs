//! Stock and pickup orders on the wire: what the order system sends a device on
//! `.../d/{device}/orders`, and the order and stock events the device records.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::data::scene_schema;
use super::ids::{Ident, PickupCode, ShopperHash};
use caidan_profiles::Scene;
use jiff::Timestamp;

/// Largest order message a device accepts.
pub const MAX_ORDER_BYTES: usize = 16 * 1024;
/// Most lines one order may have.
pub const MAX_LINES: usize = 20;
/// Most units of one SKU one line may ask for.
pub const MAX_QTY: u32 = 99;
/// Most units of one SKU a touchpoint may hold.
pub const MAX_ON_HAND: u32 = 1_000_000;
/// Longest free-text note on a stock change.
pub const MAX_NOTE_CHARS: usize = 200;

/// One line of an order: a SKU and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    /// The SKU.
    pub sku: Ident,
    /// Units, 1-99.
    #[schemars(range(min = 1, max = 99))]
    pub qty: u32,
}

/// A buy-online-pick-up-here order to reserve at this touchpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PickupOrder {
    /// The order system's id; an order delivered twice is reserved once.
    pub order_id: Ident,
    /// What to reserve: 1-20 lines, each SKU once.
    pub lines: Vec<OrderLine>,
    /// The code the shopper gives at pickup (the device keeps only its keyed hash).
    pub pickup_code: PickupCode,
    /// When the reservation is released if nobody picked it up.
    pub expires_at: Timestamp,
    /// The shopper's hashed id, when the order system knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopper: Option<ShopperHash>,
    /// The brand the order counts for in the funnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Ident>,
}

/// The shopper cancelled: release the reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    /// The order to cancel.
    pub order_id: Ident,
}

/// Units on hand of a SKU as the store system counted them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    /// The SKU.
    pub sku: Ident,
    /// Units on hand, 0-1000000 (reserved units included).
    #[schemars(range(max = 1_000_000))]
    pub on_hand: u32,
}

/// A message on `.../d/{device}/orders`, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderMessage {
    Order(PickupOrder),
    Cancel(CancelOrder),
    SetStock(SetStock),
}

/// Why an order message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderMessageError {
    #[error("order message of {0} bytes is over the {MAX_ORDER_BYTES} byte limit")]
    Oversized(usize),
    #[error("garbled order message: {0}")]
    Garbled(String),
    /// The message names an order but breaks a bound: the order is rejected as `invalid`.
    #[error("order {order_id}: {reason}")]
    Invalid {
        order_id: Ident,
        reason: Cow<'static, str>,
    },
}

impl OrderMessage {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an order message always serialises")
    }

    /// Parses and checks one message. A message whose order id can be read but that breaks
    /// a bound is [`OrderMessageError::Invalid`], so the order system hears about it.
    pub fn parse(payload: &[u8]) -> Result<OrderMessage, OrderMessageError> {
        if payload.len() > MAX_ORDER_BYTES {
            return Err(OrderMessageError::Oversized(payload.len()));
        }
        let msg = match serde_json::from_slice::<OrderMessage>(payload) {
            Ok(m) => m,
            Err(e) => {
                let reason = super::bounded_reason(&e);
                return Err(match named_order(payload) {
                    Some(order_id) => OrderMessageError::Invalid {
                        order_id,
                        reason: reason.into(),
                    },
                    None => OrderMessageError::Garbled(reason),
                });
            }
        };
        msg.check()?;
        Ok(msg)
    }

    /// The bounds serde cannot express.
    fn check(&self) -> Result<(), OrderMessageError> {
        let invalid = |order_id: &Ident, reason: String| OrderMessageError::Invalid {
            order_id: order_id.clone(),
            reason: reason.into(),
        };
        match self {
            OrderMessage::Order(o) => {
                if o.lines.is_empty() || o.lines.len() > MAX_LINES {
                    return Err(invalid(
                        &o.order_id,
                        format!("an order has 1-{MAX_LINES} lines, got {}", o.lines.len()),
                    ));
                }
                let mut seen = std::collections::BTreeSet::new();
                for l in &o.lines {
                    if !(1..=MAX_QTY).contains(&l.qty) {
                        return Err(invalid(
                            &o.order_id,
                            format!("qty of {} must be 1-{MAX_QTY}, got {}", l.sku, l.qty),
                        ));
                    }
                    if !seen.insert(l.sku.as_str()) {
                        return Err(invalid(
                            &o.order_id,
                            format!("sku {} is on two lines", l.sku),
                        ));
                    }
                }
                Ok(())
            }
            OrderMessage::SetStock(s) if s.on_hand > MAX_ON_HAND => Err(
                OrderMessageError::Garbled(format!("on_hand must be at most {MAX_ON_HAND}")),
            ),
            _ => Ok(()),
        }
    }
}

/// The order id of a message that failed to parse, when it has a valid one.
fn named_order(payload: &[u8]) -> Option<Ident> {
    #[derive(Deserialize)]
    struct Named {
        #[serde(rename = "type")]
        ty: String,
        order_id: Ident,
    }
    serde_json::from_slice::<Named>(payload)
        .ok()
        .filter(|n| n.ty == "order")
        .map(|n| n.order_id)
}

/// Where an order (or an egg's hold) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Units held for the shopper until `expires_at`.
    Reserved,
    /// Refused: nothing was held (see `reason`).
    Rejected,
    /// Handed over or dispensed; the units left the stock.
    PickedUp,
    /// Its window ended unpicked; the units went back to the available stock.
    Expired,
    /// Staff released the hold before its window ended.
    Released,
    /// The order system cancelled it; the units went back.
    Cancelled,
    /// The dispenser failed (see `fault`); the order stays reserved and can be retried.
    DispenseFailed,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Reserved => "reserved",
            OrderState::Rejected => "rejected",
            OrderState::PickedUp => "picked_up",
            OrderState::Expired => "expired",
            OrderState::Released => "released",
            OrderState::Cancelled => "cancelled",
            OrderState::DispenseFailed => "dispense_failed",
        }
    }
}

/// Why an order was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderRejection {
    /// Not enough units available for a line.
    OutOfStock,
    /// A SKU this touchpoint has never stocked.
    UnknownSku,
    /// A vending touchpoint whose dispenser holds no slot for a SKU.
    CannotDispense,
    /// `expires_at` had passed when the order arrived.
    Expired,
    /// The message broke a bound, or its pickup code is held by another open order.
    Invalid,
}

impl OrderRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderRejection::OutOfStock => "out_of_stock",
            OrderRejection::UnknownSku => "unknown_sku",
            OrderRejection::CannotDispense => "cannot_dispense",
            OrderRejection::Expired => "expired",
            OrderRejection::Invalid => "invalid",
        }
    }
}

/// What went wrong at the dispenser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DispenseFault {
    /// The item stuck; nothing came out.
    Jam,
    /// The slot was empty although the stock said otherwise.
    Empty,
    /// The dispenser did not answer.
    Offline,
}

impl DispenseFault {
    pub fn as_str(self) -> &'static str {
        match self {
            DispenseFault::Jam => "jam",
            DispenseFault::Empty => "empty",
            DispenseFault::Offline => "offline",
        }
    }
}

/// Who handed the units over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Handover {
    /// Staff at the counter, after checking the pickup code.
    Staff,
    /// The machine's dispenser, after the shopper typed the code.
    Dispenser,
}

/// A SKU's stock at this touchpoint after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockLevel {
    /// The SKU.
    pub sku: Ident,
    /// Units physically here (reserved ones included).
    pub on_hand: u32,
    /// Units held for orders and eggs.
    pub reserved: u32,
}

impl StockLevel {
    /// Units a new order or egg may take.
    pub fn available(&self) -> u32 {
        self.on_hand.saturating_sub(self.reserved)
    }
}

/// `com.caidan.order`: a pickup order, or the hold of a product or sample egg, changed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderData {
    /// The order id (`egg-{claim code}` for an egg's hold).
    pub order: Ident,
    /// The new state.
    pub state: OrderState,
    /// Why it was rejected, with `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<OrderRejection>,
    /// What failed at the dispenser, with `dispense_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<DispenseFault>,
    /// Who handed it over, with `picked_up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Handover>,
    /// The order's lines (empty when a rejected message had none readable).
    pub lines: Vec<OrderLine>,
    /// Stock of the lines' SKUs after the change.
    pub stock: Vec<StockLevel>,
    /// Hashed shopper id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopper: Option<ShopperHash>,
    /// The brand the order counts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Ident>,
    /// The egg's offer, for an egg's hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<Ident>,
    /// The touchpoint's scene.
    #[schemars(schema_with = "scene_schema")]
    pub scene: Scene,
    /// The device's monotonic clock, in ms since the agent started.
    pub uptime_ms: u64,
}

/// Why units on hand changed outside orders and eggs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockReason {
    /// Goods arrived.
    Restock,
    /// A count found a different number.
    Count,
    /// Units damaged or lost.
    Damage,
    /// The store system set the count by message.
    Cloud,
    /// The first stock of a SKU, from the offer catalogue.
    Catalogue,
}

impl StockReason {
    pub const ALL: [StockReason; 5] = [
        StockReason::Restock,
        StockReason::Count,
        StockReason::Damage,
        StockReason::Cloud,
        StockReason::Catalogue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StockReason::Restock => "restock",
            StockReason::Count => "count",
            StockReason::Damage => "damage",
            StockReason::Cloud => "cloud",
            StockReason::Catalogue => "catalogue",
        }
    }

    pub fn parse(s: &str) -> Option<StockReason> {
        StockReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// `com.caidan.stock`: units on hand of a SKU changed by staff, a count or the store system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockData {
    /// The SKU.
    pub sku: Ident,
    /// Units physically here after the change (reserved ones included).
    pub on_hand: u32,
    /// Units held for orders and eggs.
    pub reserved: u32,
    /// The change of units on hand.
    pub delta: i64,
    /// Why.
    pub reason: StockReason,
    /// What staff wrote about it, up to 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The touchpoint's scene.
    #[schemars(schema_with = "scene_schema")]
    pub scene: Scene,
    /// The device's monotonic clock, in ms since the agent started.
    pub uptime_ms: u64,
}

impl StockData {
    /// The SKU's stock after the change.
    pub fn level(&self) -> StockLevel {
        StockLevel {
            sku: self.sku.clone(),
            on_hand: self.on_hand,
            reserved: self.reserved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(lines: &str) -> String {
        format!(
            r#"{{"type":"order","order_id":"o-1","lines":{lines},"pickup_code":"48219930","expires_at":"2026-12-01T12:00:00Z"}}"#
        )
    }

    #[test]
    fn parses_each_message_type() {
        let m = OrderMessage::parse(order(r#"[{"sku":"cola","qty":2}]"#).as_bytes()).unwrap();
        let OrderMessage::Order(o) = &m else {
            panic!("{m:?}")
        };
        assert_eq!(o.lines[0].qty, 2);
        assert_eq!(OrderMessage::parse(&m.to_json()).unwrap(), m);
        assert!(matches!(
            OrderMessage::parse(br#"{"type":"cancel","order_id":"o-1"}"#),
            Ok(OrderMessage::Cancel(_))
        ));
        assert!(matches!(
            OrderMessage::parse(br#"{"type":"set_stock","sku":"cola","on_hand":12}"#),
            Ok(OrderMessage::SetStock(_))
        ));
    }

    #[test]
    fn a_named_order_that_breaks_a_bound_is_invalid() {
        for lines in [
            "[]",
            r#"[{"sku":"cola","qty":0}]"#,
            r#"[{"sku":"cola","qty":100}]"#,
            r#"[{"sku":"cola","qty":1},{"sku":"cola","qty":1}]"#,
            r#"[{"sku":"co la","qty":1}]"#,
            r#"[{"sku":"cola","qty":1,"extra":true}]"#,
        ] {
            let e = OrderMessage::parse(order(lines).as_bytes()).unwrap_err();
            assert!(
                matches!(&e, OrderMessageError::Invalid { order_id, .. } if order_id.as_str() == "o-1"),
                "{lines}: {e:?}"
            );
        }
    }

    #[test]
    fn garbage_and_giants_are_refused_without_an_order() {
        assert!(matches!(
            OrderMessage::parse(b"\xff\x00junk"),
            Err(OrderMessageError::Garbled(_))
        ));
        assert!(matches!(
            OrderMessage::parse(br#"{"type":"launch","order_id":"o-1"}"#),
            Err(OrderMessageError::Garbled(_))
        ));
        let big = vec![b' '; MAX_ORDER_BYTES + 1];
        assert!(matches!(
            OrderMessage::parse(&big),
            Err(OrderMessageError::Oversized(_))
        ));
        assert!(matches!(
            OrderMessage::parse(br#"{"type":"set_stock","sku":"cola","on_hand":1000001}"#),
            Err(OrderMessageError::Garbled(_))
        ));
    }

    #[test]
    fn a_bad_pickup_code_is_not_echoed() {
        let msg = r#"{"type":"order","order_id":"o-1","lines":[{"sku":"cola","qty":1}],"pickup_code":"secret!42","expires_at":"2026-12-01T12:00:00Z"}"#;
        let e = OrderMessage::parse(msg.as_bytes()).unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn stock_data_round_trips() {
        let d = StockData {
            sku: Ident::new("cola").unwrap(),
            on_hand: 5,
            reserved: 2,
            delta: 3,
            reason: StockReason::Restock,
            note: None,
            scene: Scene::Vending,
            uptime_ms: 1,
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.starts_with(r#"{"sku":"cola","on_hand":5,"reserved":2,"delta":3"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<StockData>(&json).unwrap(), d);
    }
}

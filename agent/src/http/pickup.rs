//! Handing holds over: staff at the counter with the shopper's pickup code, or the shopper
//! at the vending keypad, which dispenses. Plus the staff's view of waiting orders.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use caidan_screens::strings::PickupStatus;
use caidan_sync::contract::{DispenseFault, PickupCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use super::auth::{self, Entrant};
use super::extract::{JsonBody, bad_path};
use super::{ApiError, AppState};
use crate::directory::NearestStore;
use crate::inventory::Units;
use crate::inventory::dispenser::{Dispenser, Stopped};
use crate::store::{HoldView, NotOpen, PickupRefusal};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PickupRequest {
    /// 4-16 digits or letters, as the order gave them.
    #[schemars(length(min = 4, max = 32))]
    pub(super) code: String,
}

fn bad_body(state: &AppState, e: JsonRejection) -> ApiError {
    state.metrics.rejection("bad_request");
    ApiError::new(e.status(), "bad_request", e.body_text())
}

/// The pickup code as typed, or a 400 that counts as a wrong code.
fn parse_code(
    state: &AppState,
    who: Entrant,
    now: i64,
    text: &str,
) -> Result<PickupCode, ApiError> {
    PickupCode::typed(text).map_err(|_| {
        state.metrics.rejection("code_malformed");
        auth::wrong_code(state, who, now);
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "code_malformed",
            "a pickup code is 4-16 digits or letters",
        )
    })
}

fn refused(state: &AppState, who: Entrant, now: i64, r: PickupRefusal) -> ApiError {
    state.metrics.rejection(r.reason());
    if r == PickupRefusal::UnknownCode {
        auth::wrong_code(state, who, now);
    }
    let status = match r {
        PickupRefusal::UnknownCode => StatusCode::NOT_FOUND,
        PickupRefusal::AlreadyPickedUp | PickupRefusal::Dispensing => StatusCode::CONFLICT,
        PickupRefusal::Expired | PickupRefusal::Cancelled | PickupRefusal::Released => {
            StatusCode::GONE
        }
    };
    ApiError::new(status, r.reason(), r.to_string())
}

/// The answer for a hold handed over.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HandedOver {
    pub picked_up: bool,
    pub order: HoldView,
    /// The brand's nearest store, for what the touchpoint could not hand over.
    pub nearest_store: Option<NearestStore>,
}

fn handed_over(state: &AppState, hold: HoldView) -> HandedOver {
    HandedOver {
        picked_up: true,
        nearest_store: hold.brand.as_deref().and_then(|b| state.nearest_store(b)),
        order: hold,
    }
}

/// Waiting orders, or recent hand-overs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Orders {
    pub orders: Vec<HoldView>,
}

/// The order a path names.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct OrderPath {
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub id: String,
}

/// An order given back before its window ended.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Released {
    pub released: bool,
    pub order: String,
}

/// `POST /api/v1/pickups`: staff hand over the hold behind a pickup code, exactly once.
pub async fn staff_pickup(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PickupRequest>,
) -> Result<Json<HandedOver>, ApiError> {
    let who = Entrant::Staff(auth::staff(&state, &headers)?);
    let now = state.clock.now_ms();
    auth::check_lockout(&state, who, now)?;
    let req = body.map_err(|e| bad_body(&state, e))?;
    let code = parse_code(&state, who, now, &req.code)?;
    let hash = state.pickups.hash(&code);
    match state
        .writer
        .pickup(hash)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(hold) => {
            state.metrics.pickup("staff");
            Ok(Json(handed_over(&state, hold)))
        }
        Err(r) => Err(refused(&state, who, now, r)),
    }
}

/// What came out of the dispenser for `lines`, stopping at the first fault.
fn run_dispenser(d: &dyn Dispenser, lines: &[Units]) -> (Vec<Units>, Option<DispenseFault>) {
    let mut given = Vec::new();
    for l in lines {
        match d.dispense(&l.sku, l.qty) {
            Ok(()) => given.push(l.clone()),
            Err(Stopped { given: g, fault }) => {
                if g > 0 {
                    given.push(Units {
                        sku: l.sku.clone(),
                        qty: g.min(l.qty),
                    });
                }
                return (given, Some(fault));
            }
        }
    }
    (given, None)
}

/// `POST /api/v1/vending/pickups`: the shopper types the pickup code on the keypad (or the
/// phone at the machine sends it) and the machine dispenses. No staff token; wrong codes
/// count per client address and for the keypad. A jam leaves the order reserved, to try
/// again; only what came out counts as handed over.
pub async fn vending_pickup(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<PickupRequest>,
) -> Result<Json<HandedOver>, ApiError> {
    let Some(dispenser) = state.dispenser.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_dispenser",
            "this touchpoint has no dispenser: pick up at the counter",
        ));
    };
    if !state.live().features.keypad {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "keypad_off",
            "键盘取货暂停 · The keypad is switched off here: pick up at the counter",
        ));
    }
    if let Err(crate::limits::RetryAfter(wait)) = state.limiters.scan_from(client.ip()) {
        state.metrics.rejection("keypad_per_client");
        return Err(ApiError::too_many(
            "keypad_per_client",
            "请稍后再试 · Too many tries from here: please wait a moment",
            wait,
        ));
    }
    let who = Entrant::Keypad(client.ip());
    let now = state.clock.now_ms();
    auth::check_lockout(&state, who, now)?;
    let req = body.map_err(|e| bad_body(&state, e))?;
    let code = parse_code(&state, who, now, &req.code)?;
    let hash = state.pickups.hash(&code);
    // The whole dispense runs as its own task: a shopper who walks away mid-dispense (the
    // request dropped) must not leave the hold half-recorded.
    let writer = state.writer.clone();
    let task = tokio::spawn(async move {
        let claimed = writer.begin_dispense(hash).await?;
        let d = match claimed {
            Ok(d) => d,
            Err(r) => return Ok(Err(r)),
        };
        let lines = d.lines.clone();
        let mech = dispenser.clone();
        let (given, fault) = tokio::task::spawn_blocking(move || run_dispenser(&*mech, &lines))
            .await
            .unwrap_or_else(|_| (Vec::new(), Some(DispenseFault::Offline)));
        let hold = writer.finish_dispense(d.id, given, fault).await?;
        Ok(Ok((hold, fault)))
    });
    let outcome: Result<_, crate::store::StoreError> = task.await.map_err(ApiError::internal)?;
    let status = match &outcome {
        Ok(Err(_)) => Some(PickupStatus::WrongCode),
        Ok(Ok((_, None))) => Some(PickupStatus::PickedUp),
        Ok(Ok((_, Some(_)))) => Some(PickupStatus::DispenseJam),
        Err(_) => None,
    };
    if let Some(status) = status {
        state
            .signals
            .pickup(crate::display::view::Moment::Pickup { status }, now);
    }
    match outcome.map_err(ApiError::internal)? {
        Err(r) => Err(refused(&state, who, now, r)),
        Ok((hold, None)) => {
            state.metrics.pickup("dispenser");
            Ok(Json(handed_over(&state, hold)))
        }
        Ok((hold, Some(fault))) => {
            state.metrics.rejection("dispense_failed");
            tracing::warn!(order = %hold.id, fault = fault.as_str(), "dispense failed; the order stays reserved");
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "dispense_failed",
                format!(
                    "出货失败，订单仍为你保留，请再输入一次取货码 · The machine could not dispense ({}): your order is still held, enter the code again",
                    fault.as_str()
                ),
            );
            err.retry_after = Some(std::time::Duration::from_secs(1));
            Err(err)
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    /// Which orders: the open ones (the default) or the recent hand-overs.
    #[serde(default)]
    view: Option<OrdersView>,
    /// At most this many (100 by default; clamped to 1..=500).
    #[serde(default)]
    limit: Option<usize>,
}

/// The lists `GET /api/v1/orders` gives.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrdersView {
    /// Waiting orders and egg holds, soonest to end first.
    Open,
    /// Recent hand-overs.
    Handovers,
}

/// `GET /api/v1/orders?view=open|handovers`: waiting orders and egg holds (soonest to end
/// first), or recent hand-overs. Staff only.
pub async fn orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Orders>, ApiError> {
    auth::staff(&state, &headers)?;
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let handovers = matches!(q.view, Some(OrdersView::Handovers));
    let reader = state.reader.clone();
    let holds = tokio::task::spawn_blocking(move || {
        if handovers {
            reader.handovers(limit)
        } else {
            reader.open_holds(limit)
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(Orders { orders: holds }))
}

/// `POST /api/v1/orders/{id}/release`: staff give a hold's units back before its window
/// ends (the shopper will not come).
pub async fn release(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<OrderPath>, PathRejection>,
) -> Result<Json<Released>, ApiError> {
    auth::staff(&state, &headers)?;
    let Path(OrderPath { id }) = path.map_err(bad_path)?;
    if !caidan_sync::contract::Ident::valid(&id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "an order id is 1-64 of A-Z a-z 0-9 . - _",
        ));
    }
    match state
        .writer
        .release(id.clone())
        .await
        .map_err(ApiError::internal)?
    {
        Ok(()) => Ok(Json(Released {
            released: true,
            order: id,
        })),
        Err(NotOpen::Unknown) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_order",
            "no such order here",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_open",
            e.to_string(),
        )),
    }
}

//! Stock at this touchpoint: staff list and correct it; anyone may ask whether a SKU is
//! here, and where else nearby it is.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use caidan_sync::contract::Ident;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth;
use super::extract::{JsonBody, bad_path};
use super::{ApiError, AppState};
use crate::elsewhere::Nearby;
use crate::inventory::StockRefusal;
use crate::store::read::StockListing;
use crate::store::{StockAfter, StockUpdate};

pub(super) fn sku_of(text: &str) -> Result<Ident, ApiError> {
    Ident::new(text).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_sku", e.to_string()))
}

fn unknown_sku(sku: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_sku",
        format!("{sku} has never been stocked here"),
    )
}

/// The SKU a path names.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SkuPath {
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub sku: String,
}

/// Every SKU's stock here.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StockList {
    pub device: String,
    pub stock: Vec<StockListing>,
}

/// One SKU here and nearby.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SkuStock {
    pub sku: String,
    pub device: String,
    pub here: Here,
    pub elsewhere: Nearby,
}

/// A SKU's units at this touchpoint; on hand and reserved only for staff.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Here {
    pub available: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_hand: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved: Option<u32>,
}

/// A SKU's stock after a change.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StockChanged {
    pub sku: String,
    pub stock: StockAfter,
}

/// `GET /api/v1/inventory`: every SKU's stock here. Staff only.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<StockList>, ApiError> {
    auth::staff(&state, &headers)?;
    let reader = state.reader.clone();
    let stock = tokio::task::spawn_blocking(move || reader.stock())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(StockList {
        device: state.device.to_string(),
        stock,
    }))
}

/// `GET /api/v1/inventory/{sku}`: whether the SKU is here (units available; staff also see
/// on hand and reserved), and which touchpoints nearby have it when the data bank can be
/// asked. 404 for a SKU never stocked here.
pub async fn one(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    path: Result<Path<SkuPath>, PathRejection>,
) -> Result<Json<SkuStock>, ApiError> {
    if let Err(crate::limits::RetryAfter(wait)) = state.limiters.scan_from(client.ip()) {
        state.metrics.rejection("lookups_per_client");
        return Err(ApiError::too_many(
            "lookups_per_client",
            "请稍后再试 · Too many lookups from here: please wait a moment",
            wait,
        ));
    }
    let Path(SkuPath { sku }) = path.map_err(bad_path)?;
    let sku = sku_of(&sku)?;
    let staff = auth::staff(&state, &headers).is_ok();
    let reader = state.reader.clone();
    let key = sku.to_string();
    let here = tokio::task::spawn_blocking(move || reader.stock_of(&key))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .ok_or_else(|| unknown_sku(&sku))?;
    let elsewhere = match state
        .elsewhere
        .as_ref()
        .filter(|_| state.live().features.elsewhere)
    {
        // Only worth asking when this touchpoint cannot serve it.
        Some(e) if here.available == 0 => e.lookup(&sku).await,
        Some(_) => Nearby::Found {
            touchpoints: Vec::new(),
        },
        None => Nearby::NotConfigured,
    };
    Ok(Json(SkuStock {
        sku: sku.to_string(),
        device: state.device.to_string(),
        here: Here {
            available: here.available,
            on_hand: staff.then_some(here.on_hand),
            reserved: staff.then_some(here.reserved),
        },
        elsewhere,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockRequest {
    /// Units on hand as counted (with `reason: count`).
    pub(super) set: Option<i64>,
    /// Units added (restock, positive) or removed (damage, negative).
    pub(super) delta: Option<i64>,
    #[schemars(extend("enum" = ["restock", "count", "damage"]))]
    pub(super) reason: String,
    #[serde(default)]
    pub(super) note: Option<String>,
}

/// `POST /api/v1/inventory/{sku}`: staff record a restock, a count or damage. On hand never
/// goes below what is reserved; the refusal says so and changes nothing.
pub async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<SkuPath>, PathRejection>,
    JsonBody(body): JsonBody<StockRequest>,
) -> Result<Json<StockChanged>, ApiError> {
    auth::staff(&state, &headers)?;
    let Path(SkuPath { sku }) = path.map_err(bad_path)?;
    let sku = sku_of(&sku)?;
    let req = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let update = StockUpdate::from_parts(sku, req.set, req.delta, &req.reason, req.note)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m))?;
    let sku = update.sku.clone();
    match state
        .writer
        .change_stock(update)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(after) => Ok(Json(StockChanged {
            sku: sku.to_string(),
            stock: after,
        })),
        Err(StockRefusal::UnknownSku(s)) => Err(unknown_sku(&s)),
        Err(r) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "stock_refused",
            r.to_string(),
        )),
    }
}

//! Stock at this touchpoint: staff list and correct it; anyone may ask whether a SKU is
//! here, and where else nearby it is.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use caidan_sync::contract::Ident;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth;
use super::{ApiError, AppState};
use crate::elsewhere::Nearby;
use crate::inventory::StockRefusal;
use crate::store::StockUpdate;

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

/// `GET /api/v1/inventory`: every SKU's stock here. Staff only.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::staff(&state, &headers)?;
    let reader = state.reader.clone();
    let stock = tokio::task::spawn_blocking(move || reader.stock())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "device": &*state.device, "stock": stock })))
}

/// `GET /api/v1/inventory/{sku}`: whether the SKU is here (units available; staff also see
/// on hand and reserved), and which touchpoints nearby have it when the data bank can be
/// asked. 404 for a SKU never stocked here.
pub async fn one(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(sku): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Err(crate::limits::RetryAfter(wait)) = state.limiters.scan_from(client.ip()) {
        state.metrics.rejection("lookups_per_client");
        return Err(ApiError::too_many(
            "lookups_per_client",
            "请稍后再试 · Too many lookups from here: please wait a moment",
            wait,
        ));
    }
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
    let mut here_json = json!({ "available": here.available });
    if staff {
        here_json["on_hand"] = here.on_hand.into();
        here_json["reserved"] = here.reserved.into();
    }
    Ok(Json(json!({
        "sku": sku,
        "device": &*state.device,
        "here": here_json,
        "elsewhere": elsewhere,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockRequest {
    /// Units on hand as counted (with `reason: count`).
    pub(super) set: Option<i64>,
    /// Units added (restock, positive) or removed (damage, negative).
    pub(super) delta: Option<i64>,
    pub(super) reason: String,
    #[serde(default)]
    pub(super) note: Option<String>,
}

/// `POST /api/v1/inventory/{sku}`: staff record a restock, a count or damage. On hand never
/// goes below what is reserved; the refusal says so and changes nothing.
pub async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(sku): Path<String>,
    body: Result<Json<StockRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    auth::staff(&state, &headers)?;
    let sku = sku_of(&sku)?;
    let Json(req) = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let update = StockUpdate::from_parts(sku, req.set, req.delta, &req.reason, req.note)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m))?;
    let sku = update.sku.clone();
    match state
        .writer
        .change_stock(update)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(after) => Ok(Json(json!({ "sku": sku, "stock": after }))),
        Err(StockRefusal::UnknownSku(s)) => Err(unknown_sku(&s)),
        Err(r) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "stock_refused",
            r.to_string(),
        )),
    }
}

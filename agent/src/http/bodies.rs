//! The JSON request bodies, read and checked the way their handlers do, without the state
//! behind them (store, limits, metrics). The fuzz targets (`fuzz/`) and the test that
//! replays their corpus call these; the handlers do the same steps inline.

use caidan_sync::contract::PickupCode;

use super::egg::EggRequest;
use super::inventory::{StockRequest, sku_of};
use super::pickup::PickupRequest;
use super::staff::RedeemRequest;
use crate::claim::normalise_code;
use crate::shopper::valid_raw_id;
use crate::store::StockUpdate;
use crate::token::{TokenError, TokenSigner};

/// Why a body was refused before any state was touched.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("shopper id is malformed")]
    Shopper,
    #[error("claim code is malformed")]
    ClaimCode,
    #[error("pickup code is malformed")]
    PickupCode,
    #[error("stock change refused: {0}")]
    Stock(String),
}

/// `POST /api/v1/eggs`: the token verifies at `now_ms` and the shopper id, when given, is
/// well formed. Returns the token's window.
pub fn egg(body: &[u8], tokens: &TokenSigner, now_ms: i64) -> Result<i64, BodyError> {
    let req: EggRequest = serde_json::from_slice(body)?;
    let window = tokens.verify(&req.token, now_ms)?;
    match req.shopper.as_deref() {
        Some(raw) if !valid_raw_id(raw) => Err(BodyError::Shopper),
        _ => Ok(window),
    }
}

/// `POST /api/v1/redemptions`: the claim code normalises.
pub fn redeem(body: &[u8]) -> Result<(), BodyError> {
    let req: RedeemRequest = serde_json::from_slice(body)?;
    normalise_code(&req.code)
        .map(drop)
        .ok_or(BodyError::ClaimCode)
}

/// `POST /api/v1/pickups` and `POST /api/v1/vending/pickups`: the pickup code is typed right.
pub fn pickup(body: &[u8]) -> Result<(), BodyError> {
    let req: PickupRequest = serde_json::from_slice(body)?;
    PickupCode::typed(&req.code)
        .map(drop)
        .map_err(|_| BodyError::PickupCode)
}

/// `POST /api/v1/inventory/{sku}`: the SKU of the path and the body make a stock update.
pub fn stock(sku: &str, body: &[u8]) -> Result<StockUpdate, BodyError> {
    let sku = sku_of(sku).map_err(|e| BodyError::Stock(e.message))?;
    let req: StockRequest = serde_json::from_slice(body)?;
    StockUpdate::from_parts(sku, req.set, req.delta, &req.reason, req.note)
        .map_err(BodyError::Stock)
}

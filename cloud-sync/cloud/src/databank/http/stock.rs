//! `GET /api/v1/fleets/{fleet}/stock/{sku}`: the touchpoints of a fleet with units of a SKU
//! available, nearest first. For the fleet's own devices (the fleet token) and operators.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Json;

use super::{ApiError, ApiState, auth_header};
use crate::databank::nearby::{self, NearbyParams, NearbyQuery, NearbyStock};
use crate::databank::store::stock;

/// The fleet and SKU a path names.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(super) struct SkuPath {
    fleet: String,
    sku: String,
}

/// Checks, in this order: the request's shape and no token in the URL (400), the token
/// (401, or 403 when it is another fleet's or a brand's), then each value (400).
pub(super) async fn nearby_stock(
    State(s): State<ApiState>,
    path: Result<Path<SkuPath>, PathRejection>,
    params: Result<Query<NearbyParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<NearbyStock>, ApiError> {
    let Path(SkuPath { fleet, sku }) = path.map_err(|e| bounded(e.body_text()))?;
    let Query(params) = params.map_err(|e| bounded(e.body_text()))?;
    params
        .refuse_token()
        .map_err(|e| ApiError::BadQuery(e.to_string()))?;
    s.access.authorize_fleet(auth_header(&headers), &fleet)?;
    let q =
        NearbyQuery::parse(&fleet, &sku, &params).map_err(|e| ApiError::BadQuery(e.to_string()))?;
    let (f, k) = (q.fleet.to_string(), q.sku.to_string());
    let (f2, k2) = (f.clone(), k.clone());
    let candidates = s
        .read(
            move |c| stock::available(c, &f, &k),
            move |c| crate::databank::store::pg::read::available(c, &f2, &k2),
        )
        .await?;
    Ok(Json(nearby::rank(&q, candidates)))
}

/// Longest extractor message echoed back: it may quote a parameter name as sent.
const MAX_ECHO_CHARS: usize = 200;

pub(super) fn bounded(text: String) -> ApiError {
    if text.chars().count() <= MAX_ECHO_CHARS {
        return ApiError::BadQuery(text);
    }
    let head: String = text.chars().take(MAX_ECHO_CHARS).collect();
    ApiError::BadQuery(format!("{head}..."))
}

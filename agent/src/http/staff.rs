//! Staff endpoints: redeeming claims. Bearer tokens are checked against hashes in config.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use caidan_sync::credentials::TokenHash;

use crate::claim::normalise_code;
use crate::store::RedeemRefusal;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    code: String,
}

fn require_staff(state: &AppState, headers: &HeaderMap) -> Result<TokenHash, ApiError> {
    let bearer =
        caidan_sync::credentials::bearer(headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()));
    let refused = |message: &str| {
        state.metrics.rejection("staff_unauthorized");
        ApiError::new(StatusCode::UNAUTHORIZED, "staff_unauthorized", message)
    };
    match bearer {
        Some(t) => state
            .staff
            .accepts(t)
            .ok_or_else(|| refused("staff token not recognised")),
        None => Err(refused(
            "staff endpoints need Authorization: Bearer <staff token>",
        )),
    }
}

/// Refused while this staff token or the whole touchpoint is locked out.
fn check_lockout(state: &AppState, staff: &TokenHash, now: i64) -> Result<(), ApiError> {
    let locks = state.wrong_codes.lock().unwrap_or_else(|e| e.into_inner());
    let locked = locks
        .per_token
        .check(staff, now)
        .and(locks.device.check(&(), now));
    locked.map_err(|lock| {
        state.metrics.rejection("wrong_codes_lockout");
        let until = jiff::Timestamp::from_millisecond(lock.until_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        ApiError::too_many(
            "wrong_codes_lockout",
            format!("too many wrong codes: locked until {until}"),
            std::time::Duration::from_millis(lock.remaining_ms(now) as u64),
        )
    })
}

/// Counts a wrong code against this staff token and the touchpoint.
fn wrong_code(state: &AppState, staff: &TokenHash, now: i64) {
    let mut locks = state.wrong_codes.lock().unwrap_or_else(|e| e.into_inner());
    let by_token = locks.per_token.failure(staff, now);
    let by_device = locks.device.failure(&(), now);
    if let Some(lock) = by_token.or(by_device) {
        tracing::warn!(
            until_ms = lock.until_ms,
            touchpoint = by_device.is_some(),
            "too many wrong redemption codes: locked out"
        );
    }
}

/// `POST /api/v1/redemptions`: redeems a claim at most once. Wrong codes are counted per
/// staff token and per touchpoint; past the limit every attempt is refused (429) until the
/// lockout ends.
pub async fn redeem(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RedeemRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let staff = require_staff(&state, &headers)?;
    let now = state.clock.now_ms();
    check_lockout(&state, &staff, now)?;
    let Json(req) = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let Some(code) = normalise_code(&req.code) else {
        state.metrics.rejection("code_malformed");
        wrong_code(&state, &staff, now);
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "code_malformed",
            "a claim code is 8 letters and digits",
        ));
    };
    match state
        .writer
        .redeem(code)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(r) => {
            state.metrics.redemption();
            let at = jiff::Timestamp::from_millisecond(r.redeemed_ms)
                .map(|t| t.to_string())
                .unwrap_or_default();
            Ok((
                StatusCode::OK,
                Json(json!({
                    "redeemed": true,
                    "claim_code": r.claim.claim_code,
                    "offer": { "id": r.claim.offer_id, "kind": r.claim.kind, "title": r.claim.title },
                    "brand": r.claim.brand,
                    "redeemed_at": at,
                })),
            ))
        }
        Err(refusal) => {
            state.metrics.rejection(refusal.reason());
            if refusal == RedeemRefusal::UnknownCode {
                wrong_code(&state, &staff, now);
            }
            let status = match refusal {
                RedeemRefusal::UnknownCode => StatusCode::NOT_FOUND,
                RedeemRefusal::AlreadyRedeemed => StatusCode::CONFLICT,
                RedeemRefusal::Expired => StatusCode::GONE,
                RedeemRefusal::NotRedeemable => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Err(ApiError::new(status, refusal.reason(), refusal.to_string()))
        }
    }
}

/// `GET /api/v1/claims/public-key`: the key a POS verifies claim tokens with offline.
pub async fn public_key(State(state): State<AppState>) -> Json<Value> {
    Json(
        json!({ "device": &*state.device, "algorithm": "ed25519", "public_key": state.claims.public_key_hex() }),
    )
}

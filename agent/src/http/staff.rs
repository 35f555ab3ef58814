//! Staff endpoints: redeeming claims (who may, and the lockouts: [`super::auth`]).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::{self, Entrant};
use super::egg::OfferView;
use super::extract::JsonBody;
use super::{ApiError, AppState};

use crate::claim::normalise_code;
use crate::store::RedeemRefusal;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// 8 characters of Crockford base32; spaces, dashes and lower case are forgiven.
    #[schemars(length(min = 8, max = 32))]
    pub(super) code: String,
}

/// A claim redeemed just now.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Redeemed {
    pub redeemed: bool,
    pub claim_code: String,
    pub offer: OfferView,
    pub brand: String,
    /// RFC 3339.
    pub redeemed_at: String,
}

/// The key claim tokens of this touchpoint verify with.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PublicKey {
    pub device: String,
    /// Always `ed25519`.
    pub algorithm: &'static str,
    /// 32 bytes, hex.
    pub public_key: String,
}

/// `POST /api/v1/redemptions`: redeems a claim at most once. Wrong codes are counted per
/// staff token and per touchpoint; past the limit every attempt is refused (429) until the
/// lockout ends.
pub async fn redeem(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RedeemRequest>,
) -> Result<Json<Redeemed>, ApiError> {
    let who = Entrant::Staff(auth::staff(&state, &headers)?);
    let now = state.clock.now_ms();
    auth::check_lockout(&state, who, now)?;
    let req = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let Some(code) = normalise_code(&req.code) else {
        state.metrics.rejection("code_malformed");
        auth::wrong_code(&state, who, now);
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
            Ok(Json(Redeemed {
                redeemed: true,
                claim_code: r.claim.claim_code.to_string(),
                offer: OfferView {
                    id: r.claim.offer_id.to_string(),
                    kind: r.claim.kind,
                    title: r.claim.title,
                    description: None,
                },
                brand: r.claim.brand.to_string(),
                redeemed_at: at,
            }))
        }
        Err(refusal) => {
            state.metrics.rejection(refusal.reason());
            if refusal == RedeemRefusal::UnknownCode {
                auth::wrong_code(&state, who, now);
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
pub async fn public_key(State(state): State<AppState>) -> Json<PublicKey> {
    Json(PublicKey {
        device: state.device.to_string(),
        algorithm: "ed25519",
        public_key: state.claims.public_key_hex(),
    })
}

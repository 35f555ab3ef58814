//! The shopper's side: the egg page a scanned QR opens, and cracking the egg.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, pages};
use crate::claim::ClaimEssentials;
use crate::shopper::valid_raw_id;
use crate::store::StoreError;
use crate::token::TokenError;

const COOKIE_NAME: &str = "caidan_sid";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EggRequest {
    token: String,
    shopper: Option<String>,
}

/// Who is asking: body, then the app's `X-Shopper-Id`, then our first-party cookie; a new
/// anonymous id (set as a cookie) when none is given.
struct Shopper {
    raw: String,
    new_cookie: Option<HeaderValue>,
}

fn shopper_from(body: Option<&str>, headers: &HeaderMap) -> Result<Shopper, ApiError> {
    let given = body.map(str::to_owned).or_else(|| {
        headers
            .get("x-shopper-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let given = given.or_else(|| {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE_NAME)
            .map(|(_, v)| v.to_owned())
    });
    match given {
        Some(raw) if valid_raw_id(&raw) => Ok(Shopper {
            raw,
            new_cookie: None,
        }),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "shopper_invalid",
            "shopper id must be 1-256 printable ASCII characters",
        )),
        None => {
            let raw = uuid::Uuid::new_v4().simple().to_string();
            let cookie =
                format!("{COOKIE_NAME}={raw}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly");
            Ok(Shopper {
                raw,
                new_cookie: HeaderValue::from_str(&cookie).ok(),
            })
        }
    }
}

/// A store error as the shopper sees it: a full store is said plainly (507, nothing was
/// recorded); anything else is a 503 worth retrying.
fn store_error(state: &AppState, e: StoreError) -> ApiError {
    match e {
        StoreError::StorageFull { .. } => {
            state.metrics.rejection("storage_full");
            tracing::warn!(error = %e, "egg refused");
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                "本屏存储已满，暂时无法记录新的优惠，请稍后再试。This screen is full until it syncs: nothing was recorded, please try again later.",
            )
        }
        e => ApiError::internal(e),
    }
}

fn token_error(state: &AppState, e: TokenError) -> ApiError {
    state.metrics.rejection(e.reason());
    let status = match e {
        TokenError::Garbled => StatusCode::BAD_REQUEST,
        TokenError::OtherDevice | TokenError::Forged => StatusCode::FORBIDDEN,
        TokenError::Stale | TokenError::NotYetValid => StatusCode::GONE,
    };
    ApiError::new(status, e.reason(), e.to_string())
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        response.headers_mut().append(SET_COOKIE, c);
    }
    response
}

/// `GET /e/{token}`: the page a scanned QR opens. Records a scan; a bad token gets an
/// error page and writes nothing.
pub async fn egg_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = state.tokens.verify(&token, state.clock.now_ms()) {
        let err = token_error(&state, e);
        return (err.status, Html(pages::error_page(&err.message))).into_response();
    }
    let shopper = match shopper_from(None, &headers) {
        Ok(s) => s,
        Err(err) => return (err.status, Html(pages::error_page(&err.message))).into_response(),
    };
    if let Err(e) = state.writer.scan(state.shoppers.hash(&shopper.raw)).await {
        let err = store_error(&state, e);
        return (err.status, Html(pages::error_page(&err.message))).into_response();
    }
    with_cookie(
        Html(pages::egg_page(&token)).into_response(),
        shopper.new_cookie,
    )
}

/// `POST /api/v1/eggs`: cracks the egg. Answers only once the claim is committed.
pub async fn crack(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<EggRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| {
        state.metrics.rejection("bad_request");
        ApiError::new(e.status(), "bad_request", e.body_text())
    })?;
    state
        .tokens
        .verify(&req.token, state.clock.now_ms())
        .map_err(|e| token_error(&state, e))?;
    let shopper = shopper_from(req.shopper.as_deref(), &headers)
        .inspect_err(|_| state.metrics.rejection("shopper_invalid"))?;
    let outcome = state
        .writer
        .claim(state.shoppers.hash(&shopper.raw))
        .await
        .map_err(|e| store_error(&state, e))?;
    let c = &outcome.claim;
    if !outcome.existing {
        state.metrics.claim(c.kind.as_str(), c.fallback);
    }
    let signed = state.claims.sign(&ClaimEssentials {
        device: &state.device,
        code: &c.claim_code,
        offer: &c.offer_id,
        expires_ms: c.expires_ms,
    });
    let expiry = jiff::Timestamp::from_millisecond(c.expires_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let body = json!({
        "claim_code": c.claim_code,
        "claim_token": signed,
        "offer": { "id": c.offer_id, "kind": c.kind, "title": c.title, "description": c.description },
        "brand": c.brand,
        "fallback": c.fallback,
        "existing": outcome.existing,
        "expires_at": expiry,
        "device": &*state.device,
    });
    let status = if outcome.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(with_cookie(
        (status, Json(body)).into_response(),
        shopper.new_cookie,
    ))
}

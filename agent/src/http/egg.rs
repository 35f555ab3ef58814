//! The shopper's side: the egg page a scanned QR opens, and cracking the egg.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, pages};
use crate::catalogue::Price;
use crate::claim::ClaimEssentials;
use crate::limits::RetryAfter;
use crate::shopper::valid_raw_id;
use crate::store::{ClaimRefusal, StoreError};
use crate::token::TokenError;

const COOKIE_NAME: &str = "caidan_sid";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EggRequest {
    pub(super) token: String,
    pub(super) shopper: Option<String>,
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

/// A store error as the shopper sees it: a full store (over its budget, or on a full disk)
/// is said plainly (507, nothing was recorded); anything else is a 503 worth retrying.
fn store_error(state: &AppState, e: StoreError) -> ApiError {
    match e {
        StoreError::StorageFull { .. } | StoreError::DiskFull => {
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

/// A 429 for a client over one of its limits; counted, nothing written.
fn too_many(state: &AppState, reason: &'static str, RetryAfter(wait): RetryAfter) -> ApiError {
    state.metrics.rejection(reason);
    ApiError::too_many(
        reason,
        "请稍后再试 · Too many requests from here: please wait a moment and try again",
        wait,
    )
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
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let page_error = |err: ApiError| {
        let retry = err.retry_after_secs();
        let mut resp = (err.status, Html(pages::error_page(&err.message))).into_response();
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    };
    if let Err(wait) = state.limiters.scan_from(client.ip()) {
        return page_error(too_many(&state, "scans_per_client", wait));
    }
    let window = match state.tokens.verify(&token, state.clock.now_ms()) {
        Ok(w) => w,
        Err(e) => return page_error(token_error(&state, e)),
    };
    let shopper = match shopper_from(None, &headers) {
        Ok(s) => s,
        Err(err) => return page_error(err),
    };
    // One scan per shopper and QR window is recorded, however often the page is opened.
    match state
        .writer
        .scan(state.shoppers.hash(&shopper.raw), window)
        .await
    {
        Ok(true) => {}
        Ok(false) => state.metrics.rejection("scan_repeated"),
        Err(e) => return page_error(store_error(&state, e)),
    }
    with_cookie(
        Html(pages::egg_page(&token)).into_response(),
        shopper.new_cookie,
    )
}

/// `POST /api/v1/eggs`: cracks the egg. Answers only once the claim is committed.
pub async fn crack(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<EggRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    if !state.live().features.eggs {
        state.metrics.rejection("eggs_paused");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "eggs_paused",
            "彩蛋暂停中 · Eggs are paused at this touchpoint for now",
        ));
    }
    state
        .limiters
        .egg_from(client.ip())
        .map_err(|w| too_many(&state, "eggs_per_client", w))?;
    let Json(req) = body.map_err(|e| {
        state.metrics.rejection("bad_request");
        ApiError::new(e.status(), "bad_request", e.body_text())
    })?;
    let now = state.clock.now_ms();
    let window = state
        .tokens
        .verify(&req.token, now)
        .map_err(|e| token_error(&state, e))?;
    let shopper = shopper_from(req.shopper.as_deref(), &headers)
        .inspect_err(|_| state.metrics.rejection("shopper_invalid"))?;
    let hashed = state.shoppers.hash(&shopper.raw);
    state
        .limiters
        .egg_for(&hashed)
        .map_err(|w| too_many(&state, "eggs_per_shopper", w))?;
    let outcome = match state
        .writer
        .claim(hashed, window)
        .await
        .map_err(|e| store_error(&state, e))?
    {
        Ok(outcome) => outcome,
        Err(ClaimRefusal::ScreenBusy) => {
            state.metrics.rejection("screen_busy");
            let next_window =
                (state.tokens.window_at(now) + 1) * i64::from(state.tokens.rotation_secs()) * 1000;
            return Err(ApiError::too_many(
                "screen_busy",
                "这一轮的彩蛋已经发完，请扫下一个码 · This round's eggs are all taken: scan the next code",
                std::time::Duration::from_millis((next_window - now).max(1) as u64),
            ));
        }
    };
    let c = &outcome.claim;
    if !outcome.existing {
        state.metrics.claim(c.kind.as_str(), c.fallback);
        state
            .signals
            .claimed(reveal_moment(&state, c), c.fallback, now);
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
    let at = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    let price = c.price.as_ref().map(|p| {
        json!({
            "cents": p.cents,
            "currency": p.currency,
            "list_cents": p.list_cents,
            "text": Price::display(p.cents, &p.currency),
            "list_text": p.list_cents.map(|l| Price::display(l, &p.currency)),
        })
    });
    // A product or sample egg: the unit held here, the code to collect it with, and how.
    let pickup = c.pickup.as_ref().map(|p| {
        json!({
            "code": p.code.reveal(),
            "sku": p.sku,
            "hold_until": at(p.hold_until_ms),
            "state": p.state,
            "how": if state.dispenser.is_some() { "keypad" } else { "counter" },
        })
    });
    let body = json!({
        "claim_code": c.claim_code,
        "claim_token": signed,
        "offer": { "id": c.offer_id, "kind": c.kind, "title": c.title, "description": c.description },
        "brand": c.brand,
        "fallback": c.fallback,
        "existing": outcome.existing,
        "expires_at": expiry,
        "device": &*state.device,
        "price": price,
        "pickup": pickup,
        "nearest_store": state.nearest_store(c.brand.as_str()),
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

/// What the touchpoint's own panel reveals of a new claim. The panel is public: codes are
/// shown masked to their last three characters, enough for the shopper to match them with
/// the phone, too little for a bystander to use.
fn reveal_moment(state: &AppState, c: &crate::store::ClaimRecord) -> crate::display::view::Moment {
    let masked = |code: &str| {
        let n = code.chars().count();
        code.chars()
            .enumerate()
            .map(|(i, ch)| if i + 3 < n { '*' } else { ch })
            .collect::<String>()
    };
    let (code, hold_until) = match &c.pickup {
        Some(p) => (
            masked(p.code.reveal()),
            jiff::Timestamp::from_millisecond(p.hold_until_ms)
                .ok()
                .map(|t| t.to_zoned(state.tz.clone()).strftime("%H:%M").to_string()),
        ),
        None => (masked(c.claim_code.as_str()), None),
    };
    crate::display::view::Moment::Claimed {
        title: (c.title.zh.clone(), c.title.en.clone()),
        code,
        hold_until,
    }
}

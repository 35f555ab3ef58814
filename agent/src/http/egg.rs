//! The shopper's side: the egg page a scanned QR opens, and cracking the egg.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use caidan_sync::contract::OfferKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::JsonBody;
use super::{ApiError, AppState, pages};
use crate::catalogue::{Price, Text};
use crate::claim::ClaimEssentials;
use crate::directory::NearestStore;
use crate::limits::RetryAfter;
use crate::shopper::valid_raw_id;
use crate::store::{ClaimRefusal, StoreError};
use crate::token::TokenError;

const COOKIE_NAME: &str = "caidan_sid";

/// The answer to `POST /api/v1/eggs`: 201 for a new claim, 200 for today's existing one.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EggAnswer {
    pub claim_code: String,
    /// The signed claim a POS verifies offline (`GET /api/v1/claims/public-key`).
    pub claim_token: String,
    pub offer: OfferView,
    pub brand: String,
    /// No offer fitted: the brand's fallback egg.
    pub fallback: bool,
    /// The shopper already had this claim today.
    pub existing: bool,
    /// RFC 3339.
    pub expires_at: String,
    pub device: String,
    pub price: Option<PriceView>,
    pub pickup: Option<PickupView>,
    pub nearest_store: Option<NearestStore>,
}

/// The offer a claim or redemption is for.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OfferView {
    pub id: String,
    pub kind: OfferKind,
    pub title: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
}

/// A product egg's special price, in cents and as shown.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PriceView {
    pub cents: u32,
    pub currency: String,
    pub list_cents: Option<u32>,
    pub text: String,
    pub list_text: Option<String>,
}

/// The unit a product or sample egg holds, and how to collect it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PickupView {
    pub code: String,
    pub sku: String,
    /// RFC 3339: when the unit goes back to the shelf.
    pub hold_until: String,
    /// `reserved`, `picked_up`, `expired`, ...
    pub state: String,
    /// `keypad` (the machine dispenses) or `counter` (staff hand it over).
    pub how: &'static str,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EggRequest {
    /// The token of the scanned QR (`GET /api/v1/qr` on the screen listener).
    pub(super) token: String,
    /// The app's shopper id; else `X-Shopper-Id`, else the first-party cookie.
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
    JsonBody(body): JsonBody<EggRequest>,
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
    let req = body.map_err(|e| {
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
    let price = c.price.as_ref().map(|p| PriceView {
        cents: p.cents,
        currency: p.currency.clone(),
        list_cents: p.list_cents,
        text: Price::display(p.cents, &p.currency),
        list_text: p.list_cents.map(|l| Price::display(l, &p.currency)),
    });
    // A product or sample egg: the unit held here, the code to collect it with, and how.
    let pickup = c.pickup.as_ref().map(|p| PickupView {
        code: p.code.reveal().to_owned(),
        sku: p.sku.clone(),
        hold_until: at(p.hold_until_ms),
        state: p.state.clone(),
        how: if state.dispenser.is_some() {
            "keypad"
        } else {
            "counter"
        },
    });
    let body = EggAnswer {
        claim_code: c.claim_code.to_string(),
        claim_token: signed,
        offer: OfferView {
            id: c.offer_id.to_string(),
            kind: c.kind,
            title: c.title.clone(),
            description: Some(c.description.clone()),
        },
        brand: c.brand.to_string(),
        fallback: c.fallback,
        existing: outcome.existing,
        expires_at: expiry,
        device: state.device.to_string(),
        price,
        pickup,
        nearest_store: state.nearest_store(c.brand.as_str()),
    };
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

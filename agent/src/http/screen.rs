//! The screen side: the rotating QR (JSON for screens, SVG for the built-in screen page)
//! and impression counting, aggregated per minute.

use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use qrcode::QrCode;
use qrcode::render::svg;

use super::{AppState, pages};
use crate::store::WriterHandle;

/// QR impressions of the current minute; one outbox event per minute, not one per frame.
#[derive(Debug, Default)]
pub struct Impressions {
    current: Mutex<(i64, u64)>,
}

impl Impressions {
    fn minute_of(now_ms: i64) -> i64 {
        now_ms - now_ms.rem_euclid(60_000)
    }

    /// Counts one impression; hands a finished minute to the writer.
    pub fn record(&self, now_ms: i64, writer: &WriterHandle) {
        let done = {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let minute = Self::minute_of(now_ms);
            let done = (cur.0 != minute && cur.1 > 0).then_some(*cur);
            if cur.0 != minute {
                *cur = (minute, 0);
            }
            cur.1 += 1;
            done
        };
        if let Some((minute, count)) = done {
            writer.impressions(minute, count);
        }
    }

    /// Flushes a minute that has ended (or everything, when `force`, at shutdown).
    pub fn flush(&self, now_ms: i64, writer: &WriterHandle, force: bool) {
        let done = {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let ended = cur.0 != Self::minute_of(now_ms);
            ((ended || force) && cur.1 > 0)
                .then(|| std::mem::replace(&mut *cur, (Self::minute_of(now_ms), 0)))
        };
        if let Some((minute, count)) = done {
            writer.impressions(minute, count);
        }
    }
}

fn current(state: &AppState) -> (String, String, i64) {
    let now = state.clock.now_ms();
    let token = state.tokens.issue(now);
    let link = format!("{}/e/{}", state.public_url, token);
    state.impressions.record(now, &state.writer);
    state.metrics.impression();
    (token, link, state.tokens.ms_until_rotation(now))
}

/// The QR a screen shows now.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct QrNow {
    pub token: String,
    /// `{public_url}/e/{token}`: what the QR encodes.
    pub link: String,
    pub rotation_secs: u32,
    /// Milliseconds until the next token.
    pub refresh_in_ms: i64,
}

/// `GET /api/v1/qr`: the token and link a screen shows now, and when to fetch the next.
pub async fn qr_json(State(state): State<AppState>) -> Response {
    let (token, link, refresh_ms) = current(&state);
    (
        [(CACHE_CONTROL, "no-store")],
        Json(QrNow {
            token,
            link,
            rotation_secs: state.tokens.rotation_secs(),
            refresh_in_ms: refresh_ms,
        }),
    )
        .into_response()
}

/// `GET /api/v1/qr.svg`: the current link as a QR code.
pub async fn qr_svg(State(state): State<AppState>) -> Response {
    let (_, link, _) = current(&state);
    let image = QrCode::new(link.as_bytes())
        .map(|code| {
            code.render::<svg::Color<'_>>()
                .min_dimensions(320, 320)
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default();
    (
        [(CONTENT_TYPE, "image/svg+xml"), (CACHE_CONTROL, "no-store")],
        image,
    )
        .into_response()
}

/// `GET /`: a screen page for development and browser-based screens.
pub async fn screen_page(State(state): State<AppState>) -> Html<String> {
    Html(pages::screen_page(
        &state.device,
        state.tokens.rotation_secs(),
    ))
}

/// Lets a request through to the screen routes only with the screen's token, when one is
/// configured (the screen routes are then on a listener other machines can reach).
pub async fn require_screen(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(expected) = state.screen_token {
        let bearer = caidan_sync::credentials::bearer(
            req.headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        );
        if !bearer.is_some_and(|t| expected.matches(t)) {
            state.metrics.rejection("screen_unauthorized");
            return super::ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "screen_unauthorized",
                "screen routes need Authorization: Bearer <screen token>",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(
        state.writer.outbox_depth(),
        state.writer.storage(),
        state.clock.status(),
    );
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

//! The local HTTP API and pages (axum). Handlers are thin: they check input, ask the store
//! writer, and answer only after the writer's commit.

mod egg;
mod error;
pub mod metrics;
mod pages;
mod screen;
pub mod serve;
mod staff;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use std::sync::Mutex;

use caidan_sync::credentials::TokenHash;

use crate::claim::ClaimSigner;
use crate::config::StaffTokens;
use crate::limits::Limiters;
use crate::lockout::Lockouts;
use crate::shopper::ShopperHasher;
use crate::store::WriterHandle;
use crate::token::TokenSigner;
use caidan_sync::clock::Clock;

pub use error::ApiError;
pub use metrics::Metrics;
pub use screen::Impressions;

/// Requests carry small JSON documents; anything larger is refused before parsing.
const BODY_LIMIT: usize = 16 * 1024;

/// Everything a handler needs; cloned per request (all fields are shared handles).
#[derive(Clone)]
pub struct AppState {
    pub device: Arc<str>,
    pub public_url: Arc<str>,
    pub writer: WriterHandle,
    pub tokens: TokenSigner,
    pub shoppers: ShopperHasher,
    pub claims: ClaimSigner,
    pub staff: Arc<StaffTokens>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub impressions: Arc<Impressions>,
    pub limiters: Arc<Limiters>,
    pub wrong_codes: Arc<Mutex<WrongCodes>>,
    /// The screen's bearer token, when the screen routes are not on loopback.
    pub screen_token: Option<TokenHash>,
}

/// Wrong redemption codes: per staff token, and for the whole touchpoint.
#[derive(Debug)]
pub struct WrongCodes {
    pub per_token: Lockouts<TokenHash>,
    pub device: Lockouts<()>,
}

fn common(router: Router<AppState>, state: AppState) -> Router {
    let metrics = (state.metrics.clone(), state.clock.clone());
    router
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/favicon.svg", get(pages::favicon))
        .route("/favicon.ico", get(pages::favicon))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track_latency,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// What shoppers and staff reach: the egg page, eggs, redemptions, the claim key.
pub fn public_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/e/{token}", get(egg::egg_page))
        .route("/api/v1/eggs", post(egg::crack))
        .route("/api/v1/redemptions", post(staff::redeem))
        .route("/api/v1/claims/public-key", get(staff::public_key));
    common(routes, state)
}

/// What only the screen reaches: the screen page, the current QR token, and `/metrics`.
/// Behind the screen token when one is configured.
pub fn screen_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(screen::screen_page))
        .route("/api/v1/qr", get(screen::qr_json))
        .route("/api/v1/qr.svg", get(screen::qr_svg))
        .route("/metrics", get(screen::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            screen::require_screen,
        ));
    common(routes, state)
}

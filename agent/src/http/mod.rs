//! The local HTTP API and pages (axum). Handlers are thin: they check input, ask the store
//! writer, and answer only after the writer's commit.

mod egg;
mod error;
pub mod metrics;
mod pages;
mod screen;
mod staff;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::claim::ClaimSigner;
use crate::config::StaffTokens;
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
}

/// The agent's routes.
pub fn router(state: AppState) -> Router {
    let metrics = (state.metrics.clone(), state.clock.clone());
    Router::new()
        .route("/", get(screen::screen_page))
        .route("/e/{token}", get(egg::egg_page))
        .route("/api/v1/qr", get(screen::qr_json))
        .route("/api/v1/qr.svg", get(screen::qr_svg))
        .route("/api/v1/eggs", post(egg::crack))
        .route("/api/v1/redemptions", post(staff::redeem))
        .route("/api/v1/claims/public-key", get(staff::public_key))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/favicon.svg", get(pages::favicon))
        .route("/favicon.ico", get(pages::favicon))
        .route("/metrics", get(screen::metrics))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track_latency,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

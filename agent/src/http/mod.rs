//! The local HTTP API and pages (axum). Handlers are thin: they check input, ask the store
//! writer, and answer only after the writer's commit.

pub mod auth;
#[doc(hidden)]
pub mod bodies;
mod console;
mod egg;
mod error;
mod inventory;
pub mod metrics;
mod pages;
mod pickup;
mod screen;
pub mod serve;
mod staff;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use caidan_sync::clock::Clock;
use caidan_sync::contract::Location;
use caidan_sync::credentials::TokenHash;
use jiff::tz::TimeZone;

use crate::claim::ClaimSigner;
use crate::directory::NearestStore;
use crate::elsewhere::Elsewhere;
use crate::inventory::dispenser::Dispenser;
use crate::limits::Limiters;
use crate::pickup::PickupHasher;
use crate::shopper::ShopperHasher;
use crate::store::{Reader, WriterHandle};
use crate::token::TokenSigner;

pub use auth::{StaffSessions, WrongCodes};
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
    /// Staff tokens, store directory, feature switches and brand line, as config sets them.
    pub live: crate::fleet::apply::LiveCell,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub impressions: Arc<Impressions>,
    pub limiters: Arc<Limiters>,
    pub wrong_codes: Arc<Mutex<WrongCodes>>,
    /// The screen's bearer token, when the screen routes are not on loopback.
    pub screen_token: Option<TokenHash>,
    pub sessions: StaffSessions,
    /// Staff cookies carry `Secure` when shoppers and staff reach the agent over HTTPS.
    pub secure_cookies: bool,
    pub reader: Arc<Reader>,
    pub pickups: PickupHasher,
    /// The vending machine's dispenser, on profiles that have one.
    pub dispenser: Option<Arc<dyn Dispenser>>,
    pub location: Option<Location>,
    pub tz: TimeZone,
    pub elsewhere: Option<Arc<Elsewhere>>,
    /// What the agent's own panel reflects: claims to reveal, pickups, sold out, updating.
    pub signals: Arc<crate::display::signals::Signals>,
}

impl AppState {
    /// The brand's nearest store from this touchpoint, open now or not.
    pub fn nearest_store(&self, brand: &str) -> Option<NearestStore> {
        let here = self.location?;
        let now = jiff::Timestamp::from_millisecond(self.clock.now_ms())
            .ok()?
            .to_zoned(self.tz.clone());
        self.live().directory.nearest(brand, here, &now)
    }

    /// The settings config may change while the agent runs.
    pub fn live(&self) -> Arc<crate::fleet::apply::Live> {
        crate::fleet::apply::live(&self.live)
    }
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
        .route("/api/v1/claims/public-key", get(staff::public_key))
        .route("/api/v1/pickups", post(pickup::staff_pickup))
        .route("/api/v1/vending/pickups", post(pickup::vending_pickup))
        .route("/api/v1/orders", get(pickup::orders))
        .route("/api/v1/orders/{id}/release", post(pickup::release))
        .route("/api/v1/inventory", get(inventory::list))
        .route(
            "/api/v1/inventory/{sku}",
            get(inventory::one).post(inventory::change),
        )
        .route("/staff", get(console::page))
        .route("/staff/login", post(console::login))
        .route("/staff/logout", post(console::logout));
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

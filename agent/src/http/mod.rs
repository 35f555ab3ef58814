//! The local HTTP API and pages (axum). Handlers are thin: they check input, ask the store
//! writer, and answer only after the writer's commit.

pub mod auth;
#[doc(hidden)]
pub mod bodies;
mod console;
mod egg;
mod error;
mod extract;
mod inventory;
pub mod metrics;
mod openapi;
mod pages;
mod pickup;
mod screen;
pub mod serve;
mod staff;

use std::sync::{Arc, Mutex};

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
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

fn common(router: ApiRouter<AppState>, state: AppState, listener: openapi::Listener) -> Router {
    let metrics = (state.metrics.clone(), state.clock.clone());
    let (router, document) = openapi::finish(router, listener);
    router
        .route("/openapi.json", get(document))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/favicon.svg", get(pages::favicon))
        .route("/favicon.ico", get(pages::favicon))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route here")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track_latency,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// What shoppers and staff reach: the egg page, eggs, redemptions, the claim key. Its
/// OpenAPI document is at `/openapi.json`.
pub fn public_router(state: AppState) -> Router {
    use openapi::{staff_only, staff_optional};
    let routes = ApiRouter::new()
        .route("/e/{token}", get(egg::egg_page))
        .api_route(
            "/api/v1/eggs",
            post_with(egg::crack, |op| {
                op.id("crackEgg")
                    .summary("Crack the egg behind a scanned QR token")
                    .response_with::<201, axum::Json<egg::EggAnswer>, _>(|r| {
                        r.description("a new claim, committed")
                    })
                    .response_with::<200, axum::Json<egg::EggAnswer>, _>(|r| {
                        r.description("the claim this shopper already has today")
                    })
            }),
        )
        .api_route(
            "/api/v1/redemptions",
            post_with(staff::redeem, |op| {
                staff_only(op.id("redeemClaim").summary("Redeem a claim code, once"))
            }),
        )
        .api_route(
            "/api/v1/claims/public-key",
            get_with(staff::public_key, |op| {
                op.id("claimPublicKey")
                    .summary("The Ed25519 key claim tokens verify with")
            }),
        )
        .api_route(
            "/api/v1/pickups",
            post_with(pickup::staff_pickup, |op| {
                staff_only(
                    op.id("staffPickup")
                        .summary("Hand over the hold behind a pickup code"),
                )
            }),
        )
        .api_route(
            "/api/v1/vending/pickups",
            post_with(pickup::vending_pickup, |op| {
                op.id("vendingPickup")
                    .summary("Dispense the hold behind a pickup code typed at the machine")
            }),
        )
        .api_route(
            "/api/v1/orders",
            get_with(pickup::orders, |op| {
                staff_only(
                    op.id("listOrders")
                        .summary("Waiting orders, or recent hand-overs"),
                )
            }),
        )
        .api_route(
            "/api/v1/orders/{id}/release",
            post_with(pickup::release, |op| {
                staff_only(
                    op.id("releaseOrder")
                        .summary("Give a hold's units back before its window ends"),
                )
            }),
        )
        .api_route(
            "/api/v1/inventory",
            get_with(inventory::list, |op| {
                staff_only(op.id("listStock").summary("Every SKU's stock here"))
            }),
        )
        .api_route(
            "/api/v1/inventory/{sku}",
            get_with(inventory::one, |op| {
                staff_optional(
                    op.id("skuStock")
                        .summary("Whether a SKU is here, and where else nearby"),
                )
            })
            .post_with(inventory::change, |op| {
                staff_only(
                    op.id("changeStock")
                        .summary("Record a restock, a count or damage"),
                )
            }),
        )
        .route("/staff", get(console::page))
        .route("/staff/login", post(console::login))
        .route("/staff/logout", post(console::logout));
    common(routes, state, openapi::Listener::Public)
}

/// What only the screen reaches: the screen page, the current QR token, and `/metrics`.
/// Behind the screen token when one is configured.
pub fn screen_router(state: AppState) -> Router {
    let routes = ApiRouter::new()
        .route("/", get(screen::screen_page))
        .api_route(
            "/api/v1/qr",
            get_with(screen::qr_json, |op| {
                openapi::screen(
                    op.id("currentQr")
                        .summary("The QR token and link to show now")
                        .response::<200, axum::Json<screen::QrNow>>(),
                )
            }),
        )
        .route("/api/v1/qr.svg", get(screen::qr_svg))
        .route("/metrics", get(screen::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            screen::require_screen,
        ));
    common(routes, state, openapi::Listener::Screen)
}

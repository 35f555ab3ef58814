//! Prometheus metrics: claims, rejections by reason, outbox depth, request latency.

use std::sync::Arc;

use caidan_sync::clock::Clock;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~2 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 14))
}

/// The agent's metrics; cheap to clone (every field is shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    claims: Family<Labels, Counter>,
    rejections: Family<Labels, Counter>,
    redemptions: Counter,
    impressions: Counter,
    outbox_depth: Gauge,
    store_used: Gauge,
    store_budget: Gauge,
    store_full: Gauge,
    impressions_dropped: Gauge,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("caidan");
        let claims = Family::<Labels, Counter>::default();
        let rejections = Family::<Labels, Counter>::default();
        let redemptions = Counter::default();
        let impressions = Counter::default();
        let outbox_depth = Gauge::default();
        let store_used = Gauge::default();
        let store_budget = Gauge::default();
        let store_full = Gauge::default();
        let impressions_dropped = Gauge::default();
        let latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "claims",
            "New claims handed out, by offer kind and whether a fallback",
            claims.clone(),
        );
        registry.register(
            "rejections",
            "Refused requests, by reason",
            rejections.clone(),
        );
        registry.register("redemptions", "Claims redeemed", redemptions.clone());
        registry.register(
            "impressions",
            "QR codes shown on screen",
            impressions.clone(),
        );
        registry.register(
            "outbox_depth",
            "Events in the outbox waiting for the data bank",
            outbox_depth.clone(),
        );
        registry.register(
            "store_used_bytes",
            "Bytes of store pages in use",
            store_used.clone(),
        );
        registry.register(
            "store_budget_bytes",
            "Storage budget of the store",
            store_budget.clone(),
        );
        registry.register(
            "store_fill_level",
            "0 normal, 1 past the budget's warning level, 2 full (new eggs refused)",
            store_full.clone(),
        );
        registry.register(
            "impressions_dropped",
            "Impressions not stored because the store was full",
            impressions_dropped.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        Self {
            registry: Arc::new(registry),
            claims,
            rejections,
            redemptions,
            impressions,
            outbox_depth,
            store_used,
            store_budget,
            store_full,
            impressions_dropped,
            latency,
        }
    }

    pub fn claim(&self, kind: &str, fallback: bool) {
        self.claims
            .get_or_create(&vec![
                ("kind", kind.to_owned()),
                ("fallback", fallback.to_string()),
            ])
            .inc();
    }

    pub fn rejection(&self, reason: &str) {
        self.rejections
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    pub fn redemption(&self) {
        self.redemptions.inc();
    }

    pub fn impression(&self) {
        self.impressions.inc();
    }

    /// The text exposition, with the outbox depth and storage read at scrape time.
    pub fn render(&self, outbox_depth: i64, storage: StorageStatus) -> String {
        self.outbox_depth.set(outbox_depth);
        let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
        self.store_used.set(clamp(storage.used));
        self.store_budget.set(clamp(storage.limit));
        self.store_full.set(storage.fill as i64);
        self.impressions_dropped
            .set(clamp(storage.impressions_dropped));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Middleware recording each request's latency under its route pattern, on the agent's
/// monotonic clock.
pub async fn track_latency(
    State((metrics, clock)): State<(Metrics, Arc<dyn Clock>)>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = clock.monotonic();
    let response = next.run(req).await;
    metrics
        .latency
        .get_or_create(&vec![("route", route)])
        .observe(clock.monotonic().saturating_sub(started).as_secs_f64());
    response
}
use crate::store::StorageStatus;

//! Prometheus metrics: claims, pickups, orders, rejections by reason, outbox depth, request
//! latency.

use std::sync::{Arc, OnceLock};

use caidan_sync::clock::Clock;
use caidan_sync::uplink::UplinkStatus;
use tokio::sync::watch;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use caidan_sync::contract::ClockStatus;
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
    pickups: Family<Labels, Counter>,
    orders: Family<Labels, Counter>,
    impressions: Counter,
    screen_refreshes: Family<Labels, Counter>,
    screen_pixels: Counter,
    outbox_depth: Gauge,
    store_used: Gauge,
    store_budget: Gauge,
    store_full: Gauge,
    impressions_dropped: Gauge,
    uplink_connected: Gauge,
    uplink_connects: Gauge,
    uplink_acked_seq: Gauge,
    uplink_batches_sent: Gauge,
    uplink_batches_resent: Gauge,
    uplink_acks_refused: Gauge,
    clock_offset: Gauge,
    clock_jumps: Gauge,
    clock_lower_bound: Gauge,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// The uplink's status, once it runs.
    uplink: Arc<OnceLock<watch::Receiver<UplinkStatus>>>,
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

/// Registers `metric` under `name` and hands it back.
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("caidan");
        let reg = &mut r;
        let gauge = |reg: &mut Registry, name: &str, help: &str| {
            registered(reg, name, help, Gauge::default())
        };
        Self {
            claims: registered(
                reg,
                "claims",
                "New claims handed out, by offer kind and whether a fallback",
                Family::default(),
            ),
            rejections: registered(
                reg,
                "rejections",
                "Refused requests, by reason",
                Family::default(),
            ),
            redemptions: registered(reg, "redemptions", "Claims redeemed", Counter::default()),
            pickups: registered(
                reg,
                "pickups",
                "Holds handed over, by who handed them (staff, dispenser)",
                Family::default(),
            ),
            orders: registered(
                reg,
                "orders",
                "Order messages from the cloud, by what became of them",
                Family::default(),
            ),
            impressions: registered(
                reg,
                "impressions",
                "QR codes shown on screen",
                Counter::default(),
            ),
            screen_refreshes: registered(
                reg,
                "screen_refreshes",
                "Updates of the agent's own panel, full or partial (e-paper: flash or not)",
                Family::default(),
            ),
            screen_pixels: registered(
                reg,
                "screen_pixels_written",
                "Pixels the agent wrote to its panel",
                Counter::default(),
            ),
            outbox_depth: gauge(
                reg,
                "outbox_depth",
                "Events in the outbox waiting for the data bank",
            ),
            store_used: gauge(reg, "store_used_bytes", "Bytes of store pages in use"),
            store_budget: gauge(reg, "store_budget_bytes", "Storage budget of the store"),
            store_full: gauge(
                reg,
                "store_fill_level",
                "0 normal, 1 past the budget's warning level, 2 full (new eggs refused)",
            ),
            impressions_dropped: gauge(
                reg,
                "impressions_dropped",
                "Impressions not stored because the store was full",
            ),
            uplink_connected: gauge(
                reg,
                "uplink_connected",
                "1 while the uplink is connected to its broker",
            ),
            uplink_connects: gauge(
                reg,
                "uplink_connects",
                "Connections the uplink made to its broker",
            ),
            uplink_acked_seq: gauge(
                reg,
                "uplink_acked_seq",
                "Highest outbox seq the data bank acknowledged",
            ),
            uplink_batches_sent: gauge(reg, "uplink_batches_sent", "Event batches sent"),
            uplink_batches_resent: gauge(
                reg,
                "uplink_batches_resent",
                "Batches sent again for want of an acknowledgement",
            ),
            uplink_acks_refused: gauge(
                reg,
                "uplink_acks_refused",
                "Messages on the ack topic refused: unsigned, forged, garbled or oversized",
            ),
            clock_offset: gauge(
                reg,
                "clock_offset_ms",
                "Wall clock minus the time the agent goes by (0 while they agree)",
            ),
            clock_jumps: gauge(
                reg,
                "clock_jumps",
                "Steps of the wall clock seen since the agent started",
            ),
            clock_lower_bound: gauge(
                reg,
                "clock_lower_bound",
                "1 while the agent's time is only a lower bound (its wall clock read earlier than the store's last recorded time)",
            ),
            latency: registered(
                reg,
                "http_request_duration_seconds",
                "HTTP request latency by route",
                Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
                    latency_histogram as fn() -> Histogram,
                ),
            ),
            registry: Arc::new(r),
            uplink: Arc::new(OnceLock::new()),
        }
    }

    /// The uplink's status, when it runs.
    pub fn uplink_status(&self) -> Option<UplinkStatus> {
        self.uplink.get().map(|w| w.borrow().clone())
    }

    /// One update of the agent's panel.
    pub fn screen_refresh(&self, kind: &'static str, pixels: u64) {
        self.screen_refreshes
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
        self.screen_pixels.inc_by(pixels);
    }

    /// Reports the uplink's status from now on.
    pub fn watch_uplink(&self, status: watch::Receiver<UplinkStatus>) {
        let _ = self.uplink.set(status);
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

    pub fn pickup(&self, by: &str) {
        self.pickups
            .get_or_create(&vec![("by", by.to_owned())])
            .inc();
    }

    /// An order message handled: `reserved`, `rejected_<reason>`, `duplicate`, ...
    pub fn order(&self, outcome: &str) {
        self.orders
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    pub fn impression(&self) {
        self.impressions.inc();
    }

    /// The text exposition, with the outbox depth, storage and clock read at scrape time.
    pub fn render(
        &self,
        outbox_depth: i64,
        storage: StorageStatus,
        clock: Option<ClockStatus>,
    ) -> String {
        self.outbox_depth.set(outbox_depth);
        if let Some(c) = clock {
            self.clock_offset.set(c.offset_ms);
            self.clock_jumps.set(i64::from(c.jumps));
            self.clock_lower_bound.set(i64::from(c.lower_bound));
        }
        let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
        self.store_used.set(clamp(storage.used));
        self.store_budget.set(clamp(storage.limit));
        self.store_full.set(storage.fill as i64);
        self.impressions_dropped
            .set(clamp(storage.impressions_dropped));
        if let Some(status) = self.uplink.get() {
            let u = status.borrow();
            self.uplink_connected.set(i64::from(u.connected));
            self.uplink_connects.set(clamp(u.connects));
            self.uplink_acked_seq.set(u.acked_seq);
            self.uplink_batches_sent.set(clamp(u.batches_sent));
            self.uplink_batches_resent.set(clamp(u.batches_resent));
            self.uplink_acks_refused.set(clamp(u.acks_refused));
        }
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

//! The device uplink: sends the on-device outbox to the data bank over MQTT and trims it only
//! on the data bank's acknowledgement (docs/events.md, "Acknowledgement").
//!
//! [`state::UplinkCore`] holds the bookkeeping and the policy without I/O; [`spawn_uplink`]
//! runs it on tokio with rumqttc. The agent implements [`OutboxSource`] over its store, calls
//! `wake.notify_one()` after each commit that adds events, marks shopper activity on the
//! handle's [`ShopperSignal`], and flips the shutdown watch to stop.

mod config;
mod driver;
mod inbound;
mod outputs;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::clock::Clock;
use crate::contract::{ConfigAck, ConfigReport, StorageReport};

pub use config::{CoreConfig, MAX_BATCH_BYTES, UplinkConfig, UplinkError};
pub use inbound::{CONFIG_QUEUE, ConfigIn, INBOUND_QUEUE, Inbound};

/// One outbox record as stored by the agent: the complete CloudEvents JSON object text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub seq: i64,
    pub json: String,
}

/// What the uplink needs from the device's outbox. Calls may block (SQLite); the uplink makes
/// them on tokio's blocking pool.
pub trait OutboxSource: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;
    /// The store epoch, fixed for the life of the store.
    fn epoch(&self) -> Uuid;
    /// Up to `max` records with `seq > after`, ascending.
    fn read_after(&self, after: i64, max: usize) -> Result<Vec<OutboxRecord>, Self::Error>;
    /// Deletes records with `seq <= through`; returns how many. Called only for an
    /// acknowledgement of our own epoch.
    fn trim_through(&self, through: i64) -> Result<u64, Self::Error>;
    /// Records currently held (for the state message and metrics).
    fn depth(&self) -> Result<i64, Self::Error>;
    /// The store against its storage budget, for the state message; cheap, never blocks.
    fn storage(&self) -> Option<StorageReport> {
        None
    }
}

/// Counts shopper claims so the uplink can step aside while they happen. Cheap to mark from
/// the claim path: one relaxed atomic add.
#[derive(Debug, Default)]
pub struct ShopperSignal(AtomicU64);

impl ShopperSignal {
    /// A shopper is being served now.
    pub fn mark(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A snapshot of the uplink for status pages and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkStatus {
    pub connected: bool,
    /// Highest seq the data bank acknowledged in this run.
    pub acked_seq: i64,
    /// Highest seq sent in this run.
    pub sent_seq: i64,
    pub batches_in_flight: usize,
    pub batches_sent: u64,
    pub batches_resent: u64,
    /// Successful connections so far.
    pub connects: u64,
    /// Failed connection attempts in a row.
    pub failures: u32,
    /// Messages on the ack topic refused (unsigned, forged, garbled, oversized) since start.
    pub acks_refused: u64,
    /// Messages on the orders topic handed to the agent since start.
    pub orders_received: u64,
    /// Outbox depth when last read (after each trim and state refresh).
    pub outbox_depth: Option<i64>,
    pub last_error: Option<String>,
}

/// Handle to a running uplink task.
#[derive(Debug)]
pub struct UplinkHandle {
    task: JoinHandle<Result<(), UplinkError>>,
    status: watch::Receiver<UplinkStatus>,
    controls: UplinkControls,
}

/// What the agent changes in a running uplink; cheap to clone.
#[derive(Debug, Clone)]
pub struct UplinkControls(Arc<Controls>);

/// What the agent changes in a running uplink.
#[derive(Debug)]
struct Controls {
    config_version: watch::Sender<Option<u64>>,
    report: watch::Sender<Option<ConfigReport>>,
    policy: watch::Sender<Option<config::CoreConfig>>,
    config_acks: mpsc::Sender<ConfigAck>,
}

/// The driver's ends of [`Controls`].
pub(crate) struct ControlsRx {
    pub config_version: watch::Receiver<Option<u64>>,
    pub report: watch::Receiver<Option<ConfigReport>>,
    pub policy: watch::Receiver<Option<config::CoreConfig>>,
    pub config_acks: mpsc::Receiver<ConfigAck>,
}

/// Config answers kept while the uplink cannot send them.
const CONFIG_ACKS: usize = 32;

impl UplinkHandle {
    /// The latest status.
    pub fn status(&self) -> UplinkStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (for tests and dashboards).
    pub fn watch_status(&self) -> watch::Receiver<UplinkStatus> {
        self.status.clone()
    }

    /// Reports a newly applied config version in the state message (republished at once).
    pub fn set_config_version(&self, version: Option<u64>) {
        self.controls.set_config_version(version);
    }

    /// The handle's controls, for tasks that outlive a borrow of it.
    pub fn controls(&self) -> UplinkControls {
        self.controls.clone()
    }

    /// Waits for the task to end (after the shutdown signal).
    pub async fn join(self) -> Result<(), UplinkError> {
        self.task.await?
    }
}

impl UplinkControls {
    /// Reports a newly applied config version in the state message (republished at once).
    pub fn set_config_version(&self, version: Option<u64>) {
        self.0.config_version.send_replace(version);
    }

    /// Reports the config layers applied and the last refusal (republished at once);
    /// `config_version` becomes the highest layer version.
    pub fn set_config_report(&self, report: ConfigReport) {
        let highest = [report.fleet, report.device]
            .into_iter()
            .flatten()
            .chain(report.groups.values().copied())
            .max();
        self.0.config_version.send_replace(highest);
        self.0.report.send_replace(Some(report));
    }

    /// New batching and timing knobs, taken at once (a config push).
    pub fn set_policy(&self, core: CoreConfig) {
        self.0.policy.send_replace(Some(core));
    }

    /// Publishes a config answer on `.../config/ack`, now or once connected.
    pub fn send_config_ack(&self, ack: ConfigAck) {
        if self.0.config_acks.try_send(ack).is_err() {
            tracing::warn!("config answer not queued; the state message still reports it");
        }
    }
}

/// What a running uplink is connected to on the device side.
pub struct UplinkLinks<S> {
    pub source: Arc<S>,
    /// Notified by the agent after each commit that adds events.
    pub wake: Arc<Notify>,
    /// Marked by the agent while shoppers are served.
    pub shoppers: Arc<ShopperSignal>,
    /// Flipping to `true` (or dropping the sender) makes the uplink publish its offline
    /// state, disconnect and end.
    pub shutdown: watch::Receiver<bool>,
    /// Time for the core's timers; the agent passes its own.
    pub clock: Arc<dyn Clock>,
    /// Where orders from the cloud go; with `None` the device does not subscribe to them.
    pub inbound: Option<mpsc::Sender<Inbound>>,
    /// Where config documents go; with `None` the device does not subscribe to them.
    pub config: Option<mpsc::Sender<ConfigIn>>,
}

/// Starts the uplink on the current tokio runtime. Fails only on an invalid config.
pub fn spawn_uplink<S: OutboxSource>(
    cfg: UplinkConfig,
    links: UplinkLinks<S>,
) -> Result<UplinkHandle, UplinkError> {
    let opts = cfg.validate()?;
    let (status_tx, status) = watch::channel(UplinkStatus::default());
    let (config_version, version_rx) = watch::channel(cfg.config_version);
    let (report, report_rx) = watch::channel(None);
    let (policy, policy_rx) = watch::channel(None);
    let (config_acks, acks_rx) = mpsc::channel(CONFIG_ACKS);
    let rx = ControlsRx {
        config_version: version_rx,
        report: report_rx,
        policy: policy_rx,
        config_acks: acks_rx,
    };
    let task = tokio::spawn(driver::run(cfg, opts, links, rx, status_tx));
    Ok(UplinkHandle {
        task,
        status,
        controls: UplinkControls(Arc::new(Controls {
            config_version,
            report,
            policy,
            config_acks,
        })),
    })
}

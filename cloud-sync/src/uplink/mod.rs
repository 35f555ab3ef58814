//! The device uplink: sends the on-device outbox to the data bank over MQTT and trims it only
//! on the data bank's acknowledgement (docs/events.md, "Acknowledgement").
//!
//! [`state::UplinkCore`] holds the bookkeeping without I/O; [`spawn_uplink`] runs it on tokio
//! with rumqttc. The agent implements [`OutboxSource`] over its store, calls
//! `wake.notify_one()` after each commit that adds events, and flips the shutdown watch to stop.

pub mod backoff;
mod driver;
mod message;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::transport::{BrokerUrl, TlsFiles, TransportError};

pub use message::{StateMessage, StorageReport};

/// Largest `batch_max_bytes`: the data bank's batch limit, and what fits an MQTT packet of
/// [`crate::transport::DEFAULT_MAX_PACKET_BYTES`].
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

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
    /// The store epoch (a UUID string), fixed for the life of the store.
    fn epoch(&self) -> String;
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

/// How the uplink connects and batches. Build with [`UplinkConfig::new`], then set the
/// fields from the profile's sync policy.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub fleet: String,
    pub device: String,
    /// `mqtt://host:port` or `mqtts://host:port[?ca=&cert=&key=]` (see [`crate::transport`]).
    pub mqtt_url: String,
    /// TLS files; override those named in the URL.
    pub tls: TlsFiles,
    pub batch_max_events: usize,
    pub batch_max_bytes: usize,
    /// Longest an event waits for its batch to fill.
    pub linger: Duration,
    /// A batch not acknowledged within this is sent again, also while connected.
    pub ack_timeout: Duration,
    /// Batches sent but not yet acknowledged at any one time.
    pub max_in_flight: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often the retained state message is refreshed.
    pub state_interval: Duration,
    /// Firmware profile name, reported in the state message.
    pub profile: String,
    /// Running config version, reported in the state message (see
    /// [`UplinkHandle::set_config_version`]).
    pub config_version: Option<u64>,
}

impl UplinkConfig {
    /// Defaults: 100 events or 64 KiB a batch, 200 ms linger, 10 s ack timeout, 8 batches in
    /// flight, reconnect backoff 250 ms doubling to 30 s, state every 60 s.
    pub fn new(
        fleet: impl Into<String>,
        device: impl Into<String>,
        mqtt_url: impl Into<String>,
    ) -> Self {
        UplinkConfig {
            fleet: fleet.into(),
            device: device.into(),
            mqtt_url: mqtt_url.into(),
            tls: TlsFiles::default(),
            batch_max_events: 100,
            batch_max_bytes: 64 * 1024,
            linger: Duration::from_millis(200),
            ack_timeout: Duration::from_secs(10),
            max_in_flight: 8,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            state_interval: Duration::from_secs(60),
            profile: String::new(),
            config_version: None,
        }
    }

    /// MQTT client id: `caidan-{fleet}-{device}`.
    pub fn client_id(&self) -> String {
        format!("caidan-{}-{}", self.fleet, self.device)
    }

    fn validate(&self) -> Result<BrokerUrl, UplinkError> {
        let invalid = |field: &'static str, reason: &'static str| {
            Err(UplinkError::InvalidConfig { field, reason })
        };
        let bad_id = |s: &str| s.is_empty() || s.contains(['/', '+', '#']);
        if bad_id(&self.fleet) {
            return invalid("fleet", "must be non-empty without '/', '+' or '#'");
        }
        if bad_id(&self.device) {
            return invalid("device", "must be non-empty without '/', '+' or '#'");
        }
        if self.batch_max_events == 0 {
            return invalid("batch_max_events", "must be at least 1");
        }
        if !(2..=MAX_BATCH_BYTES).contains(&self.batch_max_bytes) {
            return invalid("batch_max_bytes", "must be between 2 and 1 MiB");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight", "must be at least 1");
        }
        if self.ack_timeout.is_zero() {
            return invalid("ack_timeout", "must be positive");
        }
        Ok(self.mqtt_url.parse()?)
    }
}

/// Why the uplink could not start or stopped.
#[derive(Debug, Error)]
pub enum UplinkError {
    #[error("uplink config field {field}: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("uplink task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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
    /// Outbox depth when last read (after each trim and state refresh).
    pub outbox_depth: Option<i64>,
    pub last_error: Option<String>,
}

/// Handle to a running uplink task.
#[derive(Debug)]
pub struct UplinkHandle {
    task: JoinHandle<Result<(), UplinkError>>,
    status: watch::Receiver<UplinkStatus>,
    config_version: watch::Sender<Option<u64>>,
}

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
        self.config_version.send_replace(version);
    }

    /// Waits for the task to end (after the shutdown signal).
    pub async fn join(self) -> Result<(), UplinkError> {
        self.task.await?
    }
}

/// Starts the uplink on the current tokio runtime. `wake` is notified by the agent after each
/// commit that adds events; `shutdown` flipping to `true` (or its sender dropping) makes the
/// uplink publish its offline state, disconnect and end. Fails only on an invalid config.
pub fn spawn_uplink<S: OutboxSource>(
    cfg: UplinkConfig,
    source: Arc<S>,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> Result<UplinkHandle, UplinkError> {
    let url = cfg.validate()?;
    let opts = url.mqtt_options(&cfg.client_id(), &cfg.tls)?;
    let (status_tx, status) = watch::channel(UplinkStatus::default());
    let (config_version, version_rx) = watch::channel(cfg.config_version);
    let task = tokio::spawn(driver::run(
        cfg, opts, source, wake, shutdown, version_rx, status_tx,
    ));
    Ok(UplinkHandle {
        task,
        status,
        config_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated_before_start() {
        let ok = UplinkConfig::new("demo", "kiosk-1", "mqtt://127.0.0.1:2883");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.client_id(), "caidan-demo-kiosk-1");
        let mut c = ok.clone();
        c.device = "a/b".into();
        assert!(matches!(
            c.validate(),
            Err(UplinkError::InvalidConfig {
                field: "device",
                ..
            })
        ));
        let mut c = ok.clone();
        c.batch_max_bytes = MAX_BATCH_BYTES + 1;
        assert!(matches!(
            c.validate(),
            Err(UplinkError::InvalidConfig {
                field: "batch_max_bytes",
                ..
            })
        ));
        let mut c = ok.clone();
        c.max_in_flight = 0;
        assert!(c.validate().is_err());
        let mut c = ok;
        c.mqtt_url = "http://x:1".into();
        assert!(matches!(
            c.validate(),
            Err(UplinkError::Transport(TransportError::BadScheme { .. }))
        ));
    }
}

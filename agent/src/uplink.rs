//! The agent's side of the uplink: the outbox as the cloud-sync uplink reads and trims it,
//! and the uplink settings taken from the firmware profile's sync policy.

use std::path::Path;
use std::time::Duration;

use caidan_cloud_sync::transport::TlsFiles;
use caidan_cloud_sync::uplink::{OutboxRecord, OutboxSource, StorageReport, UplinkConfig};

use crate::config::AgentConfig;
use crate::store::{Reader, StoreError, WriterHandle};

/// How recently a shopper must have claimed for the uplink to yield to them.
const SHOPPER_WINDOW: Duration = Duration::from_secs(1);
/// Pause before each outbox read while shoppers are active.
const SHOPPER_YIELD: Duration = Duration::from_millis(20);

/// Reads go through a read-only connection; trims go through the single writer.
#[derive(Debug)]
pub struct AgentOutbox {
    epoch: String,
    reader: Reader,
    writer: WriterHandle,
}

impl AgentOutbox {
    pub fn open(store: &Path, writer: WriterHandle) -> Result<Self, StoreError> {
        let reader = Reader::open(store)?;
        Ok(Self {
            epoch: reader.epoch()?,
            reader,
            writer,
        })
    }
}

impl OutboxSource for AgentOutbox {
    type Error = StoreError;

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn read_after(&self, after: i64, max: usize) -> Result<Vec<OutboxRecord>, StoreError> {
        // Shoppers first: while they are at the screen, each batch waits a moment, so a
        // backlog drains at a few thousand events a second instead of taking the CPU.
        if self.writer.shoppers_active(SHOPPER_WINDOW) {
            std::thread::sleep(SHOPPER_YIELD);
        }
        Ok(self
            .reader
            .outbox_after(after, max)?
            .into_iter()
            .map(|r| OutboxRecord {
                seq: r.seq,
                json: r.json,
            })
            .collect())
    }

    fn trim_through(&self, through: i64) -> Result<u64, StoreError> {
        self.writer.trim_blocking(through)
    }

    fn depth(&self) -> Result<i64, StoreError> {
        Ok(self.writer.outbox_depth())
    }

    fn storage(&self) -> Option<StorageReport> {
        let s = self.writer.storage();
        Some(StorageReport {
            used_bytes: s.used,
            budget_bytes: s.limit,
            fill: s.fill.as_str().to_owned(),
        })
    }
}

/// Uplink settings for this device: identity from config, batching from the profile.
pub fn uplink_config(cfg: &AgentConfig, mqtt_url: &str, tls: TlsFiles) -> UplinkConfig {
    let profile = cfg.profile();
    let sync = &profile.sync;
    let mut u = UplinkConfig::new(cfg.device.fleet.clone(), cfg.device.id.clone(), mqtt_url);
    u.tls = tls;
    u.batch_max_events = sync.batch_max_events as usize;
    u.batch_max_bytes = sync.batch_max_bytes as usize;
    u.linger = sync.linger();
    u.ack_timeout = sync.ack_timeout();
    u.max_in_flight = usize::from(sync.max_in_flight);
    u.initial_backoff = Duration::from_millis(sync.initial_backoff_ms);
    u.max_backoff = sync.max_backoff();
    let o = &cfg.sync;
    if let Some(n) = o.batch_max_events {
        u.batch_max_events = n as usize;
    }
    if let Some(ms) = o.linger_ms {
        u.linger = Duration::from_millis(ms);
    }
    if let Some(ms) = o.ack_timeout_ms {
        u.ack_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = o.max_in_flight {
        u.max_in_flight = usize::from(n);
    }
    if let Some(ms) = o.max_backoff_ms {
        u.max_backoff = Duration::from_millis(ms);
        u.initial_backoff = u.initial_backoff.min(u.max_backoff);
    }
    u.profile = profile.name.clone();
    u
}

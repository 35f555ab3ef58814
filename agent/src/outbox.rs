//! The store's outbox as the uplink reads and trims it, and the uplink settings of this
//! device: identity from config, batching and timers from the firmware profile's sync policy
//! with the config's overrides.

use std::path::Path;
use std::time::Duration;

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::contract::{Name, StorageReport};
use caidan_sync::tls::TlsFiles;
use caidan_sync::uplink::{CoreConfig, OutboxRecord, OutboxSource, UplinkConfig};
use uuid::Uuid;

use crate::config::AgentConfig;
use crate::store::{Reader, StoreError, WriterHandle};

/// The agent store seen as an outbox: reads through a read-only connection, trims through
/// the single writer.
#[derive(Debug)]
pub struct StoreOutbox {
    epoch: Uuid,
    reader: Reader,
    writer: WriterHandle,
}

impl StoreOutbox {
    pub fn open(store: &Path, writer: WriterHandle) -> Result<Self, StoreError> {
        let reader = Reader::open(store)?;
        Ok(Self {
            epoch: reader.epoch()?,
            reader,
            writer,
        })
    }
}

impl OutboxSource for StoreOutbox {
    type Error = StoreError;

    fn epoch(&self) -> Uuid {
        self.epoch
    }

    fn read_after(&self, after: i64, max: usize) -> Result<Vec<OutboxRecord>, StoreError> {
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
            fill: s.fill,
        })
    }
}

/// Uplink settings for this device: identity from config, batching from the profile.
pub fn uplink_config(cfg: &AgentConfig, broker: BrokerUrl, tls: TlsFiles) -> UplinkConfig {
    let profile = cfg.profile();
    let profile_name =
        Name::new(profile.name.as_str()).expect("bundled profile names are lowercase names");
    let mut u = UplinkConfig::new(
        cfg.device.fleet.clone(),
        cfg.device.id.clone(),
        broker,
        cfg.trust.databank.clone(),
        profile_name,
    );
    u.tls = tls;
    u.location = cfg.device.location;
    u.groups = cfg.device.groups.clone();
    u.scene = Name::new(cfg.device.scene.as_str()).ok();
    let seed = u.core.backoff_seed;
    u.core = core_config(cfg);
    u.core.backoff_seed = seed;
    u
}

/// The uplink's batching and timing: the profile's sync policy with the config's overrides.
pub fn core_config(cfg: &AgentConfig) -> CoreConfig {
    let sync = &cfg.profile().sync;
    let mut c = CoreConfig::new(100, 64 * 1024, 8);
    c.batch_max_events = sync.batch_max_events as usize;
    c.batch_max_bytes = sync.batch_max_bytes as usize;
    c.linger = sync.linger();
    c.ack_timeout = sync.ack_timeout();
    c.max_in_flight = usize::from(sync.max_in_flight);
    c.initial_backoff = Duration::from_millis(sync.initial_backoff_ms);
    c.max_backoff = sync.max_backoff();
    let o = &cfg.sync;
    if let Some(n) = o.batch_max_events {
        c.batch_max_events = n as usize;
    }
    if let Some(ms) = o.linger_ms {
        c.linger = Duration::from_millis(ms);
    }
    if let Some(ms) = o.ack_timeout_ms {
        c.ack_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = o.max_in_flight {
        c.max_in_flight = usize::from(n);
    }
    if let Some(ms) = o.max_backoff_ms {
        c.max_backoff = Duration::from_millis(ms);
        c.initial_backoff = c.initial_backoff.min(c.max_backoff);
    }
    c
}

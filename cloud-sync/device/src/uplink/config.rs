//! How the uplink connects and batches, validated before it starts.

use std::time::Duration;

use rumqttc::MqttOptions;

use crate::broker_url::{BrokerUrl, BrokerUrlError};
use crate::contract::{Location, Name};
use crate::keys::TrustedKeys;
use crate::tls::TlsFiles;

/// Batching and timing knobs of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Most events in one batch (at least 1).
    pub batch_max_events: usize,
    /// Largest batch payload in bytes; a single larger record is still sent alone.
    pub batch_max_bytes: usize,
    /// Longest the oldest unsent record waits for its batch to fill.
    pub linger: Duration,
    /// A batch without acknowledgement for this long is sent again.
    pub ack_timeout: Duration,
    /// Batches sent but not yet acknowledged at any one time (at least 1).
    pub max_in_flight: usize,
    /// How often the retained state message is refreshed while connected.
    pub state_interval: Duration,
    /// Wait before retrying a failed outbox read or trim.
    pub store_retry: Duration,
    /// First reconnect delay; doubles per failed attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Spreads the reconnect delays of a fleet (see [`crate::backoff`]).
    pub backoff_seed: u64,
    /// A connection that lasted this long counts as a success: the next failure starts the
    /// backoff again. One that broke sooner (a broker that accepts, then drops us) keeps
    /// doubling it.
    pub stable_after: Duration,
    /// How recently a shopper must have claimed for the uplink to step aside.
    pub shopper_window: Duration,
    /// Least time between two outbox reads while stepping aside.
    pub shopper_yield: Duration,
}

impl CoreConfig {
    /// The settings the agent runs with, for a batch size and in-flight window.
    pub fn new(batch_max_events: usize, batch_max_bytes: usize, max_in_flight: usize) -> Self {
        CoreConfig {
            batch_max_events,
            batch_max_bytes,
            linger: Duration::from_millis(200),
            ack_timeout: Duration::from_secs(10),
            max_in_flight,
            state_interval: Duration::from_secs(60),
            store_retry: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            backoff_seed: 0,
            stable_after: Duration::from_secs(30),
            shopper_window: Duration::from_secs(1),
            shopper_yield: Duration::from_millis(20),
        }
    }
}

/// Largest `batch_max_bytes`: the data bank's batch limit, and what fits an MQTT packet of
/// [`crate::broker_url::DEFAULT_MAX_PACKET_BYTES`].
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Why the uplink could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink config field {field}: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    BrokerUrl(#[from] BrokerUrlError),
    #[error("uplink task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How the uplink connects and batches. Build with [`UplinkConfig::new`], then set the
/// fields from the profile's sync policy.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub fleet: Name,
    pub device: Name,
    pub broker: BrokerUrl,
    /// TLS files; override those named in the URL.
    pub tls: TlsFiles,
    /// Batching, timers and policy of the core.
    pub core: CoreConfig,
    /// The data bank keys an acknowledgement must be signed by; the outbox is trimmed only
    /// on one that verifies.
    pub ack_keys: TrustedKeys,
    /// Firmware profile name, reported in the state message.
    pub profile: Name,
    /// Running config version, reported in the state message (see
    /// [`super::UplinkHandle::set_config_version`]).
    pub config_version: Option<u64>,
    /// Where the touchpoint stands, reported in the state message.
    pub location: Option<Location>,
    /// The device's groups: their config topics are subscribed, and they are reported.
    pub groups: Vec<Name>,
    /// The touchpoint's scene, reported in the state message.
    pub scene: Option<Name>,
}

impl UplinkConfig {
    /// Defaults: 100 events or 64 KiB a batch, 200 ms linger, 10 s ack timeout, 8 batches in
    /// flight, reconnect backoff 250 ms doubling to 30 s, state every 60 s.
    pub fn new(
        fleet: Name,
        device: Name,
        broker: BrokerUrl,
        ack_keys: TrustedKeys,
        profile: Name,
    ) -> Self {
        let mut core = CoreConfig::new(100, 64 * 1024, 8);
        core.backoff_seed = crate::backoff::random_seed(&device);
        UplinkConfig {
            fleet,
            device,
            broker,
            tls: TlsFiles::default(),
            core,
            ack_keys,
            profile,
            config_version: None,
            location: None,
            groups: Vec::new(),
            scene: None,
        }
    }

    /// MQTT client id: `caidan-{fleet}-{device}`.
    pub fn client_id(&self) -> String {
        format!("caidan-{}-{}", self.fleet, self.device)
    }

    pub(super) fn validate(&self) -> Result<MqttOptions, UplinkError> {
        let invalid = |field: &'static str, reason: &'static str| {
            Err(UplinkError::InvalidConfig { field, reason })
        };
        if self.ack_keys.is_empty() {
            return invalid(
                "ack_keys",
                "no data bank key is trusted, so no acknowledgement could be verified (set trust.databank)",
            );
        }
        let c = &self.core;
        if c.batch_max_events == 0 {
            return invalid("batch_max_events", "must be at least 1");
        }
        if !(2..=MAX_BATCH_BYTES).contains(&c.batch_max_bytes) {
            return invalid("batch_max_bytes", "must be between 2 and 1 MiB");
        }
        if c.max_in_flight == 0 {
            return invalid("max_in_flight", "must be at least 1");
        }
        if c.ack_timeout.is_zero() {
            return invalid("ack_timeout", "must be positive");
        }
        if c.initial_backoff > c.max_backoff {
            return invalid("initial_backoff", "must not exceed max_backoff");
        }
        if c.max_backoff > Duration::from_secs(24 * 3600) {
            return invalid("max_backoff", "at most a day");
        }
        Ok(self.broker.mqtt_options(&self.client_id(), &self.tls)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> UplinkConfig {
        let name = |s: &str| Name::new(s).unwrap();
        let bank = crate::keys::SecretKey::generate().public();
        UplinkConfig::new(
            name("demo"),
            name("kiosk-1"),
            url.parse().unwrap(),
            TrustedKeys::new(vec![bank]),
            name("kiosk"),
        )
    }

    #[test]
    fn config_is_validated_before_start() {
        let ok = cfg("mqtt://127.0.0.1:2883");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.client_id(), "caidan-demo-kiosk-1");
        let mut c = ok.clone();
        c.core.batch_max_bytes = MAX_BATCH_BYTES + 1;
        assert!(matches!(
            c.validate(),
            Err(UplinkError::InvalidConfig {
                field: "batch_max_bytes",
                ..
            })
        ));
        let mut c = ok.clone();
        c.core.max_in_flight = 0;
        assert!(c.validate().is_err());
        let mut c = ok;
        c.core.initial_backoff = Duration::from_secs(60);
        assert!(matches!(
            c.validate(),
            Err(UplinkError::InvalidConfig {
                field: "initial_backoff",
                ..
            })
        ));
        let c = cfg("mqtts://127.0.0.1:2883");
        assert!(matches!(c.validate(), Err(UplinkError::BrokerUrl(_))));
        let mut c = cfg("mqtt://127.0.0.1:2883");
        c.ack_keys = TrustedKeys::default();
        assert!(matches!(
            c.validate(),
            Err(UplinkError::InvalidConfig {
                field: "ack_keys",
                ..
            })
        ));
    }
}

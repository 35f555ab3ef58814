//! The development MQTT broker (rumqttd, in-process, loopback by default).
//!
//! rumqttd 0.20 supports QoS 1, retained messages, last wills, persistent sessions and
//! shared subscriptions (`$share/{group}/{filter}`), with two limits found in its source:
//! a shared group is keyed by its name alone (use one filter per group), and retained
//! messages are not sent to shared subscribers. Worse, its router thread panics ("group must
//! exists", router/routing.rs:512) when a persistent-session member of a shared group
//! disconnects with messages in flight, so a data bank on this broker should subscribe
//! plainly (`--share-group none`; `caidan-cloud dev` does). It cannot report the port it
//! bound, so port 0 is resolved to a free port first.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;

/// Default listen address: loopback, clear of a system Mosquitto on 1883.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:18830";

/// Largest MQTT payload the development broker accepts.
pub const MAX_PAYLOAD_BYTES: usize = 2 * 1024 * 1024;

/// Why the broker did not start.
#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("cannot reserve a port on {addr}: {source}")]
    Reserve {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
    #[error("broker did not accept connections on {0} within 5 s (port in use?)")]
    NotListening(SocketAddr),
}

/// A running development broker. Its threads live until the process exits.
#[derive(Debug, Clone, Copy)]
pub struct DevBroker {
    addr: SocketAddr,
}

impl DevBroker {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn config(listen: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "caidan-dev-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PAYLOAD_BYTES,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("dev".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// Starts the broker in this process on `listen` (port 0 picks a free port) and returns
/// once it accepts connections.
pub fn start(listen: SocketAddr) -> Result<DevBroker, BrokerError> {
    let addr = if listen.port() == 0 {
        let probe = TcpListener::bind(listen).map_err(|source| BrokerError::Reserve {
            addr: listen,
            source,
        })?;
        probe.local_addr().map_err(|source| BrokerError::Reserve {
            addr: listen,
            source,
        })?
    } else {
        listen
    };
    std::thread::Builder::new()
        .name("dev-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config(addr));
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, %addr, "development broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    // About 5 s: each try waits 20 ms, or up to 200 ms for a connect that hangs.
    for _ in 0..250 {
        if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            tracing::info!(%addr, "development broker listening");
            return Ok(DevBroker { addr: target });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}

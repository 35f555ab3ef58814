//! The device half of everything that crosses the wire between a touchpoint and the cloud:
//! MQTT topics, the typed wire contract, broker URLs and TLS, and the uplink that syncs the
//! outbox. The agent links this crate and nothing of the cloud side; the cloud side links it
//! too, so both speak one contract and share the clock, backoff and credential checks.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod broker_url;
pub mod clock;
pub mod contract;
pub mod credentials;
pub mod keys;
pub mod logs;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod tls;
pub mod topics;
pub mod uplink;

//! What Caidan's tests share: Mosquitto, NATS and private PostgreSQL clusters started on
//! free ports (and killed on drop), the real `caidan-agent` and `caidan-cloud` binaries, waiting for a
//! condition with a deadline instead of sleeping, and a throw-away PKI.
//!
//! This crate depends on no Caidan crate, so the agent's and the cloud's own tests can use it.
#![forbid(unsafe_code)]

pub mod agent;
pub mod bin;
pub mod claims;
pub mod databank;
pub mod files;
pub mod http;
pub mod mosquitto;
pub mod mqtt;
pub mod nats;
pub mod net;
pub mod netns;
pub mod pki;
pub mod postgres;
pub mod proc;
pub mod repo;
pub mod wait;

pub use agent::{AgentProc, agent_epoch, agent_outbox};
pub use databank::{DatabankCounts, DatabankProc};
pub use http::get_json;
pub use mosquitto::Mosquitto;
pub use nats::{Nats, NatsCluster};
pub use net::free_port;
pub use netns::{Netns, Veth};
pub use pki::{TestPki, TlsPaths};
pub use postgres::Postgres;
pub use proc::Proc;
pub use wait::{eventually, wait_until};

//! The Caidan on-device agent: offer cache, egg engine, claims, local HTTP API and pages,
//! and the outbox every fact is written to.
#![forbid(unsafe_code)]

pub mod catalogue;
pub mod claim;
pub mod clock;
pub mod config;
pub mod engine;
pub mod events;
pub mod http;
pub mod runtime;
pub mod shopper;
pub mod store;
pub mod token;
pub mod uplink;

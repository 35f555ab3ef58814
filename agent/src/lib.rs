//! The Caidan on-device agent: offer cache, egg engine, claims, local HTTP API and pages,
//! and the outbox every fact is written to. What crosses the wire is `caidan-sync`'s.
#![deny(unsafe_code)]

pub mod catalogue;
pub mod claim;
pub mod config;
pub mod directory;
pub mod display;
pub mod elsewhere;
pub mod engine;
pub mod events;
pub mod fleet;
pub mod http;
pub mod https;
pub mod inventory;
pub mod limits;
pub mod lockout;
pub mod orders;
pub mod outbox;
pub mod pickup;
pub mod runtime;
pub mod secrets;
pub mod shopper;
pub mod store;
pub mod token;

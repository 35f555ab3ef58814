//! Fleet operator commands: make a signing key, push a signed config layer to the fleet, a
//! group or a device, see what every device runs, roll a layer out in waves that halt and
//! roll back when too many devices refuse it, and roll back by hand.
//!
//! The decisions are plain functions and state machines without I/O ([`settings`],
//! [`document`], [`waves`], [`abort`], [`answers`], [`rollout`], [`status`], [`summary`]);
//! [`connection`] is the MQTT edge and [`command`] runs each command over it. The wire
//! contract is `caidan_sync`'s: DSSE envelopes, `ConfigAck` answers, retained states.

pub mod abort;
pub mod answers;
pub mod cli;
pub mod command;
pub mod connection;
pub mod document;
mod error;
pub mod history;
pub mod keygen;
pub mod rollout;
pub mod settings;
pub mod snapshot;
pub mod status;
pub mod summary;
mod target;
pub mod waves;

pub use error::FleetError;
pub use target::Target;

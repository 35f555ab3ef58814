//! Fleet config: layers signed by operators (fleet, group, device), verified against the
//! keys the device trusts, merged over the local config, checked whole against the
//! firmware profile, and applied all or nothing, without a restart.
//!
//! [`layers`] and [`settings`] are the pure core; [`apply`] runs it against the store,
//! the network and the running agent.

pub mod apply;
pub mod fetch;
pub mod layers;
pub mod settings;

pub use layers::{Applied, Decision, Layers, Me, Plan};
pub use settings::{CatalogueRef, Features, Settings};

//! Firmware profiles: one TOML file per hardware class (display, inputs, actuators, storage
//! and memory budget, link type, sync policy), and the code that loads and validates them.
//!
//! The agent picks a bundled profile by name ([`bundled`]), refuses a scene the profile does
//! not [`Profile::serves`], offers only what [`Profile::capabilities`] allows, bounds its
//! outbox by the storage budget and tunes its uplink from [`SyncPolicy`].
#![forbid(unsafe_code)]

mod bundled;
mod error;
mod load;
mod profile;
mod scene;
mod sync;
mod validate;

pub use bundled::{bundled, bundled_all, bundled_names, bundled_source};
pub use error::ProfileError;
pub use load::load_dir;
pub use profile::{
    Actuators, Capability, ColourDepth, DEFAULT_WARN_AT_PERCENT, DisplaySpec, Input, Inputs,
    Limits, Link, LinkKind, Memory, Orientation, Profile, ScanSpec, Storage,
};
pub use scene::{Scene, UnknownScene};
pub use sync::SyncPolicy;

/// Limits validation enforces, for tools that want to explain or pre-check them.
pub mod limits {
    pub use crate::validate::{
        BATCH_BYTES, BATCH_EVENTS, CLAIMS_PER_MINUTE, CONNECTIONS, MAX_ACTUATOR_UNITS,
        MAX_DISPLAY_SIDE, MAX_LINGER_MS, MAX_STORAGE_BYTES, MEMORY_MIB, METERED_MIN_BATCH_EVENTS,
        METERED_MIN_LINGER_MS, MIN_STORAGE_BYTES, TIMEOUT_MS,
    };
}

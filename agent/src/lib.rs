//! The Caidan on-device agent.
#![forbid(unsafe_code)]

pub mod clock;
pub mod token;

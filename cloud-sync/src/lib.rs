//! Everything that crosses the wire between touchpoints and the cloud: topics and message
//! formats, the device uplink, the data bank, and a development broker.
#![forbid(unsafe_code)]

pub mod broker;
pub mod databank;
pub mod topics;
pub mod transport;
pub mod uplink;
pub mod wire;

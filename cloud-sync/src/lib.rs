//! Everything that crosses the wire between touchpoints and the cloud: topics and message
//! formats, the device uplink, the data bank, and a development broker.
#![forbid(unsafe_code)]

pub mod topics;

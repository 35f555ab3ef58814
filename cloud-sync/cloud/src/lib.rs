//! The cloud half: the data bank (ingest, storage, funnel queries, dashboard), the fleet
//! operator commands and a development broker, run by the `caidan-cloud` binary. The wire
//! contract comes from the device half, `caidan-sync`.
#![forbid(unsafe_code)]

pub mod broker;
pub mod cli;
pub mod databank;
pub mod fleet;

//! The Caidan simulator: a fleet of agents (in process on one virtual clock, or as real
//! processes where a fault needs one), a development broker and a data bank on one machine;
//! a day of shoppers, orders, a config rollout and faults; every promise checked at the end.
#![forbid(unsafe_code)]

pub mod check;
pub mod clock;
pub mod drive;
pub mod link;
pub mod plan;
pub mod report;
#[doc(hidden)]
pub mod report_example;
pub mod report_html;
pub mod report_plots;
pub mod scenario;
pub mod summary;
pub mod world;

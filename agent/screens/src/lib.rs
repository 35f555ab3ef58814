//! Touchpoint screens (attract, reveal, pickup prompt) drawn with embedded-graphics onto any
//! `DrawTarget`, so the same code draws to a PNG and to a device framebuffer.
#![forbid(unsafe_code)]

mod error;
pub mod fb;
mod frame;
pub mod layout;
mod png;
pub mod qr;
pub mod refresh;
mod render;
pub mod samples;
pub mod strings;
pub mod text;

pub use error::ScreenError;
pub use frame::Frame;
pub use png::{BAND_ROWS, to_png};
pub use render::{ACCENT, BACKGROUND, Drawing, INK, NextStep, Reveal, Screen, ScreenColor};

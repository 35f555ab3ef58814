//! Touchpoint screens (attract, reveal, pickup prompt) drawn with embedded-graphics onto any
//! `DrawTarget`, so the same code draws to a PNG and to a device framebuffer.
#![forbid(unsafe_code)]

mod error;
pub mod layout;
pub mod qr;
pub mod strings;
pub mod text;

pub use error::ScreenError;

//! What can go wrong drawing a screen.

use thiserror::Error;

/// Why a screen could not be laid out, encoded or drawn.
#[derive(Debug, Error, PartialEq)]
pub enum ScreenError {
    /// The parts of a screen do not fit on the panel at the sizes they need.
    #[error("{screen} screen does not fit a {width}x{height} panel: {reason}")]
    DoesNotFit {
        screen: &'static str,
        width: u32,
        height: u32,
        reason: String,
    },
    /// The QR code readable from the profile's scanning distance is larger than the panel.
    #[error(
        "profile {profile}: a QR readable from its scanning distance needs {needed_mm} mm, the panel has {available_mm} mm"
    )]
    QrTooLarge {
        profile: String,
        needed_mm: u32,
        available_mm: u32,
    },
    /// The profile has no `[scan]` section, so the QR cannot be sized.
    #[error("profile {profile} has no [scan] section to size the QR from")]
    NoScanSpec { profile: String },
    /// The link is too long for any QR version.
    #[error("the link cannot be encoded as a QR code: {0}")]
    Encode(String),
    /// The font lacks glyphs a string needs.
    #[error("font {font} lacks {missing:?}")]
    MissingGlyphs {
        font: &'static str,
        missing: Vec<char>,
    },
    /// Writing the PNG failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

//! The profiles shipped inside the binary, so a device needs no profile files on disk.

use crate::Profile;
use crate::load::parse;

/// File stem and text of every file in `profiles/`, sorted by stem.
const BUNDLED: &[(&str, &str)] = &[
    (
        "campus-screen",
        include_str!("../profiles/campus-screen.toml"),
    ),
    (
        "cinema-screen",
        include_str!("../profiles/cinema-screen.toml"),
    ),
    (
        "community-locker",
        include_str!("../profiles/community-locker.toml"),
    ),
    (
        "restaurant-counter",
        include_str!("../profiles/restaurant-counter.toml"),
    ),
    (
        "transit-kiosk",
        include_str!("../profiles/transit-kiosk.toml"),
    ),
    (
        "vending-machine",
        include_str!("../profiles/vending-machine.toml"),
    ),
];

/// Names of the bundled profiles, sorted; device config picks one of these.
pub fn bundled_names() -> Vec<&'static str> {
    BUNDLED.iter().map(|(name, _)| *name).collect()
}

/// The bundled profile called `name`, or `None` if there is no such profile.
///
/// Bundled files are validated by this crate's tests, so a parse failure here is a build bug.
pub fn bundled(name: &str) -> Option<Profile> {
    let (stem, text) = BUNDLED.iter().find(|(stem, _)| *stem == name)?;
    let origin = format!("{stem}.toml");
    Some(
        parse(text, &origin, Some(stem))
            .unwrap_or_else(|e| panic!("bundled profile is invalid: {e}")),
    )
}

/// Every bundled profile, sorted by name.
pub fn bundled_all() -> Vec<Profile> {
    BUNDLED
        .iter()
        .filter_map(|(name, _)| bundled(name))
        .collect()
}

/// The bundled TOML text of `name`, for showing operators or writing out as a starting point.
pub fn bundled_source(name: &str) -> Option<&'static str> {
    BUNDLED
        .iter()
        .find(|(stem, _)| *stem == name)
        .map(|(_, text)| *text)
}

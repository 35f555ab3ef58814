//! Writes every screen of every bundled profile as PNG into a folder, for docs and review.
//!
//! `cargo run -p caidan-screens --example preview -- /tmp/screens`

use caidan_screens::to_png;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "screens".into());
    std::fs::create_dir_all(&dir)?;
    let screens = caidan_screens::samples::all();
    for profile in caidan_profiles::bundled_all() {
        for (name, screen) in screens {
            let path = format!("{dir}/{}-{name}.png", profile.name);
            std::fs::write(&path, to_png(&profile, screen)?)?;
            println!("{path}");
        }
    }
    Ok(())
}

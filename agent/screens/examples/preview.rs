//! Writes every screen of every bundled profile as PNG into a folder, for docs and review.
//!
//! `cargo run -p caidan-screens --example preview -- /tmp/screens`

use caidan_screens::strings::{Banner, PickupStatus};
use caidan_screens::{NextStep, Reveal, Screen, to_png};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "screens".into());
    std::fs::create_dir_all(&dir)?;
    let link =
        "http://192.168.100.200:8080/e/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp";
    let screens = [
        (
            "attract",
            Screen::Attract {
                link,
                banner: Banner::Offline,
            },
        ),
        (
            "reveal",
            Screen::Reveal(Reveal {
                title_zh: "免费咖啡一杯",
                title_en: "A free coffee",
                next: NextStep::ShowAtCounter {
                    claim_code: "K7Q-4MZ",
                },
            }),
        ),
        (
            "reveal-pickup",
            Screen::Reveal(Reveal {
                title_zh: "薯片试吃装",
                title_en: "Crisps, free sample",
                next: NextStep::Pickup {
                    pickup_code: "482913",
                    hold_until: "18:30",
                },
            }),
        ),
        (
            "pickup",
            Screen::Pickup {
                entered: "4829",
                status: Some(PickupStatus::DispenseJam),
            },
        ),
    ];
    for profile in caidan_profiles::bundled_all() {
        for (name, screen) in screens {
            let path = format!("{dir}/{}-{name}.png", profile.name);
            std::fs::write(&path, to_png(&profile, screen)?)?;
            println!("{path}");
        }
    }
    Ok(())
}

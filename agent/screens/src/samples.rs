//! One of each screen with fixed content, for golden images, previews and docs.

use crate::strings::{BRAND, Banner, PickupStatus};
use crate::{NextStep, Reveal, Screen};

/// Fixed, so the attract screens are the same image on every run.
pub const LINK: &str =
    "http://192.168.100.200:8080/e/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp";

/// Every screen and state, named as the golden files are.
pub fn all() -> [(&'static str, Screen<'static>); 9] {
    let attract = |banner| Screen::Attract {
        link: LINK,
        brand: BRAND,
        banner,
    };
    [
        ("attract", attract(Banner::Ready)),
        ("offline", attract(Banner::Offline)),
        ("full", attract(Banner::StorageFull)),
        ("sold-out", attract(Banner::SoldOut)),
        ("updating-config", attract(Banner::UpdatingConfig)),
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
                entered: "",
                status: None,
            },
        ),
        (
            "pickup-jam",
            Screen::Pickup {
                entered: "4829",
                status: Some(PickupStatus::DispenseJam),
            },
        ),
    ]
}

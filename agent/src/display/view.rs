//! What the touchpoint's own panel shows at a moment: a pure function of the agent's state,
//! so the choice of screen and banner is tested without a panel, a clock or a store.

use caidan_screens::strings::{self, Banner, PickupStatus};
use caidan_screens::{NextStep, Reveal, Screen};

use crate::catalogue::Text;

/// How long the reveal of a claim stays on the panel before the attract screen returns.
pub const REVEAL_MS: i64 = 8_000;
/// How long a pickup outcome stays on the panel.
pub const PICKUP_MS: i64 = 6_000;

/// A screen with everything it shows owned, so it can be kept and compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Attract {
        link: String,
        brand: (String, String),
        banner: Banner,
    },
    Reveal {
        title: (String, String),
        code: String,
        /// Local hold end (`18:30`) when the offer is an item held for pickup.
        hold_until: Option<String>,
    },
    Pickup {
        entered: String,
        status: Option<PickupStatus>,
    },
}

impl View {
    /// The screen to lay out and draw.
    pub fn screen(&self) -> Screen<'_> {
        match self {
            View::Attract {
                link,
                brand,
                banner,
            } => Screen::Attract {
                link,
                brand: (&brand.0, &brand.1),
                banner: *banner,
            },
            View::Reveal {
                title,
                code,
                hold_until,
            } => Screen::Reveal(Reveal {
                title_zh: &title.0,
                title_en: &title.1,
                next: match hold_until {
                    Some(until) => NextStep::Pickup {
                        pickup_code: code,
                        hold_until: until,
                    },
                    None => NextStep::ShowAtCounter { claim_code: code },
                },
            }),
            View::Pickup { entered, status } => Screen::Pickup {
                entered,
                status: *status,
            },
        }
    }
}

/// Something a shopper just did that the panel shows for a few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moment {
    /// An egg was claimed here.
    Claimed {
        title: (String, String),
        code: String,
        hold_until: Option<String>,
    },
    /// A pickup code was entered at the keypad.
    Pickup { status: PickupStatus },
}

/// The agent's state the panel reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct State<'a> {
    pub now_ms: i64,
    /// The egg link of the current QR window.
    pub link: String,
    /// The brand line config sets; the built-in one otherwise.
    pub brand: Option<&'a Text>,
    /// Whether the uplink is connected; `None` on a touchpoint run without a broker.
    pub online: Option<bool>,
    pub storage_full: bool,
    /// The last claim found no offer with quota or stock left.
    pub sold_out: bool,
    /// A config document is being checked and applied.
    pub updating: bool,
    /// The last moment and when it happened.
    pub moment: Option<(&'a Moment, i64)>,
}

/// The banner that matters most: what stops claims first, then what a shopper may notice.
pub fn banner(s: &State<'_>) -> Banner {
    if s.storage_full {
        Banner::StorageFull
    } else if s.sold_out {
        Banner::SoldOut
    } else if s.updating {
        Banner::UpdatingConfig
    } else if s.online == Some(false) {
        Banner::Offline
    } else {
        Banner::Ready
    }
}

/// What the panel shows for `s`.
pub fn view(s: &State<'_>) -> View {
    if let Some((moment, at)) = s.moment {
        match moment {
            Moment::Claimed {
                title,
                code,
                hold_until,
            } if s.now_ms - at < REVEAL_MS => {
                return View::Reveal {
                    title: title.clone(),
                    code: code.clone(),
                    hold_until: hold_until.clone(),
                };
            }
            Moment::Pickup { status } if s.now_ms - at < PICKUP_MS => {
                return View::Pickup {
                    entered: String::new(),
                    status: Some(*status),
                };
            }
            _ => {}
        }
    }
    let brand = s.brand.map_or_else(
        || (strings::BRAND.0.to_owned(), strings::BRAND.1.to_owned()),
        |b| (b.zh.clone(), b.en.clone()),
    );
    View::Attract {
        link: s.link.clone(),
        brand,
        banner: banner(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State<'static> {
        State {
            now_ms: 100_000,
            link: "http://t/e/abc".into(),
            brand: None,
            online: Some(true),
            storage_full: false,
            sold_out: false,
            updating: false,
            moment: None,
        }
    }

    #[test]
    fn the_attract_banner_puts_what_stops_claims_first() {
        let mut s = state();
        assert_eq!(banner(&s), Banner::Ready);
        s.online = None;
        assert_eq!(
            banner(&s),
            Banner::Ready,
            "no broker configured is not offline"
        );
        s.online = Some(false);
        assert_eq!(banner(&s), Banner::Offline);
        s.updating = true;
        assert_eq!(banner(&s), Banner::UpdatingConfig);
        s.sold_out = true;
        assert_eq!(banner(&s), Banner::SoldOut);
        s.storage_full = true;
        assert_eq!(banner(&s), Banner::StorageFull);
    }

    #[test]
    fn a_claim_is_revealed_for_a_while_then_the_attract_screen_returns() {
        let claimed = Moment::Claimed {
            title: ("免费咖啡".into(), "Free coffee".into()),
            code: "K7Q4MZTR".into(),
            hold_until: None,
        };
        let mut s = state();
        s.moment = Some((&claimed, 100_000 - REVEAL_MS + 1));
        assert!(matches!(view(&s), View::Reveal { ref code, .. } if code == "K7Q4MZTR"));
        s.moment = Some((&claimed, 100_000 - REVEAL_MS));
        assert!(matches!(view(&s), View::Attract { .. }));
        let jam = Moment::Pickup {
            status: PickupStatus::DispenseJam,
        };
        s.moment = Some((&jam, 99_000));
        assert_eq!(
            view(&s),
            View::Pickup {
                entered: String::new(),
                status: Some(PickupStatus::DispenseJam)
            }
        );
    }

    #[test]
    fn the_brand_line_comes_from_config_when_set() {
        let line = Text {
            zh: "周末特惠".into(),
            en: "Weekend treats".into(),
        };
        let mut s = state();
        s.brand = Some(&line);
        let View::Attract { brand, .. } = view(&s) else {
            panic!()
        };
        assert_eq!(brand, ("周末特惠".to_owned(), "Weekend treats".to_owned()));
    }
}

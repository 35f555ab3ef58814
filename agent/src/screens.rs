//! The touchpoint's own screens, drawn by `caidan-screens` for this config: the attract
//! screen with the egg link of the current QR window, its offline and storage-full states,
//! a reveal and the pickup prompt.

use caidan_profiles::Profile;
use caidan_screens::strings::Banner;
use caidan_screens::{NextStep, Reveal, Screen, ScreenError, to_png};

use crate::catalogue::Catalogue;
use crate::config::AgentConfig;
use crate::token::TokenSigner;

/// Which screen to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Attract,
    Reveal,
    Pickup,
    Offline,
    Full,
}

/// The egg link a screen of `cfg` shows at `now_ms`: `{public_url}/e/{token}`.
pub fn egg_link(cfg: &AgentConfig, now_ms: i64) -> String {
    let base = cfg
        .http
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.http.listen));
    let tokens = TokenSigner::new(
        cfg.device.id.as_str(),
        cfg.qr.secret.clone(),
        cfg.qr.rotation_secs,
    );
    format!("{}/e/{}", base.trim_end_matches('/'), tokens.issue(now_ms))
}

/// `which` for `profile` as PNG; the reveal shows the catalogue's first offer.
pub fn render_png(
    cfg: &AgentConfig,
    profile: &Profile,
    catalogue: Option<&Catalogue>,
    which: Which,
    now_ms: i64,
) -> Result<Vec<u8>, ScreenError> {
    let link = egg_link(cfg, now_ms);
    let offer = catalogue.and_then(|c| c.offers.first());
    let (zh, en) = offer.map_or(("惊喜彩蛋", "A surprise egg"), |o| {
        (o.title.zh.as_str(), o.title.en.as_str())
    });
    let screen = match which {
        Which::Attract => Screen::Attract {
            link: &link,
            banner: Banner::Ready,
        },
        Which::Offline => Screen::Attract {
            link: &link,
            banner: Banner::Offline,
        },
        Which::Full => Screen::Attract {
            link: &link,
            banner: Banner::StorageFull,
        },
        Which::Reveal => Screen::Reveal(Reveal {
            title_zh: zh,
            title_en: en,
            next: NextStep::ShowAtCounter {
                claim_code: "K7Q4MZTR",
            },
        }),
        Which::Pickup => Screen::Pickup {
            entered: "",
            status: None,
        },
    };
    to_png(profile, screen)
}

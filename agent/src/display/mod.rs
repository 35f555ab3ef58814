//! The touchpoint's own screens, drawn by `caidan-screens`: what the panel shows for the
//! agent's state ([`view`]), the framebuffer it draws on ([`fbdev`], [`panel`]), and PNGs of
//! each screen for `caidan-agent render`.

pub mod fbdev;
pub mod panel;
pub mod signals;
pub mod view;

use caidan_profiles::Profile;
use caidan_screens::{ScreenError, to_png};

pub use view::View;

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

/// The view `which` names for `cfg` at `now_ms`; the reveal shows the catalogue's first offer.
pub fn view_of(
    cfg: &AgentConfig,
    catalogue: Option<&Catalogue>,
    which: Which,
    now_ms: i64,
) -> View {
    let offer = catalogue.and_then(|c| c.offers.first());
    let title = offer.map_or(("惊喜彩蛋".into(), "A surprise egg".into()), |o| {
        (o.title.zh.clone(), o.title.en.clone())
    });
    let state = view::State {
        now_ms,
        link: egg_link(cfg, now_ms),
        brand: cfg.brand_line.as_ref(),
        online: Some(which != Which::Offline),
        storage_full: which == Which::Full,
        sold_out: false,
        updating: false,
        moment: None,
    };
    match which {
        Which::Attract | Which::Offline | Which::Full => view::view(&state),
        Which::Reveal => View::Reveal {
            title,
            code: "*****ZTR".into(),
            hold_until: None,
        },
        Which::Pickup => View::Pickup {
            entered: String::new(),
            status: None,
        },
    }
}

/// `which` for `profile` as PNG.
pub fn render_png(
    cfg: &AgentConfig,
    profile: &Profile,
    catalogue: Option<&Catalogue>,
    which: Which,
    now_ms: i64,
) -> Result<Vec<u8>, ScreenError> {
    to_png(profile, view_of(cfg, catalogue, which, now_ms).screen())
}

//! The agent's own panel: keeps a framebuffer showing what [`super::view`] says, redrawing
//! only what changed (the QR region on a token rotation) as the profile's refresh rules
//! allow.

use std::time::Duration;

use caidan_profiles::Profile;
use caidan_screens::fb::{FbError, Framebuffer};
use caidan_screens::refresh::{Refresh, Refresher};
use caidan_screens::{Drawing, ScreenError};
use tokio::sync::watch;

use super::fbdev::DisplayTarget;
use super::view::{self, PICKUP_MS, REVEAL_MS, State, View};
use crate::http::AppState;
use crate::store::Fill;

/// Why the panel cannot be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error(transparent)]
    Framebuffer(#[from] FbError),
    #[error("the screen cannot be drawn on this panel: {0}")]
    Screen(#[from] ScreenError),
}

/// A framebuffer and what it shows.
#[derive(Debug)]
pub struct Panel {
    fb: Framebuffer,
    /// The device's profile with the framebuffer's own geometry.
    profile: Profile,
    refresher: Refresher,
    shown: Option<View>,
}

/// One update done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub full: bool,
    pub pixels: u64,
}

impl Panel {
    /// Opens `target` for `profile`'s screens, laid out for the framebuffer's real size.
    pub fn open(target: &DisplayTarget, profile: &Profile) -> Result<Panel, PanelError> {
        let fb = target.open()?;
        let mut profile = profile.clone();
        profile.display = fb.geometry().display(&profile.display);
        Ok(Panel {
            refresher: Refresher::new(profile.display.full_refresh_every),
            fb,
            profile,
            shown: None,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Brings the panel to `next`; `None` when it already shows it.
    pub fn show(&mut self, next: View) -> Result<Option<Shown>, PanelError> {
        let drawing = Drawing::new(&self.profile, next.screen())?;
        let changes = match &self.shown {
            Some(before) => Drawing::new(&self.profile, before.screen())
                .ok()
                .and_then(|b| b.changes(&drawing)),
            None => None,
        };
        let Some(refresh) = self.refresher.plan(changes, drawing.bounds()) else {
            self.shown = Some(next);
            return Ok(None);
        };
        let written = self.fb.show(&drawing, &refresh);
        let pixels = match written {
            Ok(p) => p,
            Err(e) => {
                // What the panel holds is unknown now: the next update redraws it all.
                self.refresher.reset();
                self.shown = None;
                return Err(e.into());
            }
        };
        self.shown = Some(next);
        Ok(Some(Shown {
            full: refresh == Refresh::Full,
            pixels,
        }))
    }
}

/// How often the panel looks at state no signal reports (storage, the uplink).
const POLL: Duration = Duration::from_secs(1);

/// The panel's view of the agent now.
fn current(state: &AppState) -> (View, i64) {
    let now = state.clock.now_ms();
    let live = state.live();
    let moment = state.signals.moment();
    let s = State {
        now_ms: now,
        link: format!("{}/e/{}", state.public_url, state.tokens.issue(now)),
        brand: live.brand_line.as_ref(),
        online: state.metrics.uplink_status().map(|u| u.connected),
        storage_full: state.writer.storage().fill == Fill::Full,
        sold_out: state.signals.is_sold_out(),
        updating: state.signals.is_updating(),
        moment: moment.as_ref().map(|(m, at)| (m, *at)),
    };
    // Wake for the next rotation, or when a reveal or pickup outcome should end.
    let mut next_ms = state.tokens.ms_until_rotation(now);
    if let Some((m, at)) = &moment {
        let lasts = match m {
            view::Moment::Claimed { .. } => REVEAL_MS,
            view::Moment::Pickup { .. } => PICKUP_MS,
        };
        let ends = at + lasts - now;
        if ends > 0 {
            next_ms = next_ms.min(ends);
        }
    }
    (view::view(&s), next_ms)
}

/// Keeps `panel` up to date until `stopped`.
pub async fn run(mut panel: Panel, state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut last_link = None;
    loop {
        let (view, next_ms) = current(&state);
        if let View::Attract { link, .. } = &view
            && last_link.as_ref() != Some(link)
        {
            last_link = Some(link.clone());
            state
                .impressions
                .record(state.clock.now_ms(), &state.writer);
            state.metrics.impression();
        }
        let (back, outcome) = match tokio::task::spawn_blocking(move || {
            let outcome = panel.show(view);
            (panel, outcome)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "the panel's drawing task failed; the panel stops");
                return;
            }
        };
        panel = back;
        match outcome {
            Ok(Some(shown)) => {
                let kind = if shown.full { "full" } else { "partial" };
                state.metrics.screen_refresh(kind, shown.pixels);
                tracing::debug!(kind, pixels = shown.pixels, "panel updated");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "panel not updated"),
        }
        let wait = Duration::from_millis(next_ms.clamp(1, i64::MAX) as u64).min(POLL);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.signals.changed() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

//! What the HTTP handlers and the config runner tell the panel: a claim to reveal, a pickup
//! outcome, sold out, a config being applied. Cheap to update from any task.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::view::Moment;

/// Shared between the agent's tasks and its panel.
#[derive(Debug, Default)]
pub struct Signals {
    sold_out: AtomicBool,
    updating: AtomicBool,
    moment: Mutex<Option<(Moment, i64)>>,
    changed: Notify,
}

impl Signals {
    /// A claim was made at `at_ms`: reveal it, and note whether it fell back because no
    /// offer had quota or stock left.
    pub fn claimed(&self, moment: Moment, fallback: bool, at_ms: i64) {
        self.sold_out.store(fallback, Ordering::Relaxed);
        self.set_moment(moment, at_ms);
    }

    /// A keypad pickup ended at `at_ms`.
    pub fn pickup(&self, moment: Moment, at_ms: i64) {
        self.set_moment(moment, at_ms);
    }

    /// A new catalogue may have restocked the offers.
    pub fn restocked(&self) {
        if self.sold_out.swap(false, Ordering::Relaxed) {
            self.changed.notify_one();
        }
    }

    /// A config document is being applied (`true`) or is done (`false`).
    pub fn updating(&self, on: bool) {
        if self.updating.swap(on, Ordering::Relaxed) != on {
            self.changed.notify_one();
        }
    }

    fn set_moment(&self, moment: Moment, at_ms: i64) {
        *self.moment.lock().unwrap_or_else(|e| e.into_inner()) = Some((moment, at_ms));
        self.changed.notify_one();
    }

    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Relaxed)
    }

    pub fn is_updating(&self) -> bool {
        self.updating.load(Ordering::Relaxed)
    }

    /// The last moment and when it happened.
    pub fn moment(&self) -> Option<(Moment, i64)> {
        self.moment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves when a signal changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

//! "Where else is it?": asks the data bank over HTTPS which touchpoints of the fleet nearby
//! report a SKU in stock, nearest first. Answers are cached briefly and lookups are few at a
//! time, so a crowd at an empty shelf does not become a crowd at the data bank. When the
//! data bank cannot be reached, the answer says so plainly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caidan_sync::clock::Clock;
use caidan_sync::contract::{Ident, Location, Name};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::config::ElsewhereConfig;
use crate::secrets::ApiToken;

/// How long an answer is reused.
const CACHE_MS: i64 = 30_000;
/// SKUs whose answers are kept.
const CACHE_ENTRIES: usize = 256;
/// Lookups in flight at once.
const CONCURRENT: usize = 4;
/// Largest answer read from the data bank.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Touchpoints asked for.
const LIMIT: usize = 5;

/// Why the lookup client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("elsewhere {0}")]
pub struct ElsewhereError(#[from] crate::https::HttpsError);

/// A touchpoint nearby that has the SKU, as the data bank reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct NearbyTouchpoint {
    pub device: String,
    pub available: u32,
    #[serde(default)]
    pub distance_m: Option<f64>,
    #[serde(default)]
    pub online: Option<bool>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// The answer about other touchpoints.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Nearby {
    /// The data bank answered (the list may be empty: nobody nearby has it).
    Found { touchpoints: Vec<NearbyTouchpoint> },
    /// The data bank could not be asked; only this touchpoint's stock is known.
    Offline { message: String },
    /// This touchpoint is not set up to ask (no `[elsewhere]`).
    NotConfigured,
}

#[derive(Deserialize)]
struct Answer {
    touchpoints: Vec<NearbyTouchpoint>,
}

/// The data bank's stock lookup, for one touchpoint.
pub struct Elsewhere {
    client: reqwest::Client,
    base: String,
    fleet: Name,
    device: Name,
    token: ApiToken,
    here: Location,
    clock: Arc<dyn Clock>,
    slots: Semaphore,
    cache: Mutex<HashMap<String, (i64, Nearby)>>,
}

impl std::fmt::Debug for Elsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elsewhere")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Elsewhere {
    pub fn new(
        cfg: &ElsewhereConfig,
        fleet: Name,
        device: Name,
        here: Location,
        clock: Arc<dyn Clock>,
    ) -> Result<Elsewhere, ElsewhereError> {
        let client = crate::https::client(
            &cfg.url,
            cfg.ca.clone(),
            Duration::from_millis(cfg.timeout_ms),
        )?;
        Ok(Elsewhere {
            client,
            base: cfg.url.trim_end_matches('/').to_owned(),
            fleet,
            device,
            token: cfg.token.clone(),
            here,
            clock,
            slots: Semaphore::new(CONCURRENT),
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, sku: &str, now: i64) -> Option<Nearby> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(sku)
            .filter(|(at, _)| now - at < CACHE_MS)
            .map(|(_, n)| n.clone())
    }

    fn remember(&self, sku: &str, now: i64, answer: &Nearby) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| now - *at < CACHE_MS);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(sku.to_owned(), (now, answer.clone()));
    }

    /// Touchpoints of the fleet nearby with `sku` available, nearest first.
    pub async fn lookup(&self, sku: &Ident) -> Nearby {
        let now = self.clock.now_ms();
        if let Some(hit) = self.cached(sku, now) {
            return hit;
        }
        let Ok(_slot) = self.slots.try_acquire() else {
            return Nearby::Offline {
                message: "too many lookups right now; try again in a moment".into(),
            };
        };
        let answer = match self.ask(sku).await {
            Ok(touchpoints) => Nearby::Found { touchpoints },
            Err(reason) => {
                tracing::warn!(%sku, %reason, "stock lookup at the data bank failed");
                Nearby::Offline {
                    message: format!("the data bank cannot be reached: {reason}"),
                }
            }
        };
        // Failures are remembered as briefly as answers: a dead link is not asked again
        // for every shopper.
        self.remember(sku, now, &answer);
        answer
    }

    async fn ask(&self, sku: &Ident) -> Result<Vec<NearbyTouchpoint>, String> {
        let url = format!("{}/api/v1/fleets/{}/stock/{sku}", self.base, self.fleet);
        let resp = self
            .client
            .get(url)
            .bearer_auth(self.token.reveal())
            .query(&[
                ("lat", self.here.lat.to_string()),
                ("lon", self.here.lon.to_string()),
                ("limit", LIMIT.to_string()),
                ("exclude", self.device.to_string()),
            ])
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("it answered {status}"));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err("its answer is too large".into());
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Err("its answer is too large".into());
            }
        }
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))?;
        Ok(answer
            .touchpoints
            .into_iter()
            .filter(|t| t.device != self.device.as_str() && t.available > 0)
            .take(LIMIT)
            .collect())
    }
}

/// A transport error in a sentence (the token travels in a header, never in the URL).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.to_string()
    }
}

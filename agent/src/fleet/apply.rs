//! Runs fleet config on a live agent: each document off the config topics is verified,
//! considered against the layers applied, merged over the local config and checked whole
//! (profile included), its referenced catalogue fetched and checked, then applied in one
//! store transaction and swapped into the running agent; the answer goes to the operator
//! (config/ack, the retained state) and to the data bank (a `com.caidan.config` event).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use caidan_sync::contract::{ConfigAck, ConfigStatus, Layer, LayerId, Name, RejectCode, Rejection};
use caidan_sync::keys::{PublicKey, TrustedKeys};
use caidan_sync::uplink::{ConfigIn, UplinkControls};
use tokio::sync::mpsc;

use super::fetch::fetch;
use super::layers::{Applied, Decision, Layers, Me, Plan};
use super::settings::{self, Features, Settings};
use crate::catalogue::{Catalogue, Text};
use crate::config::{AgentConfig, StaffTokens};
use crate::directory::Directory;
use crate::store::{ConfigApply, META_CATALOGUE, META_REJECTION, META_TRUST, Reader, WriterHandle};
use crate::token::TokenSigner;

/// Refusals written to the outbox in one hour at most; the rest are answered and logged.
const MAX_RECORDED_PER_HOUR: u32 = 100;

/// What config changes in a running agent without a restart.
#[derive(Debug)]
pub struct Live {
    pub staff: StaffTokens,
    pub directory: Directory,
    pub features: Features,
    pub brand_line: Option<Text>,
}

impl Live {
    pub fn of(cfg: &AgentConfig) -> Live {
        Live {
            staff: StaffTokens::new(&cfg.staff),
            // Validated with the config it comes from.
            directory: Directory::new(&cfg.stores).unwrap_or_default(),
            features: cfg.features,
            brand_line: cfg.brand_line.clone(),
        }
    }
}

/// The live settings, swapped whole by a config apply.
pub type LiveCell = Arc<RwLock<Arc<Live>>>;

/// The current live settings.
pub fn live(cell: &LiveCell) -> Arc<Live> {
    cell.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What the store holds of fleet config.
#[derive(Debug)]
pub struct Stored {
    pub layers: Layers,
    pub last_rejection: Option<ConfigAck>,
    pub catalogue_digest: Option<String>,
}

/// Reads the applied layers from the store at `path` (none when there is no store yet).
pub fn load(path: &Path, base: &AgentConfig) -> Stored {
    let mut stored = Stored {
        layers: Layers {
            trusted: base.trust.config.clone(),
            applied: BTreeMap::new(),
        },
        last_rejection: None,
        catalogue_digest: None,
    };
    let Ok(reader) = Reader::open(path) else {
        return stored;
    };
    for row in reader.config_layers().unwrap_or_default() {
        let (Some(layer), Ok(target)) = (Layer::parse(&row.layer), Name::new(row.target.as_str()))
        else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<caidan_sync::contract::ConfigDocument>(&row.document)
        else {
            tracing::warn!(layer = %row.layer, target = %row.target, "stored config layer unreadable; ignored");
            continue;
        };
        stored.layers.applied.insert(
            LayerId { layer, target },
            Applied {
                version: row.version,
                digest: row.digest,
                settings: doc.settings,
            },
        );
    }
    if let Ok(Some(keys)) = reader.meta(META_TRUST)
        && let Ok(keys) = serde_json::from_str::<Vec<PublicKey>>(&keys)
    {
        stored.layers.trusted = TrustedKeys::new(keys);
    }
    stored.last_rejection = reader
        .meta(META_REJECTION)
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok());
    stored.catalogue_digest = reader.meta(META_CATALOGUE).ok().flatten();
    stored
}

/// The local config with the stored layers over it; the local config alone when the
/// merge no longer checks out (the local file changed), said loudly.
pub fn effective(base: &AgentConfig, stored: &Stored, me: &Me) -> AgentConfig {
    let merged = stored.layers.merged(me);
    if merged.is_empty() {
        return base.clone();
    }
    match Settings::from_map(&merged)
        .map_err(|e| e.to_string())
        .and_then(|s| base.overlay(&s).map_err(|e| e.to_string()))
    {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!(error = %e, "stored fleet config does not fit the local config; running the local config");
            base.clone()
        }
    }
}

/// Who this device is, from its config.
pub fn me(cfg: &AgentConfig) -> Me {
    Me {
        fleet: cfg.device.fleet.clone(),
        device: cfg.device.id.clone(),
        groups: cfg.device.groups.clone(),
    }
}

/// The running agent's parts a config apply changes.
pub struct Targets {
    pub writer: WriterHandle,
    pub clock: Arc<dyn caidan_sync::clock::Clock>,
    pub live: LiveCell,
    pub tokens: TokenSigner,
    pub uplink: UplinkControls,
    /// Tells the panel a config is being applied.
    pub signals: Arc<crate::display::signals::Signals>,
}

/// Applies config documents as they come, one at a time.
pub struct Runner {
    /// Refusals recorded in the outbox this hour, so a flood of junk cannot fill it.
    recorded: (i64, u32),
    base: AgentConfig,
    current: AgentConfig,
    me: Me,
    stored: Stored,
    client: Option<reqwest::Client>,
    targets: Targets,
}

impl Runner {
    pub fn new(
        base: AgentConfig,
        current: AgentConfig,
        stored: Stored,
        targets: Targets,
    ) -> Runner {
        let client = crate::https::client(
            "https://",
            base.fleet.ca.clone(),
            Duration::from_millis(base.fleet.fetch_timeout_ms),
        )
        .map_err(|e| tracing::error!(error = %e, "no HTTPS client for referenced catalogues"))
        .ok();
        let me = me(&base);
        let r = Runner {
            recorded: (0, 0),
            base,
            current,
            me,
            stored,
            client,
            targets,
        };
        r.report();
        r
    }

    fn report(&self) {
        self.targets.uplink.set_config_report(
            self.stored
                .layers
                .report(self.stored.last_rejection.clone()),
        );
    }

    /// Takes documents until the uplink stops.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ConfigIn>) {
        while let Some(msg) = rx.recv().await {
            self.handle(msg).await;
        }
    }

    async fn handle(&mut self, msg: ConfigIn) {
        let env = match msg.envelope {
            Ok(e) => e,
            Err(why) => return self.refuse(None, String::new(), why).await,
        };
        let digest = env.digest();
        let verified = match env.verify(&self.stored.layers.trusted) {
            Ok(v) => v,
            Err(why) => return self.refuse(None, digest, why).await,
        };
        let doc = &verified.document;
        let head = Some((doc.layer, doc.target.clone(), doc.version));
        match self.stored.layers.consider(&verified, &self.me) {
            Ok(Decision::Same) => {
                tracing::debug!(layer = %doc.layer_id(), version = doc.version, "config already applied");
            }
            Ok(Decision::Apply(plan)) => {
                let (layer, version) = (plan.id.clone(), plan.applied.version);
                let started = std::time::Instant::now();
                self.targets.signals.updating(true);
                let applied = self.apply(*plan, &verified.document).await;
                self.targets.signals.updating(false);
                match applied {
                    Ok(()) => {
                        tracing::info!(%layer, version, ms = started.elapsed().as_millis() as u64, "config applied");
                        self.answer(head, digest, None);
                    }
                    Err(why) => self.refuse(head, digest, why).await,
                }
            }
            Err(why) => self.refuse(head, digest, why).await,
        }
    }

    /// Checks the merged result whole, then changes the store and the running agent.
    async fn apply(
        &mut self,
        plan: Plan,
        doc: &caidan_sync::contract::ConfigDocument,
    ) -> Result<(), Rejection> {
        let cfg = self
            .base
            .overlay(&plan.effective)
            .map_err(|e| Rejection::new(RejectCode::InvalidForProfile, e.to_string()))?;
        let catalogue = self.catalogue(&plan, &cfg).await?;
        let changed_window = (cfg.claims_per_window() != self.current.claims_per_window())
            .then(|| cfg.claims_per_window());
        let store = ConfigApply {
            layer: plan.id.layer.as_str(),
            target: plan.id.target.to_string(),
            version: plan.applied.version,
            digest: plan.applied.digest.clone(),
            document: serde_json::to_string(doc).unwrap_or_default(),
            catalogue,
            trust: plan
                .trust
                .as_ref()
                .map(|t| t.keys().iter().map(|k| k.to_string()).collect()),
            answer: ack(
                Some((plan.id.layer, plan.id.target.clone(), plan.applied.version)),
                plan.applied.digest.clone(),
                None,
            ),
        };
        let imported = store.catalogue.is_some();
        let catalogue_digest = store.catalogue.as_ref().map(|(_, d)| d.clone());
        tracing::info!(layer = %plan.id, version = plan.applied.version, catalogue = imported, "applying config");
        self.targets
            .writer
            .apply_config(store, changed_window)
            .await
            .map_err(|e| Rejection::new(RejectCode::StoreFailed, e.to_string()))?;
        if imported {
            self.targets.signals.restocked();
            crate::runtime::release_freed_memory();
            self.stored.catalogue_digest = catalogue_digest;
        }
        self.stored.layers.applied.insert(plan.id, plan.applied);
        if let Some(t) = plan.trust {
            tracing::info!(keys = t.keys().len(), "trusted config keys rotated");
            self.stored.layers.trusted = t;
        }
        self.swap(cfg);
        Ok(())
    }

    /// The merged catalogue when it differs from the one imported, fetched if referenced,
    /// validated, and checked against what this touchpoint can do.
    async fn catalogue(
        &self,
        plan: &Plan,
        cfg: &AgentConfig,
    ) -> Result<Option<(Catalogue, String)>, Rejection> {
        let Some(part) = settings::catalogue_part(&plan.merged) else {
            return Ok(None);
        };
        let digest = caidan_sync::contract::config::digest(&part);
        if self.stored.catalogue_digest.as_deref() == Some(digest.as_str()) {
            return Ok(None);
        }
        let s = &plan.effective;
        let origin = format!("config {}", plan.id);
        let mut catalogue = if let Some(r) = &s.catalogue {
            let client = self.client.as_ref().ok_or_else(|| {
                Rejection::new(
                    RejectCode::FetchFailed,
                    "no HTTPS client (see the agent log)",
                )
            })?;
            let budget = cfg.storage_budget().limit / 2;
            let timeout = Duration::from_millis(cfg.fleet.fetch_timeout_ms);
            let body = fetch(client, r, budget, timeout).await?;
            let text = String::from_utf8(body)
                .map_err(|_| Rejection::new(RejectCode::Invalid, "catalogue is not UTF-8"))?;
            Catalogue::from_json(&text, &origin)
                .map_err(|e| Rejection::new(RejectCode::Invalid, e.to_string()))?
        } else {
            let c = Catalogue {
                version: 0,
                offers: s.offers.clone().unwrap_or_default(),
                segments: s.segments.clone().unwrap_or_default(),
                stock: s.stock.clone().unwrap_or_default(),
            };
            c.validate(&origin)
                .map_err(|e| Rejection::new(RejectCode::Invalid, e.to_string()))?;
            c
        };
        catalogue.version = plan.applied.version;
        let caps = cfg.profile().capabilities();
        for o in &catalogue.offers {
            if let Some(missing) = o.requires.iter().find(|c| !caps.contains(c)) {
                return Err(Rejection::new(
                    RejectCode::InvalidForProfile,
                    format!(
                        "offer {} needs a {}, which profile {} lacks",
                        o.id,
                        missing.as_str(),
                        cfg.profile().name
                    ),
                ));
            }
        }
        Ok(Some((catalogue, digest)))
    }

    /// Hands the new settings to the running agent.
    fn swap(&mut self, cfg: AgentConfig) {
        let t = &self.targets;
        *t.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Live::of(&cfg));
        t.tokens.set_rotation_secs(cfg.qr.rotation_secs);
        t.uplink.set_policy(crate::outbox::core_config(&cfg));
        self.current = cfg;
    }

    fn answer(&mut self, head: Option<(Layer, Name, u64)>, digest: String, why: Option<Rejection>) {
        let a = ack(head, digest, why);
        if a.status == ConfigStatus::Rejected {
            self.stored.last_rejection = Some(a.clone());
        }
        self.targets.uplink.send_config_ack(a);
        self.report();
    }

    async fn refuse(&mut self, head: Option<(Layer, Name, u64)>, digest: String, why: Rejection) {
        tracing::warn!(
            layer = ?head.as_ref().map(|h| h.0),
            version = ?head.as_ref().map(|h| h.2),
            code = why.code.as_str(),
            reason = %why.message,
            "config document rejected; the running config stays"
        );
        let a = ack(head.clone(), digest.clone(), Some(why.clone()));
        let hour = self.targets.clock.now_ms().div_euclid(3_600_000);
        if self.recorded.0 != hour {
            self.recorded = (hour, 0);
        }
        // The same document refused for the same reason again (a retained one, read on
        // every connection) is answered but not recorded twice in a row.
        let repeat = self
            .stored
            .last_rejection
            .as_ref()
            .is_some_and(|l| l.digest == a.digest && l.reason == a.reason);
        if !repeat && self.recorded.1 < MAX_RECORDED_PER_HOUR {
            self.recorded.1 += 1;
            if let Err(e) = self.targets.writer.reject_config(a).await {
                tracing::error!(error = %e, "config rejection not recorded");
            }
        }
        self.answer(head, digest, Some(why));
    }
}

fn ack(head: Option<(Layer, Name, u64)>, digest: String, why: Option<Rejection>) -> ConfigAck {
    let (layer, target, version) = match head {
        Some((l, t, v)) => (Some(l), Some(t), Some(v)),
        None => (None, None, None),
    };
    ConfigAck {
        layer,
        target,
        version,
        status: if why.is_some() {
            ConfigStatus::Rejected
        } else {
            ConfigStatus::Applied
        },
        reason: why,
        digest: if digest.is_empty() {
            caidan_sync::contract::config::digest(b"")
        } else {
            digest
        },
    }
}

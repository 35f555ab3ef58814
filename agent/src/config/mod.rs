//! Agent configuration: who this touchpoint is, where it listens, its secrets and staff.
//!
//! Parsed from TOML with unknown fields refused, then validated; every error names the
//! file, the field and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use caidan_profiles::{Profile, Scene};
use caidan_sync::contract::Name;
use caidan_sync::credentials::{TokenHash, TokenSet};
use caidan_sync::keys::TrustedKeys;
use serde::Deserialize;

use caidan_sync::contract::Location;

use crate::directory::StoreEntry;
use crate::inventory::dispenser::SimulatedConfig;
use crate::secrets::{ApiToken, HmacKey, SigningSeed};

mod limits;

pub use limits::LimitsConfig;

/// The bundled demo configuration used by `caidan-agent run` without `--config`.
pub const DEMO_CONFIG: &str = include_str!("../../demo/agent.toml");
/// The bundled demo offer catalogue.
pub const DEMO_CATALOGUE: &str = include_str!("../../demo/catalogue.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub device: DeviceConfig,
    #[serde(default)]
    pub http: HttpConfig,
    pub qr: QrConfig,
    pub secrets: Secrets,
    #[serde(default)]
    pub staff: StaffConfig,
    #[serde(default)]
    pub store: StoreConfig,
    /// Offer catalogue imported at start when the store holds an older one.
    pub catalogue: Option<PathBuf>,
    /// Overrides of the firmware profile's sync policy, as operators push them.
    #[serde(default)]
    pub sync: SyncOverrides,
    /// Keys this device trusts, by what they sign.
    #[serde(default)]
    pub trust: TrustConfig,
    /// What one client may take; unset fields come from the profile or the defaults.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The simulated dispenser, on profiles with dispenser slots.
    #[serde(default)]
    pub dispenser: SimulatedConfig,
    /// Brand stores shoppers are pointed to, held offline.
    #[serde(default)]
    pub stores: Vec<StoreEntry>,
    /// Where the device asks which touchpoints nearby have a SKU it lacks.
    pub elsewhere: Option<ElsewhereConfig>,
    /// Fetching what config documents reference.
    #[serde(default)]
    pub fleet: FleetFetchConfig,
    /// Switches for what this touchpoint offers.
    #[serde(default)]
    pub features: crate::fleet::Features,
    /// A short brand line for the screen, in Chinese and English.
    #[serde(default)]
    pub brand_line: Option<crate::catalogue::Text>,
    /// The bundled profile `device.profile` names, resolved when the config is loaded.
    #[serde(skip)]
    resolved: Option<Profile>,
}

/// Public keys the device trusts (`ed25519:<hex>`), each list rotatable by listing the new key
/// beside the old one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Data bank keys: the outbox is trimmed only on acknowledgements they signed.
    #[serde(default)]
    pub databank: TrustedKeys,
    /// Operator keys: config documents are applied only when one of them signed. A fleet
    /// layer signed by one of them may name the next set.
    #[serde(default)]
    pub config: TrustedKeys,
}

/// How catalogues referenced by config documents are fetched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetFetchConfig {
    /// CA certificate (PEM) the file server's certificate must chain to; none uses the
    /// bundled web roots.
    pub ca: Option<PathBuf>,
    pub fetch_timeout_ms: u64,
}

impl Default for FleetFetchConfig {
    fn default() -> Self {
        FleetFetchConfig {
            ca: None,
            fetch_timeout_ms: 30_000,
        }
    }
}

/// Sync policy fields an operator may set for one device; unset ones come from the profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncOverrides {
    pub batch_max_events: Option<u32>,
    pub linger_ms: Option<u64>,
    pub ack_timeout_ms: Option<u64>,
    pub max_in_flight: Option<u16>,
    pub max_backoff_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// 1-64 of a-z, 0-9, '-', '_': it appears in topics.
    pub id: Name,
    pub fleet: Name,
    #[serde(default)]
    pub groups: Vec<Name>,
    pub scene: Scene,
    pub region: String,
    pub timezone: String,
    /// Name of a bundled firmware profile.
    pub profile: String,
    /// Where the touchpoint stands: for the nearest store and for nearby stock.
    pub location: Option<Location>,
}

/// The data bank's stock lookup over HTTPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElsewhereConfig {
    /// Base URL of the data bank API, `https://...` (plain `http://` only on loopback).
    pub url: String,
    /// CA certificate (PEM) the data bank's certificate must chain to, the only root
    /// trusted; required for `https://`.
    pub ca: Option<PathBuf>,
    /// The fleet's read token.
    pub token: ApiToken,
    /// How long one lookup may take before the answer says "offline".
    #[serde(default = "default_elsewhere_timeout")]
    pub timeout_ms: u64,
}

fn default_elsewhere_timeout() -> u64 {
    2_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where shoppers and staff reach the agent: egg pages, eggs, redemptions.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Base URL phones reach the agent at (venue LAN or the kiosk's hotspot); unset means
    /// the address the agent listens on.
    pub public_url: Option<String>,
    /// Where the screen reads the current QR token and page, and where `/metrics` is: on
    /// loopback by default, so only the screen itself can read the token.
    #[serde(default = "default_screen_listen")]
    pub screen_listen: SocketAddr,
    /// Bearer token (its `sha256:` form) the screen presents; required when
    /// `screen_listen` is not a loopback address (the display is another box).
    pub screen_token: Option<TokenHash>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            screen_listen: default_screen_listen(),
            screen_token: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8780))
}

fn default_screen_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8781))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrConfig {
    #[serde(default = "default_rotation")]
    pub rotation_secs: u32,
    /// Per-device HMAC secret, hex, at least 16 bytes.
    pub secret: HmacKey,
}

fn default_rotation() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Fleet-wide secret shopper ids are hashed with, hex, at least 16 bytes.
    pub fleet_secret: HmacKey,
    /// Ed25519 seed the device signs claim tokens with, 32 bytes hex.
    pub claim_key: SigningSeed,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffConfig {
    /// Staff bearer tokens, each stored as `sha256:<hex>`.
    #[serde(default)]
    pub tokens: Vec<TokenHash>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Folder for the SQLite store, relative to the working directory.
    #[serde(default = "default_store_dir")]
    pub dir: PathBuf,
    /// Most requests the writer commits in one transaction; 1 commits each alone.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Storage budget for this device's store, in bytes, when it must be smaller than the
    /// profile's (a shared disk, a small card). Warnings come at the profile's percentage.
    #[serde(default)]
    pub budget_bytes: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: default_store_dir(),
            max_batch: default_max_batch(),
            budget_bytes: None,
        }
    }
}

/// Smallest `store.budget_bytes` accepted: an empty store with its schema takes about 100 KiB.
const MIN_BUDGET_BYTES: u64 = 256 * 1024;

fn default_max_batch() -> usize {
    512
}

fn default_store_dir() -> PathBuf {
    PathBuf::from("caidan-data")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Parse {
        file: String,
        source: toml::de::Error,
    },
    #[error("{file}: {field}: {reason}")]
    Invalid {
        file: String,
        field: &'static str,
        reason: String,
    },
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut cfg = Self::from_toml(&text, &file)?;
        // An elsewhere CA path is relative to the config file too.
        if let (Some(e), Some(dir)) = (cfg.elsewhere.as_mut(), path.parent())
            && let Some(ca) = e.ca.as_mut()
            && ca.is_relative()
        {
            *ca = dir.join(&*ca);
        }
        // A catalogue path is relative to the config file that names it.
        if let (Some(cat), Some(dir)) = (cfg.catalogue.as_mut(), path.parent())
            && cat.is_relative()
        {
            *cat = dir.join(&*cat);
        }
        Ok(cfg)
    }

    pub fn demo() -> Self {
        Self::from_toml(DEMO_CONFIG, "demo/agent.toml").expect("bundled demo config is valid")
    }

    pub fn from_toml(text: &str, file: &str) -> Result<Self, ConfigError> {
        let mut cfg: AgentConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            file: file.to_owned(),
            source,
        })?;
        cfg.resolved = Some(cfg.validate(file)?);
        Ok(cfg)
    }

    /// This config with the fleet layers' merged settings over it, checked whole as a
    /// config file is.
    pub fn overlay(&self, s: &crate::fleet::Settings) -> Result<AgentConfig, ConfigError> {
        let mut c = self.clone();
        if let Some(q) = s.qr {
            c.qr.rotation_secs = q.rotation_secs;
        }
        if let Some(sync) = &s.sync {
            c.sync = sync.clone();
        }
        if let Some(staff) = &s.staff {
            c.staff.tokens = staff.tokens.clone();
        }
        if let Some(stores) = &s.stores {
            c.stores = stores.clone();
        }
        if let Some(f) = s.features {
            c.features = f;
        }
        if let Some(b) = &s.brand_line {
            c.brand_line = Some(b.clone());
        }
        c.resolved = Some(c.validate("fleet config")?);
        Ok(c)
    }

    /// Checks every field; returns the resolved profile.
    fn validate(&self, file: &str) -> Result<Profile, ConfigError> {
        let bad = |field: &'static str, reason: String| ConfigError::Invalid {
            file: file.to_owned(),
            field,
            reason,
        };
        let d = &self.device;
        if d.region.trim().is_empty() {
            return Err(bad("device.region", "must not be empty".into()));
        }
        if jiff::tz::TimeZone::get(&d.timezone).is_err() {
            return Err(bad(
                "device.timezone",
                format!("unknown IANA time zone {:?}", d.timezone),
            ));
        }
        let profile = caidan_profiles::bundled(&d.profile).ok_or_else(|| {
            bad(
                "device.profile",
                format!(
                    "no bundled profile {:?}; known: {}",
                    d.profile,
                    caidan_profiles::bundled_names().join(", ")
                ),
            )
        })?;
        if !profile.serves(d.scene) {
            return Err(bad(
                "device.scene",
                format!("profile {} does not serve scene {}", d.profile, d.scene),
            ));
        }
        let sync = &self.sync;
        if sync
            .batch_max_events
            .is_some_and(|n| !(1..=10_000).contains(&n))
        {
            return Err(bad("sync.batch_max_events", "must be 1..=10000".into()));
        }
        if sync
            .ack_timeout_ms
            .is_some_and(|t| !(100..=3_600_000).contains(&t))
        {
            return Err(bad("sync.ack_timeout_ms", "must be 100..=3600000".into()));
        }
        if sync.linger_ms.is_some_and(|t| t > 600_000) {
            return Err(bad("sync.linger_ms", "at most 600000".into()));
        }
        if sync.max_in_flight.is_some_and(|n| !(1..=64).contains(&n)) {
            return Err(bad("sync.max_in_flight", "must be 1..=64".into()));
        }
        if sync
            .max_backoff_ms
            .is_some_and(|t| !(100..=3_600_000).contains(&t))
        {
            return Err(bad("sync.max_backoff_ms", "must be 100..=3600000".into()));
        }
        if let Some(b) = self.store.budget_bytes {
            let profile_budget = profile.storage_budget_bytes();
            if !(MIN_BUDGET_BYTES..=profile_budget).contains(&b) {
                return Err(bad(
                    "store.budget_bytes",
                    format!(
                        "must be {MIN_BUDGET_BYTES}..={profile_budget} (at most the profile's budget), got {b}"
                    ),
                ));
            }
        }
        if !(1..=4096).contains(&self.store.max_batch) {
            return Err(bad(
                "store.max_batch",
                format!("must be 1..=4096, got {}", self.store.max_batch),
            ));
        }
        let (lo, hi) = profile.qr_rotation_range();
        if !(lo..=hi).contains(&self.qr.rotation_secs) {
            return Err(bad(
                "qr.rotation_secs",
                format!(
                    "must be {lo}..={hi} on profile {}, got {}",
                    profile.name, self.qr.rotation_secs
                ),
            ));
        }
        if self
            .brand_line
            .as_ref()
            .is_some_and(|b| b.zh.chars().count() > 40 || b.en.chars().count() > 80)
        {
            return Err(bad(
                "brand_line",
                "at most 40 Chinese or 80 English characters".into(),
            ));
        }
        if let Some(b) = &self.brand_line {
            for (lang, line) in [("zh", &b.zh), ("en", &b.en)] {
                caidan_screens::text::check(line).map_err(|e| {
                    bad(
                        "brand_line",
                        format!("{lang} {line:?} cannot be drawn on the panel: {e}"),
                    )
                })?;
            }
        }
        if !(1_000..=600_000).contains(&self.fleet.fetch_timeout_ms) {
            return Err(bad(
                "fleet.fetch_timeout_ms",
                "must be 1000..=600000".into(),
            ));
        }
        if !self.http.screen_listen.ip().is_loopback() && self.http.screen_token.is_none() {
            return Err(bad(
                "http.screen_token",
                format!(
                    "screen_listen {} is not loopback: set a screen token so only the screen reads the QR",
                    self.http.screen_listen
                ),
            ));
        }
        self.limits
            .validate()
            .map_err(|(field, reason)| bad(field, reason))?;
        if d.location.is_some_and(|l| !l.valid()) {
            return Err(bad(
                "device.location",
                "lat must be -90..90 and lon -180..180".into(),
            ));
        }
        self.dispenser
            .validate(u32::from(profile.actuators.dispenser_slots))
            .map_err(|reason| bad("dispenser", reason))?;
        crate::directory::Directory::new(&self.stores)
            .map_err(|(i, reason)| bad("stores", format!("stores[{i}]: {reason}")))?;
        if !self.stores.is_empty() && d.location.is_none() {
            return Err(bad(
                "device.location",
                "needed to find the nearest of the [[stores]]".into(),
            ));
        }
        if let Some(e) = &self.elsewhere {
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|p| e.url.starts_with(p));
            if !(e.url.starts_with("https://") || loopback) || e.url.len() > 2048 {
                return Err(bad(
                    "elsewhere.url",
                    format!(
                        "{:?} must be an https:// URL (http:// only on loopback)",
                        e.url
                    ),
                ));
            }
            if !(100..=30_000).contains(&e.timeout_ms) {
                return Err(bad("elsewhere.timeout_ms", "must be 100..=30000".into()));
            }
            if e.url.starts_with("https://") && e.ca.is_none() {
                return Err(bad(
                    "elsewhere.ca",
                    "an https:// data bank needs the CA its certificate chains to".into(),
                ));
            }
            if e.ca.as_ref().is_some_and(|p| !p.is_file()) {
                return Err(bad(
                    "elsewhere.ca",
                    format!(
                        "{} is not a readable file",
                        e.ca.as_ref()
                            .map_or(String::new(), |p| p.display().to_string())
                    ),
                ));
            }
            if d.location.is_none() {
                return Err(bad(
                    "device.location",
                    "needed to ask for stock nearby ([elsewhere])".into(),
                ));
            }
        }
        if let Some(url) = &self.http.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(bad(
                "http.public_url",
                format!("{url:?} must start with http:// or https://"),
            ));
        }
        Ok(profile)
    }

    /// New claims allowed in one QR window: the screen's claims a minute, scaled to the
    /// window's length, at least one.
    pub fn claims_per_window(&self) -> u32 {
        let per_minute = self
            .limits
            .claims_per_minute
            .unwrap_or(self.profile().limits.claims_per_minute);
        (u64::from(per_minute) * u64::from(self.qr.rotation_secs))
            .div_ceil(60)
            .clamp(1, u64::from(u32::MAX)) as u32
    }

    /// The device's time zone (validated at load).
    pub fn timezone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.device.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// The device's firmware profile.
    pub fn profile(&self) -> &Profile {
        self.resolved
            .as_ref()
            .expect("an AgentConfig is only made by from_toml, which resolves the profile")
    }

    /// The store's storage budget: the profile's, or the smaller one set in `[store]`.
    pub fn storage_budget(&self) -> crate::store::StorageBudget {
        let profile = self.profile();
        let limit = self
            .store
            .budget_bytes
            .unwrap_or_else(|| profile.storage_budget_bytes());
        crate::store::StorageBudget::new(limit, profile.storage.warn_at_percent)
    }
}

/// Staff bearer tokens, kept as hashes and compared in constant time.
#[derive(Debug, Clone)]
pub struct StaffTokens(TokenSet<TokenHash>, Vec<TokenHash>);

impl StaffTokens {
    pub fn new(cfg: &StaffConfig) -> Self {
        StaffTokens(
            TokenSet::new(cfg.tokens.iter().map(|h| (*h, *h)).collect()),
            cfg.tokens.clone(),
        )
    }

    /// The hash of `bearer` when it is a staff token (it names the staff member in lockouts).
    pub fn accepts(&self, bearer: &str) -> Option<TokenHash> {
        self.0.lookup(bearer).copied()
    }

    /// Whether a staff token with this hash is still configured (a signed-in session of a
    /// token removed from config ends).
    pub fn knows(&self, hash: &TokenHash) -> bool {
        self.1.contains(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid_and_accepts_the_demo_staff_token() {
        let cfg = AgentConfig::demo();
        assert!(
            StaffTokens::new(&cfg.staff)
                .accepts("demo-staff-token")
                .is_some()
        );
        assert!(StaffTokens::new(&cfg.staff).accepts("guess").is_none());
    }

    #[test]
    fn errors_name_file_field_and_reason() {
        let bad = DEMO_CONFIG.replace("Asia/Shanghai", "Mars/Olympus");
        let err = AgentConfig::from_toml(&bad, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.toml: device.timezone: unknown IANA time zone"),
            "{err}"
        );
        let bad = format!("{DEMO_CONFIG}\n[extra]\nkey = 1\n");
        let err = AgentConfig::from_toml(&bad, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.toml") && err.contains("unknown field"),
            "{err}"
        );
    }

    #[test]
    fn a_brand_line_the_panel_cannot_draw_is_refused() {
        let with =
            |zh: &str| format!("brand_line = {{ zh = \"{zh}\", en = \"Treats\" }}\n{DEMO_CONFIG}");
        AgentConfig::from_toml(&with("周末特惠"), "x.toml").unwrap();
        let err = AgentConfig::from_toml(&with("周末🥚"), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("brand_line: zh \"周末🥚\" cannot be drawn") && err.contains('🥚'),
            "{err}"
        );
    }
}

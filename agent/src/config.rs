//! Agent configuration: who this touchpoint is, where it listens, its secrets and staff.
//!
//! Parsed from TOML with unknown fields refused, then validated; every error names the
//! file, the field and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use caidan_profiles::Scene;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The bundled demo configuration used by `caidan-agent run` without `--config`.
pub const DEMO_CONFIG: &str = include_str!("../demo/agent.toml");
/// The bundled demo offer catalogue.
pub const DEMO_CATALOGUE: &str = include_str!("../demo/catalogue.json");

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
    pub id: String,
    pub fleet: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub scene: Scene,
    pub region: String,
    pub timezone: String,
    /// Name of a bundled firmware profile.
    pub profile: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Base URL phones reach the agent at (venue LAN or the kiosk's hotspot); unset means
    /// the address the agent listens on.
    pub public_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8780))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrConfig {
    #[serde(default = "default_rotation")]
    pub rotation_secs: u32,
    /// Per-device HMAC secret, hex.
    pub secret: String,
}

fn default_rotation() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Fleet-wide secret shopper ids are hashed with, hex.
    pub fleet_secret: String,
    /// Ed25519 seed the device signs claim tokens with, 32 bytes hex.
    pub claim_key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffConfig {
    /// Staff bearer tokens, each stored as `sha256:<hex>`.
    #[serde(default)]
    pub tokens: Vec<String>,
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

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn hex_secret(v: &str, min_bytes: usize) -> Result<Vec<u8>, String> {
    let bytes = hex::decode(v).map_err(|e| format!("not hex: {e}"))?;
    if bytes.len() < min_bytes {
        return Err(format!(
            "{} bytes, at least {min_bytes} needed",
            bytes.len()
        ));
    }
    Ok(bytes)
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut cfg = Self::from_toml(&text, &file)?;
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
        let cfg: AgentConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            file: file.to_owned(),
            source,
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: String| ConfigError::Invalid {
            file: file.to_owned(),
            field,
            reason,
        };
        let d = &self.device;
        if !valid_name(&d.id) {
            return Err(bad(
                "device.id",
                "1-64 characters of a-z, 0-9, '-', '_'".into(),
            ));
        }
        if !valid_name(&d.fleet) {
            return Err(bad(
                "device.fleet",
                "1-64 characters of a-z, 0-9, '-', '_'".into(),
            ));
        }
        if let Some(g) = d.groups.iter().find(|g| !valid_name(g)) {
            return Err(bad(
                "device.groups",
                format!("{g:?}: 1-64 characters of a-z, 0-9, '-', '_'"),
            ));
        }
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
            let profile_budget = self.profile().storage_budget_bytes();
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
        if !(1..=3600).contains(&self.qr.rotation_secs) {
            return Err(bad(
                "qr.rotation_secs",
                format!("must be 1..=3600, got {}", self.qr.rotation_secs),
            ));
        }
        hex_secret(&self.qr.secret, 16).map_err(|r| bad("qr.secret", r))?;
        hex_secret(&self.secrets.fleet_secret, 16).map_err(|r| bad("secrets.fleet_secret", r))?;
        let seed =
            hex_secret(&self.secrets.claim_key, 32).map_err(|r| bad("secrets.claim_key", r))?;
        if seed.len() != 32 {
            return Err(bad(
                "secrets.claim_key",
                format!("{} bytes, exactly 32 needed", seed.len()),
            ));
        }
        for t in &self.staff.tokens {
            let ok = t
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && hex::decode(h).is_ok());
            if !ok {
                return Err(bad(
                    "staff.tokens",
                    "each entry is sha256:<64 hex digits> of a bearer token".into(),
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
        Ok(())
    }

    pub fn qr_secret(&self) -> Vec<u8> {
        hex::decode(&self.qr.secret).expect("validated")
    }

    pub fn fleet_secret(&self) -> Vec<u8> {
        hex::decode(&self.secrets.fleet_secret).expect("validated")
    }

    pub fn claim_seed(&self) -> [u8; 32] {
        hex::decode(&self.secrets.claim_key)
            .expect("validated")
            .try_into()
            .expect("validated length")
    }

    pub fn profile(&self) -> caidan_profiles::Profile {
        caidan_profiles::bundled(&self.device.profile).expect("validated")
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
pub struct StaffTokens {
    hashes: Vec<[u8; 32]>,
}

impl StaffTokens {
    pub fn new(cfg: &StaffConfig) -> Self {
        let hashes = cfg
            .tokens
            .iter()
            .filter_map(|t| {
                hex::decode(t.strip_prefix("sha256:")?)
                    .ok()?
                    .try_into()
                    .ok()
            })
            .collect();
        Self { hashes }
    }

    pub fn accepts(&self, bearer: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        self.hashes
            .iter()
            .fold(false, |ok, known| ok | bool::from(known.ct_eq(&h)))
    }
}

/// `sha256:<hex>` of a token, the form config stores.
pub fn hash_staff_token(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid_and_accepts_the_demo_staff_token() {
        let cfg = AgentConfig::demo();
        assert!(StaffTokens::new(&cfg.staff).accepts("demo-staff-token"));
        assert!(!StaffTokens::new(&cfg.staff).accepts("guess"));
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
}

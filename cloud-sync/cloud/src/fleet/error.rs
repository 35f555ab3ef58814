//! What can go wrong with an operator command, each named for what went wrong.

use std::path::PathBuf;

use caidan_sync::broker_url::BrokerUrlError;
use caidan_sync::contract::IdError;
use caidan_sync::keys::KeyError;

/// Why a fleet command stopped. Every input error is found before anything is published.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("target {given:?}: write fleet, group:NAME or device:ID")]
    BadTarget { given: String },
    #[error("target {given:?}: {source}")]
    BadTargetName { given: String, source: IdError },
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: {bytes} bytes is over the {limit} byte limit of a config document; reference a big catalogue as catalogue = {{ url, sha256, bytes }}"
    )]
    FileTooLarge {
        path: PathBuf,
        bytes: u64,
        limit: usize,
    },
    #[error("{path}: not TOML: {reason}")]
    BadToml { path: PathBuf, reason: String },
    #[error("{path}: unknown setting {key:?}; known settings: {known}")]
    UnknownSetting {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("{path}: trust is a fleet-wide setting; push it with --target fleet, not {target}")]
    TrustOutsideFleet { path: PathBuf, target: String },
    #[error("{path}: {key}: {reason}")]
    BadValue {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(
        "the signed envelope is {bytes} bytes, over the {limit} byte limit devices read; reference a big catalogue as catalogue = {{ url, sha256, bytes }}"
    )]
    EnvelopeTooLarge { bytes: usize, limit: usize },
    #[error("operator key: {0}")]
    Key(#[from] KeyError),
    #[error("{path} already exists; refusing to overwrite an operator key")]
    KeyExists { path: PathBuf },
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] BrokerUrlError),
    #[error("cannot connect to the broker at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("no answer from the broker at {url} within {secs} s")]
    ConnectTimeout { url: String, secs: u64 },
    #[error("lost the broker connection: {0}")]
    ConnectionLost(String),
    #[error("the broker refused the subscription to {0}")]
    SubscribeRefused(String),
    #[error("the broker did not acknowledge {what} within {secs} s")]
    BrokerTimeout { what: String, secs: u64 },
    #[error("history {path}: {reason}")]
    History { path: PathBuf, reason: String },
    #[error(
        "no devices of {target} in fleet {fleet} report a retained state; nothing to roll out to"
    )]
    NoDevices { fleet: String, target: String },
    #[error(
        "every device of {target} is offline ({devices}); a rollout needs answers, use fleet push instead"
    )]
    AllOffline { target: String, devices: String },
    #[error("nothing is retained on {topic}; there is no current document to roll back from")]
    NothingRetained { topic: String },
    #[error(
        "no document before version {current} of {target} in {path}; pass --to-version or push the settings again"
    )]
    NoPrevious {
        target: String,
        current: u64,
        path: PathBuf,
    },
    #[error("no document of version {version} of {target} in {path}")]
    NoSuchVersion {
        target: String,
        version: u64,
        path: PathBuf,
    },
    #[error("the document retained on {topic} cannot be read: {reason}")]
    UnreadableRetained { topic: String, reason: String },
    #[error("rollout halted: {0}")]
    Halted(String),
    #[error("{what} was published, but recording it in the history failed: {source}")]
    NotRecorded {
        what: String,
        source: Box<FleetError>,
    },
}

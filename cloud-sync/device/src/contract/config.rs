//! Fleet config: one layer of a device's config (fleet, group or device) in a signed
//! envelope, and the device's answer to it.
//!
//! The envelope is DSSE (the form in-toto and Sigstore use): `payloadType`, the payload in
//! base64 and signatures with key ids, each an Ed25519 signature over the DSSE
//! pre-authentication encoding of type and payload. A device acts on a document only when a
//! signature by a key it trusts verifies; the payload is parsed only after that.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{Name, shown};
use crate::keys::{KeyError, KeyId, PublicKey, SecretKey, TrustedKeys};

/// The DSSE payload type of a Caidan config document.
pub const PAYLOAD_TYPE: &str = "application/vnd.caidan.config+json";
/// Largest envelope a device reads; large catalogues travel by reference.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// The top-level settings a config layer may hold; agents refuse any other (docs in
/// README, "Fleet config").
pub const SETTING_KEYS: [&str; 11] = [
    "offers",
    "segments",
    "stock",
    "catalogue",
    "stores",
    "qr",
    "sync",
    "staff",
    "features",
    "brand_line",
    "trust",
];

/// Most signatures an envelope may carry.
const MAX_SIGNATURES: usize = 8;
/// Longest reason text in an acknowledgement.
pub const MAX_REASON_CHARS: usize = 300;

/// Which layer a document sets. The effective config is fleet, then each group in the
/// device's order, then device: a later layer replaces the keys it names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Fleet,
    Group,
    Device,
}

impl Layer {
    pub const ALL: [Layer; 3] = [Layer::Fleet, Layer::Group, Layer::Device];

    /// The layer named `text` (as [`Layer::as_str`] writes it).
    pub fn parse(text: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Fleet => "fleet",
            Layer::Group => "group",
            Layer::Device => "device",
        }
    }
}

/// One layer of one fleet: `fleet` for the whole fleet, a group's name, or a device id.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct LayerId {
    pub layer: Layer,
    /// The fleet's name for the fleet layer, the group's or the device's otherwise.
    pub target: Name,
}

impl std::fmt::Display for LayerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.layer {
            Layer::Fleet => f.write_str("fleet"),
            l => write!(f, "{}:{}", l.as_str(), self.target),
        }
    }
}

/// The signed payload: one layer's settings at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// The fleet the document is for.
    pub fleet: Name,
    /// The layer it sets.
    pub layer: Layer,
    /// The fleet's name, a group's or a device id, as `layer` says.
    pub target: Name,
    /// Higher than every version signed before for this layer and target; a device refuses
    /// one that is not higher than what it applied.
    #[schemars(range(min = 1))]
    pub version: u64,
    /// When the operator signed it (RFC 3339).
    pub issued_at: jiff::Timestamp,
    /// The keys this layer sets; each replaces the same key of the layers below. The agent
    /// checks them against its firmware profile (docs/fleet.md lists them).
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl ConfigDocument {
    pub fn layer_id(&self) -> LayerId {
        LayerId {
            layer: self.layer,
            target: self.target.clone(),
        }
    }
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// `application/vnd.caidan.config+json`.
    pub payload_type: String,
    /// The payload bytes, base64.
    pub payload: String,
    /// One or more signatures; one by a key the device trusts is enough.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EnvelopeSignature {
    /// The signing key's id (first 8 bytes of the SHA-256 of its public key, hex).
    pub keyid: String,
    /// Ed25519 signature over the pre-authentication encoding, base64.
    pub sig: String,
}

/// Why a document was refused; `code` is stable for scripts, the message says what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// Not a DSSE envelope, over the size limit, or a payload that does not parse.
    Malformed,
    /// No signature at all.
    Unsigned,
    /// Signed only by keys this device does not trust.
    UntrustedKey,
    /// A trusted key's signature that does not verify (payload or signature altered).
    BadSignature,
    /// Not newer than the version applied for this layer (a replay or an old copy).
    StaleVersion,
    /// For another fleet, group or device.
    WrongTarget,
    /// The merged config breaks a rule of the device's firmware profile.
    InvalidForProfile,
    /// A setting that does not parse or breaks its bounds.
    Invalid,
    /// A referenced file could not be fetched (network, TLS, HTTP status).
    FetchFailed,
    /// A referenced file took longer than the fetch timeout.
    FetchTimeout,
    /// A referenced file larger than declared or than the storage budget allows.
    TooLarge,
    /// A referenced file whose SHA-256 is not the one the document names.
    HashMismatch,
    /// The device could not store it (disk, database).
    StoreFailed,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed",
            RejectCode::Unsigned => "unsigned",
            RejectCode::UntrustedKey => "untrusted_key",
            RejectCode::BadSignature => "bad_signature",
            RejectCode::StaleVersion => "stale_version",
            RejectCode::WrongTarget => "wrong_target",
            RejectCode::InvalidForProfile => "invalid_for_profile",
            RejectCode::Invalid => "invalid",
            RejectCode::FetchFailed => "fetch_failed",
            RejectCode::FetchTimeout => "fetch_timeout",
            RejectCode::TooLarge => "too_large",
            RejectCode::HashMismatch => "hash_mismatch",
            RejectCode::StoreFailed => "store_failed",
        }
    }
}

/// A refusal with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{} ({})", message, code.as_str())]
pub struct Rejection {
    pub code: RejectCode,
    /// What was wrong, in a sentence.
    #[schemars(length(max = 300))]
    pub message: String,
}

impl Rejection {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Rejection {
        let message: String = message.into();
        let message = if message.chars().count() > MAX_REASON_CHARS {
            let head: String = message.chars().take(MAX_REASON_CHARS - 3).collect();
            format!("{head}...")
        } else {
            message
        };
        Rejection { code, message }
    }
}

/// Applied or rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigStatus {
    Applied,
    Rejected,
}

/// A device's answer to one document, on `.../d/{device}/config/ack` and, with the scene,
/// as a `com.caidan.config` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigAck {
    /// The layer, when the document could be read that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Layer>,
    /// The layer's fleet, group or device, when the document could be read that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Name>,
    /// The document's version, when it could be read that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Applied (the device runs it now) or rejected (it runs what it ran before).
    pub status: ConfigStatus,
    /// Why it was rejected: a stable code and a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Rejection>,
    /// SHA-256 of the envelope's payload, hex: which document this answers.
    #[schemars(length(min = 64, max = 64))]
    pub digest: String,
}

impl ConfigAck {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a config ack always serialises")
    }

    /// Parses an acknowledgement (operators' side).
    pub fn parse(payload: &[u8]) -> Result<ConfigAck, Rejection> {
        if payload.len() > 4096 {
            return Err(Rejection::new(
                RejectCode::Malformed,
                "config ack over 4 KiB",
            ));
        }
        serde_json::from_slice(payload)
            .map_err(|e| Rejection::new(RejectCode::Malformed, super::bounded_reason(&e)))
    }
}

/// `data` of `com.caidan.config`: a document applied or rejected, so the data bank knows
/// which config served every later fact of the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigData {
    #[serde(flatten)]
    pub answer: ConfigAck,
    /// The touchpoint's scene.
    #[schemars(schema_with = "super::data::scene_schema")]
    pub scene: super::Scene,
}

/// The versions a device runs per layer, and its last refusal, for the state message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<u64>,
    /// Per group the device is in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<Name, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<u64>,
    /// The last document refused, with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rejection: Option<ConfigAck>,
}

impl ConfigReport {
    /// The version applied for `layer`.
    pub fn version(&self, layer: &LayerId) -> Option<u64> {
        match layer.layer {
            Layer::Fleet => self.fleet,
            Layer::Group => self.groups.get(&layer.target).copied(),
            Layer::Device => self.device,
        }
    }
}

/// DSSE's pre-authentication encoding: what a signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// SHA-256 of a payload, hex.
pub fn digest(payload: &[u8]) -> String {
    hex::encode(Sha256::digest(payload))
}

/// Base64 as DSSE writers use it: standard, or URL-safe, padded or not.
fn decode_b64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .ok()
}

/// A verified envelope: the document, its payload's digest and the key that signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub document: ConfigDocument,
    pub digest: String,
    pub signer: KeyId,
}

impl Envelope {
    /// Signs `doc` with `key`.
    pub fn sign(doc: &ConfigDocument, key: &SecretKey) -> Envelope {
        let payload = serde_json::to_vec(doc).expect("a config document always serialises");
        Envelope::sign_payload(&payload, key)
    }

    /// Signs raw payload bytes (tests sign what a document would not hold).
    pub fn sign_payload(payload: &[u8], key: &SecretKey) -> Envelope {
        let sig = key.sign_raw(&pae(PAYLOAD_TYPE, payload));
        Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: STANDARD.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: key.public().id().to_string(),
                sig: STANDARD.encode(sig),
            }],
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serialises")
    }

    /// Reads an envelope off the wire (bounded), without trusting it yet.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, Rejection> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(Rejection::new(
                RejectCode::Malformed,
                format!(
                    "envelope of {} bytes is over the {MAX_ENVELOPE_BYTES} byte limit; reference large catalogues by URL",
                    bytes.len()
                ),
            ));
        }
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| {
            Rejection::new(
                RejectCode::Malformed,
                format!("not a DSSE envelope: {}", super::bounded_reason(&e)),
            )
        })?;
        if env.payload_type != PAYLOAD_TYPE {
            return Err(Rejection::new(
                RejectCode::Malformed,
                format!(
                    "payload type {} is not {PAYLOAD_TYPE}",
                    shown(&env.payload_type)
                ),
            ));
        }
        Ok(env)
    }

    /// The payload's SHA-256 (hex), or the empty digest when it is not base64.
    pub fn digest(&self) -> String {
        digest(&decode_b64(&self.payload).unwrap_or_default())
    }

    /// Checks that a key in `trusted` signed the payload, then parses the document.
    pub fn verify(&self, trusted: &TrustedKeys) -> Result<Verified, Rejection> {
        let payload = decode_b64(&self.payload)
            .ok_or_else(|| Rejection::new(RejectCode::Malformed, "payload is not base64"))?;
        if self.signatures.is_empty() {
            return Err(Rejection::new(
                RejectCode::Unsigned,
                "the envelope has no signature",
            ));
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(Rejection::new(
                RejectCode::Malformed,
                format!("more than {MAX_SIGNATURES} signatures"),
            ));
        }
        let message = pae(&self.payload_type, &payload);
        let mut failure = None;
        let mut signer = None;
        for s in &self.signatures {
            let Some(key) = trusted_key(trusted, &s.keyid) else {
                continue;
            };
            match decode_b64(&s.sig)
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .ok_or(KeyError::GarbledSignature)
                .and_then(|sig| key.verify_raw(&message, &sig))
            {
                Ok(()) => {
                    signer = Some(key.id());
                    break;
                }
                Err(e) => failure = Some(e),
            }
        }
        let Some(signer) = signer else {
            return Err(match failure {
                Some(e) => Rejection::new(
                    RejectCode::BadSignature,
                    format!("the signature of a trusted key does not verify: {e}"),
                ),
                None => Rejection::new(
                    RejectCode::UntrustedKey,
                    format!(
                        "signed only by keys this device does not trust ({})",
                        self.signatures
                            .iter()
                            .map(|s| shown(&s.keyid))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            });
        };
        let document: ConfigDocument = serde_json::from_slice(&payload).map_err(|e| {
            Rejection::new(
                RejectCode::Malformed,
                format!("config document: {}", super::bounded_reason(&e)),
            )
        })?;
        if document.version == 0 {
            return Err(Rejection::new(
                RejectCode::Invalid,
                "version must be 1 or more",
            ));
        }
        if document.layer == Layer::Fleet && document.target != document.fleet {
            return Err(Rejection::new(
                RejectCode::Invalid,
                "a fleet layer's target is the fleet's name",
            ));
        }
        Ok(Verified {
            document,
            digest: digest(&payload),
            signer,
        })
    }
}

fn trusted_key<'a>(trusted: &'a TrustedKeys, keyid: &str) -> Option<&'a PublicKey> {
    let id: KeyId = keyid.parse().ok()?;
    trusted.keys().iter().find(|k| k.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: u64) -> ConfigDocument {
        ConfigDocument {
            fleet: Name::new("demo").unwrap(),
            layer: Layer::Fleet,
            target: Name::new("demo").unwrap(),
            version,
            issued_at: "2026-12-01T10:00:00Z".parse().unwrap(),
            settings: serde_json::json!({"qr": {"rotation_secs": 20}})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    fn trusting(key: &SecretKey) -> TrustedKeys {
        TrustedKeys::new(vec![key.public()])
    }

    #[test]
    fn pae_matches_the_dsse_spec() {
        // The example from the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_signed_document_verifies_and_round_trips() {
        let key = SecretKey::generate();
        let env = Envelope::sign(&doc(3), &key);
        let wire = env.to_json();
        let back = Envelope::parse(&wire)
            .unwrap()
            .verify(&trusting(&key))
            .unwrap();
        assert_eq!(back.document, doc(3));
        assert_eq!(back.signer, key.public().id());
        assert_eq!(back.digest, env.digest());
    }

    #[test]
    fn each_forgery_has_its_own_reason() {
        let key = SecretKey::generate();
        let trusted = trusting(&key);
        let good = Envelope::sign(&doc(3), &key);

        let mut unsigned = good.clone();
        unsigned.signatures.clear();
        assert_eq!(
            unsigned.verify(&trusted).unwrap_err().code,
            RejectCode::Unsigned
        );

        let stranger = Envelope::sign(&doc(3), &SecretKey::generate());
        assert_eq!(
            stranger.verify(&trusted).unwrap_err().code,
            RejectCode::UntrustedKey
        );

        let mut payload = good.clone();
        payload.payload = STANDARD.encode(serde_json::to_vec(&doc(4)).unwrap());
        assert_eq!(
            payload.verify(&trusted).unwrap_err().code,
            RejectCode::BadSignature
        );

        let mut sig = good.clone();
        let mut raw = STANDARD.decode(&sig.signatures[0].sig).unwrap();
        raw[10] ^= 1;
        sig.signatures[0].sig = STANDARD.encode(raw);
        assert_eq!(
            sig.verify(&trusted).unwrap_err().code,
            RejectCode::BadSignature
        );

        assert_eq!(
            Envelope::parse(b"{\"nope\":1}").unwrap_err().code,
            RejectCode::Malformed
        );
        let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(
            Envelope::parse(&big).unwrap_err().code,
            RejectCode::Malformed
        );
    }

    #[test]
    fn a_fleet_layer_names_its_fleet() {
        let key = SecretKey::generate();
        let mut d = doc(1);
        d.target = Name::new("other").unwrap();
        let err = Envelope::sign(&d, &key)
            .verify(&trusting(&key))
            .unwrap_err();
        assert_eq!(err.code, RejectCode::Invalid);
    }

    #[test]
    fn long_reasons_are_cut() {
        let r = Rejection::new(RejectCode::Invalid, "x".repeat(5000));
        assert!(r.message.chars().count() <= MAX_REASON_CHARS);
    }
}

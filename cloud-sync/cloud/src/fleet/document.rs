//! Documents an operator signs: the next version of a layer, a signed envelope within the
//! size devices read, and reading back what a topic retains.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use caidan_sync::contract::config::MAX_ENVELOPE_BYTES;
use caidan_sync::contract::{ConfigDocument, Envelope, LayerId, Name};
use caidan_sync::keys::SecretKey;
use serde_json::{Map, Value};

use super::FleetError;

/// A signed document ready to publish.
#[derive(Debug, Clone)]
pub struct Signed {
    pub document: ConfigDocument,
    pub envelope: Envelope,
    /// The envelope as published.
    pub bytes: Vec<u8>,
    /// SHA-256 of the payload, hex: what devices name in their answers.
    pub digest: String,
}

/// The version after everything seen: one more than the highest of what the target topic
/// retains, what any device reports for the layer and what this operator pushed before.
pub fn next_version(seen: impl IntoIterator<Item = Option<u64>>) -> u64 {
    seen.into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
        .saturating_add(1)
}

/// A document of `layer` in `fleet` at `version`, issued `now`.
pub fn document(
    fleet: &Name,
    layer: &LayerId,
    version: u64,
    settings: Map<String, Value>,
    now: jiff::Timestamp,
) -> ConfigDocument {
    ConfigDocument {
        fleet: fleet.clone(),
        layer: layer.layer,
        target: layer.target.clone(),
        version,
        issued_at: now,
        settings,
    }
}

/// The document to restore `previous` (or empty settings, when there was none) at
/// `version`, which must be higher than every version devices may have applied.
pub fn restoring(
    previous: Option<&ConfigDocument>,
    fleet: &Name,
    layer: &LayerId,
    version: u64,
    now: jiff::Timestamp,
) -> ConfigDocument {
    let settings = previous.map(|d| d.settings.clone()).unwrap_or_default();
    document(fleet, layer, version, settings, now)
}

/// Signs `document` with `key`; refuses an envelope devices would not read.
pub fn sign(document: ConfigDocument, key: &SecretKey) -> Result<Signed, FleetError> {
    let envelope = Envelope::sign(&document, key);
    let bytes = envelope.to_json();
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(FleetError::EnvelopeTooLarge {
            bytes: bytes.len(),
            limit: MAX_ENVELOPE_BYTES,
        });
    }
    let digest = envelope.digest();
    Ok(Signed {
        document,
        envelope,
        bytes,
        digest,
    })
}

/// Reads a retained envelope and the document it carries, without checking who signed it:
/// the operator reads back what is there to number the next version and to restore it.
pub fn read_retained(bytes: &[u8]) -> Result<(Envelope, ConfigDocument), String> {
    let envelope = Envelope::parse(bytes).map_err(|r| r.message)?;
    let document = document_of(&envelope)?;
    Ok((envelope, document))
}

/// The document an envelope carries, signature unchecked.
pub fn document_of(envelope: &Envelope) -> Result<ConfigDocument, String> {
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|_| "payload is not base64".to_owned())?;
    serde_json::from_slice(&payload).map_err(|e| format!("config document: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::contract::Layer;
    use caidan_sync::keys::TrustedKeys;

    fn fleet_layer() -> (Name, LayerId) {
        let fleet = Name::new("demo").unwrap();
        let layer = LayerId {
            layer: Layer::Fleet,
            target: fleet.clone(),
        };
        (fleet, layer)
    }

    #[test]
    fn next_version_is_above_everything_seen() {
        assert_eq!(next_version([]), 1);
        assert_eq!(next_version([None, None]), 1);
        assert_eq!(next_version([Some(3), None, Some(7), Some(2)]), 8);
        assert_eq!(next_version([Some(u64::MAX)]), u64::MAX);
    }

    #[test]
    fn signed_documents_read_back_and_verify() {
        let (fleet, layer) = fleet_layer();
        let key = SecretKey::generate();
        let settings = serde_json::json!({"qr": {"rotation_secs": 20}})
            .as_object()
            .unwrap()
            .clone();
        let doc = document(&fleet, &layer, 4, settings, jiff::Timestamp::now());
        let signed = sign(doc.clone(), &key).unwrap();
        let (env, back) = read_retained(&signed.bytes).unwrap();
        assert_eq!(back, doc);
        assert_eq!(env.digest(), signed.digest);
        let verified = env.verify(&TrustedKeys::new(vec![key.public()])).unwrap();
        assert_eq!(verified.document.version, 4);
        assert!(read_retained(b"{}").is_err());
        assert!(read_retained(b"").is_err());
    }

    #[test]
    fn restoring_keeps_the_old_settings_at_the_new_version() {
        let (fleet, layer) = fleet_layer();
        let now = jiff::Timestamp::now();
        let old = document(
            &fleet,
            &layer,
            2,
            serde_json::json!({"brand_line": "old"})
                .as_object()
                .unwrap()
                .clone(),
            now,
        );
        let back = restoring(Some(&old), &fleet, &layer, 6, now);
        assert_eq!((back.version, &back.settings), (6, &old.settings));
        let empty = restoring(None, &fleet, &layer, 6, now);
        assert!(empty.settings.is_empty());
        assert_eq!(empty.target, fleet);
    }

    #[test]
    fn oversized_envelopes_are_refused() {
        let (fleet, layer) = fleet_layer();
        let big = serde_json::json!({"brand_line": "x".repeat(MAX_ENVELOPE_BYTES)});
        let doc = document(
            &fleet,
            &layer,
            1,
            big.as_object().unwrap().clone(),
            jiff::Timestamp::now(),
        );
        let err = sign(doc, &SecretKey::generate()).unwrap_err();
        assert!(matches!(err, FleetError::EnvelopeTooLarge { .. }), "{err}");
    }
}

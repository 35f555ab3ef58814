//! What one config layer may set, and how layers merge: a later layer replaces the
//! top-level keys it names. The catalogue keys (`offers`, `segments`, `stock`, `catalogue`)
//! go together: a layer naming any of them replaces the catalogue of the layers below.

use std::collections::BTreeMap;

use caidan_sync::credentials::TokenHash;
use caidan_sync::keys::PublicKey;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::catalogue::{Offer, Text};
use crate::config::SyncOverrides;
use crate::directory::StoreEntry;

/// Keys that make up the catalogue.
pub const CATALOGUE_KEYS: [&str; 4] = ["offers", "segments", "stock", "catalogue"];
/// Every key a layer may hold.
pub const KEYS: [&str; 11] = caidan_sync::contract::config::SETTING_KEYS;

/// One layer's settings, or the merge of all of them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub offers: Option<Vec<Offer>>,
    pub segments: Option<BTreeMap<String, Vec<String>>>,
    pub stock: Option<BTreeMap<String, i64>>,
    /// A catalogue too large to travel in the document, fetched over HTTPS.
    pub catalogue: Option<CatalogueRef>,
    pub stores: Option<Vec<StoreEntry>>,
    pub qr: Option<QrSettings>,
    pub sync: Option<SyncOverrides>,
    pub staff: Option<StaffSettings>,
    pub features: Option<Features>,
    pub brand_line: Option<Text>,
    /// The next set of trusted config keys (fleet layer only).
    pub trust: Option<TrustSettings>,
}

/// A catalogue file by reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueRef {
    /// `https://` only.
    pub url: String,
    /// SHA-256 of the file, 64 hex digits.
    pub sha256: String,
    /// Its size in bytes; a longer body is refused as soon as it is longer.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrSettings {
    pub rotation_secs: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffSettings {
    pub tokens: Vec<TokenHash>,
}

/// Switches operators flip per touchpoint, group or fleet; all on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Features {
    /// Shoppers can crack eggs (off: the egg page says eggs are paused).
    pub eggs: bool,
    /// The vending keypad takes pickup codes.
    pub keypad: bool,
    /// Out-of-stock answers ask the data bank where else the item is.
    pub elsewhere: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            eggs: true,
            keypad: true,
            elsewhere: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    /// Config signing keys trusted from now on; at least one.
    pub config: Vec<PublicKey>,
}

impl Settings {
    /// Parses settings, naming the key that is wrong.
    pub fn from_map(map: &Map<String, Value>) -> Result<Settings, String> {
        if let Some(k) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!(
                "unknown setting {:?}; a layer may set {}",
                caidan_sync::contract::ids::shown(k),
                KEYS.join(", ")
            ));
        }
        serde_json::from_value(Value::Object(map.clone())).map_err(|e| {
            let text = e.to_string();
            text.chars().take(280).collect()
        })
    }

    /// Whether this layer names the catalogue.
    pub fn names_catalogue(map: &Map<String, Value>) -> bool {
        map.keys().any(|k| CATALOGUE_KEYS.contains(&k.as_str()))
    }
}

/// Merges layers, lowest first. `trust` is a transition, not a setting: it is not merged.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a Map<String, Value>>) -> Map<String, Value> {
    let mut out = Map::new();
    for layer in layers {
        if Settings::names_catalogue(layer) {
            for k in CATALOGUE_KEYS {
                out.remove(k);
            }
        }
        for (k, v) in layer {
            if k != "trust" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// The catalogue part of merged settings, as the bytes its digest is taken over.
pub fn catalogue_part(merged: &Map<String, Value>) -> Option<Vec<u8>> {
    let part: Map<String, Value> = CATALOGUE_KEYS
        .iter()
        .filter_map(|k| merged.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    (!part.is_empty()).then(|| serde_json::to_vec(&part).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_later_layer_replaces_the_keys_it_names() {
        let fleet =
            map(json!({"qr": {"rotation_secs": 30}, "features": {"eggs": true}, "offers": []}));
        let group = map(json!({"qr": {"rotation_secs": 20}}));
        let device = map(json!({"catalogue": {"url": "https://x", "sha256": "00", "bytes": 1}}));
        let m = merge([&fleet, &group, &device]);
        assert_eq!(m["qr"], json!({"rotation_secs": 20}));
        assert_eq!(m["features"], json!({"eggs": true}));
        assert!(
            !m.contains_key("offers"),
            "the device's catalogue replaced the fleet's"
        );
        assert!(m.contains_key("catalogue"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Settings::from_map(&map(json!({"qrr": {}}))).unwrap_err();
        assert!(err.contains("qrr") && err.contains("brand_line"), "{err}");
        let err = Settings::from_map(&map(json!({"qr": {"rotation": 3}}))).unwrap_err();
        assert!(err.contains("rotation"), "{err}");
    }
}

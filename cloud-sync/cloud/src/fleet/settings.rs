//! An operator's config file (TOML) turned into a document's `settings`: each top-level key
//! is one setting, checked against the keys agents know before anything is signed.

use std::path::Path;

use caidan_sync::contract::config::MAX_ENVELOPE_BYTES;
use serde_json::{Map, Value};

use super::{FleetError, Target};

/// The top-level settings an agent reads from a config layer.
pub const KNOWN_SETTINGS: &[&str] = &caidan_sync::contract::config::SETTING_KEYS;

/// Settings only the fleet layer may set (who a device trusts is not a group's call).
const FLEET_ONLY: &[&str] = &["trust"];

/// Reads `path` and turns it into settings for `target`.
pub fn read_settings(path: &Path, target: &Target) -> Result<Map<String, Value>, FleetError> {
    let meta = std::fs::metadata(path).map_err(|source| FleetError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    // A file this large cannot fit in an envelope (base64 adds a third); refuse before reading.
    if meta.len() > MAX_ENVELOPE_BYTES as u64 {
        return Err(FleetError::FileTooLarge {
            path: path.to_owned(),
            bytes: meta.len(),
            limit: MAX_ENVELOPE_BYTES,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| FleetError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_settings(path, &text, target)
}

/// Parses TOML `text` (named `path` in errors) into settings for `target`.
pub fn parse_settings(
    path: &Path,
    text: &str,
    target: &Target,
) -> Result<Map<String, Value>, FleetError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| FleetError::BadToml {
        path: path.to_owned(),
        reason: e.to_string().trim().replace('\n', " "),
    })?;
    let mut settings = Map::new();
    for (key, value) in table {
        if !KNOWN_SETTINGS.contains(&key.as_str()) {
            return Err(FleetError::UnknownSetting {
                path: path.to_owned(),
                key,
                known: KNOWN_SETTINGS.join(", "),
            });
        }
        if FLEET_ONLY.contains(&key.as_str()) && *target != Target::Fleet {
            return Err(FleetError::TrustOutsideFleet {
                path: path.to_owned(),
                target: target.to_string(),
            });
        }
        let json = to_json(&value).map_err(|(at, reason)| FleetError::BadValue {
            path: path.to_owned(),
            key: format!("{key}{at}"),
            reason,
        })?;
        settings.insert(key, json);
    }
    Ok(settings)
}

/// TOML to JSON. Datetimes become their RFC 3339 text; a float JSON cannot hold is an error
/// with the path below the top-level key where it sits.
fn to_json(value: &toml::Value) -> Result<Value, (String, String)> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| (String::new(), format!("{f} cannot be written in JSON")))?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_json(v).map_err(|(at, r)| (format!("[{i}]{at}"), r)))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| {
                    to_json(v)
                        .map(|j| (k.clone(), j))
                        .map_err(|(at, r)| (format!(".{k}{at}"), r))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::contract::Name;

    fn parse(text: &str, target: &Target) -> Result<Map<String, Value>, FleetError> {
        parse_settings(Path::new("cfg.toml"), text, target)
    }

    #[test]
    fn tables_become_json_settings() {
        let s = parse(
            "brand_line = \"Hi\"\n[qr]\nrotation_secs = 20\n[features]\nvending = true\n\
             [catalogue]\nurl = \"https://x/c.json\"\nbytes = 10\n[[offers]]\nid = \"a\"\nweight = 0.5\n\
             [sync]\nwindow = 2026-12-01T10:00:00Z\n",
            &Target::Fleet,
        )
        .unwrap();
        assert_eq!(
            Value::Object(s),
            serde_json::json!({
                "brand_line": "Hi",
                "qr": {"rotation_secs": 20},
                "features": {"vending": true},
                "catalogue": {"url": "https://x/c.json", "bytes": 10},
                "offers": [{"id": "a", "weight": 0.5}],
                "sync": {"window": "2026-12-01T10:00:00Z"},
            })
        );
    }

    #[test]
    fn unknown_keys_are_named_with_the_known_ones() {
        let err = parse("[qr]\nrotation_secs = 1\n[colour]\nx = 1\n", &Target::Fleet)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"colour\""), "{err}");
        assert!(err.contains("offers, segments, stock"), "{err}");
        assert!(err.contains("cfg.toml"), "{err}");
    }

    #[test]
    fn trust_only_on_the_fleet() {
        let text = "[trust]\nconfig = [\"ed25519:00\"]\n";
        assert!(parse(text, &Target::Fleet).is_ok());
        let group = Target::Group(Name::new("north").unwrap());
        let err = parse(text, &group).unwrap_err();
        assert!(matches!(err, FleetError::TrustOutsideFleet { .. }), "{err}");
        assert!(err.to_string().contains("group:north"));
    }

    #[test]
    fn garbage_and_unrepresentable_values_are_refused() {
        assert!(matches!(
            parse("qr = = 1", &Target::Fleet),
            Err(FleetError::BadToml { .. })
        ));
        let err = parse("[qr]\nlist = [1.0, nan]\n", &Target::Fleet).unwrap_err();
        assert!(err.to_string().contains("qr.list[1]"), "{err}");
    }

    #[test]
    fn oversized_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, vec![b'#'; MAX_ENVELOPE_BYTES + 1]).unwrap();
        let err = read_settings(&path, &Target::Fleet)
            .unwrap_err()
            .to_string();
        assert!(err.contains("catalogue = { url, sha256, bytes }"), "{err}");
    }
}

//! The config layers a device runs and whether a new document may replace one: no I/O.

use std::collections::BTreeMap;

use caidan_sync::contract::config::Verified;
use caidan_sync::contract::{ConfigReport, Layer, LayerId, Name, RejectCode, Rejection};
use caidan_sync::keys::TrustedKeys;
use serde_json::{Map, Value};

use super::settings::{self, Settings};

/// Who this device is, for matching documents to it.
#[derive(Debug, Clone)]
pub struct Me {
    pub fleet: Name,
    pub device: Name,
    /// In precedence order: a later group's layer overrides an earlier one's.
    pub groups: Vec<Name>,
}

/// One applied layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub version: u64,
    pub digest: String,
    pub settings: Map<String, Value>,
}

/// The layers applied and the keys trusted to sign the next ones.
#[derive(Debug, Clone)]
pub struct Layers {
    pub trusted: TrustedKeys,
    pub applied: BTreeMap<LayerId, Applied>,
}

/// What to do with a verified document.
#[derive(Debug)]
pub enum Decision {
    /// The same version and payload as applied: nothing to do.
    Same,
    Apply(Box<Plan>),
}

/// A document that may be applied once the merged result checks out.
#[derive(Debug)]
pub struct Plan {
    pub id: LayerId,
    pub applied: Applied,
    /// Every layer after this one is applied, lowest first, merged.
    pub merged: Map<String, Value>,
    pub effective: Settings,
    /// The key set that signs from now on, when this layer rotates it.
    pub trust: Option<TrustedKeys>,
}

fn reject(code: RejectCode, message: impl Into<String>) -> Rejection {
    Rejection::new(code, message)
}

impl Layers {
    /// Layers in precedence order for `me`, lowest first.
    pub fn ordered<'a>(
        applied: &'a BTreeMap<LayerId, Applied>,
        me: &Me,
    ) -> Vec<&'a Map<String, Value>> {
        let id = |layer, target: &Name| LayerId {
            layer,
            target: target.clone(),
        };
        let mut out = Vec::new();
        if let Some(a) = applied.get(&id(Layer::Fleet, &me.fleet)) {
            out.push(&a.settings);
        }
        for g in &me.groups {
            if let Some(a) = applied.get(&id(Layer::Group, g)) {
                out.push(&a.settings);
            }
        }
        if let Some(a) = applied.get(&id(Layer::Device, &me.device)) {
            out.push(&a.settings);
        }
        out
    }

    /// The merged settings of what is applied.
    pub fn merged(&self, me: &Me) -> Map<String, Value> {
        settings::merge(Layers::ordered(&self.applied, me))
    }

    /// Whether `doc` is for this device, newer than what runs, and well formed; what the
    /// result would be.
    pub fn consider(&self, v: &Verified, me: &Me) -> Result<Decision, Rejection> {
        let doc = &v.document;
        if doc.fleet != me.fleet {
            return Err(reject(
                RejectCode::WrongTarget,
                format!("for fleet {}, this device is in {}", doc.fleet, me.fleet),
            ));
        }
        let mine = match doc.layer {
            Layer::Fleet => doc.target == me.fleet,
            Layer::Group => me.groups.contains(&doc.target),
            Layer::Device => doc.target == me.device,
        };
        if !mine {
            return Err(reject(
                RejectCode::WrongTarget,
                format!("for {}, which is not this device's", doc.layer_id()),
            ));
        }
        let id = doc.layer_id();
        if let Some(now) = self.applied.get(&id) {
            if doc.version == now.version && v.digest == now.digest {
                return Ok(Decision::Same);
            }
            if doc.version <= now.version {
                return Err(reject(
                    RejectCode::StaleVersion,
                    format!(
                        "version {} of {id} is not newer than version {} applied",
                        doc.version, now.version
                    ),
                ));
            }
        }
        let layer = Settings::from_map(&doc.settings)
            .map_err(|e| reject(RejectCode::Invalid, format!("{id}: {e}")))?;
        let trust = match (&layer.trust, doc.layer) {
            (None, _) => None,
            (Some(t), Layer::Fleet) if !t.config.is_empty() => {
                Some(TrustedKeys::new(t.config.clone()))
            }
            (Some(_), Layer::Fleet) => {
                return Err(reject(
                    RejectCode::Invalid,
                    "trust.config must name at least one key",
                ));
            }
            (Some(_), _) => {
                return Err(reject(
                    RejectCode::Invalid,
                    "only the fleet layer may rotate the trusted keys",
                ));
            }
        };
        let applied = Applied {
            version: doc.version,
            digest: v.digest.clone(),
            settings: doc.settings.clone(),
        };
        let mut after = self.applied.clone();
        after.insert(id.clone(), applied.clone());
        let merged = settings::merge(Layers::ordered(&after, me));
        let effective = Settings::from_map(&merged)
            .map_err(|e| reject(RejectCode::Invalid, format!("merged config: {e}")))?;
        Ok(Decision::Apply(Box::new(Plan {
            id,
            applied,
            merged,
            effective,
            trust,
        })))
    }

    /// Versions applied per layer, for the state message.
    pub fn report(&self, last_rejection: Option<caidan_sync::contract::ConfigAck>) -> ConfigReport {
        let mut r = ConfigReport {
            last_rejection,
            ..ConfigReport::default()
        };
        for (id, a) in &self.applied {
            match id.layer {
                Layer::Fleet => r.fleet = Some(a.version),
                Layer::Group => {
                    r.groups.insert(id.target.clone(), a.version);
                }
                Layer::Device => r.device = Some(a.version),
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::contract::{ConfigDocument, Envelope};
    use caidan_sync::keys::SecretKey;
    use serde_json::json;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn me() -> Me {
        Me {
            fleet: name("demo"),
            device: name("kiosk-1"),
            groups: vec![name("campus-shanghai")],
        }
    }

    fn verified(
        key: &SecretKey,
        layer: Layer,
        target: &str,
        version: u64,
        settings: Value,
    ) -> Verified {
        let doc = ConfigDocument {
            fleet: name("demo"),
            layer,
            target: name(target),
            version,
            issued_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            settings: settings.as_object().unwrap().clone(),
        };
        Envelope::sign(&doc, key)
            .verify(&TrustedKeys::new(vec![key.public()]))
            .unwrap()
    }

    fn apply(layers: &mut Layers, v: &Verified) -> Result<Plan, Rejection> {
        match layers.consider(v, &me())? {
            Decision::Apply(p) => {
                layers.applied.insert(p.id.clone(), p.applied.clone());
                Ok(*p)
            }
            Decision::Same => panic!("unexpected same"),
        }
    }

    #[test]
    fn precedence_device_over_group_over_fleet() {
        let key = SecretKey::generate();
        let mut l = Layers {
            trusted: TrustedKeys::new(vec![key.public()]),
            applied: BTreeMap::new(),
        };
        apply(
            &mut l,
            &verified(
                &key,
                Layer::Fleet,
                "demo",
                1,
                json!({"qr": {"rotation_secs": 30}, "brand_line": {"en": "fleet"}}),
            ),
        )
        .unwrap();
        let p = apply(
            &mut l,
            &verified(
                &key,
                Layer::Group,
                "campus-shanghai",
                1,
                json!({"qr": {"rotation_secs": 20}}),
            ),
        )
        .unwrap();
        assert_eq!(p.effective.qr.unwrap().rotation_secs, 20);
        let p = apply(
            &mut l,
            &verified(
                &key,
                Layer::Device,
                "kiosk-1",
                1,
                json!({"qr": {"rotation_secs": 10}}),
            ),
        )
        .unwrap();
        assert_eq!(p.effective.qr.unwrap().rotation_secs, 10);
        assert_eq!(p.effective.brand_line.unwrap().en, "fleet");
        // A newer fleet layer does not override the device's own setting.
        let p = apply(
            &mut l,
            &verified(
                &key,
                Layer::Fleet,
                "demo",
                2,
                json!({"qr": {"rotation_secs": 40}}),
            ),
        )
        .unwrap();
        assert_eq!(p.effective.qr.unwrap().rotation_secs, 10);
        assert!(
            p.effective.brand_line.is_none(),
            "the fleet's new layer no longer names it"
        );
        let r = l.report(None);
        assert_eq!((r.fleet, r.device, r.groups.len()), (Some(2), Some(1), 1));
    }

    #[test]
    fn replays_and_other_targets_are_refused() {
        let key = SecretKey::generate();
        let mut l = Layers {
            trusted: TrustedKeys::new(vec![key.public()]),
            applied: BTreeMap::new(),
        };
        let v3 = verified(&key, Layer::Fleet, "demo", 3, json!({}));
        apply(&mut l, &v3).unwrap();
        assert!(matches!(l.consider(&v3, &me()), Ok(Decision::Same)));
        let old = verified(&key, Layer::Fleet, "demo", 2, json!({}));
        assert_eq!(
            l.consider(&old, &me()).unwrap_err().code,
            RejectCode::StaleVersion
        );
        let same_version_other_payload = verified(
            &key,
            Layer::Fleet,
            "demo",
            3,
            json!({"qr": {"rotation_secs": 9}}),
        );
        assert_eq!(
            l.consider(&same_version_other_payload, &me())
                .unwrap_err()
                .code,
            RejectCode::StaleVersion
        );
        for (layer, target) in [(Layer::Group, "campus-beijing"), (Layer::Device, "kiosk-2")] {
            let v = verified(&key, layer, target, 1, json!({}));
            assert_eq!(
                l.consider(&v, &me()).unwrap_err().code,
                RejectCode::WrongTarget
            );
        }
        let trust_in_group = verified(
            &key,
            Layer::Group,
            "campus-shanghai",
            1,
            json!({"trust": {"config": [key.public().to_string()]}}),
        );
        assert_eq!(
            l.consider(&trust_in_group, &me()).unwrap_err().code,
            RejectCode::Invalid
        );
        let unknown = verified(&key, Layer::Device, "kiosk-1", 1, json!({"colour": "red"}));
        assert_eq!(
            l.consider(&unknown, &me()).unwrap_err().code,
            RejectCode::Invalid
        );
    }
}

//! What a command addresses: the whole fleet, one group or one device, and the topics and
//! devices that follow from it.

use std::fmt;

use caidan_sync::contract::{Layer, LayerId, Name, StateMessage};
use caidan_sync::topics;

use super::FleetError;

/// `fleet`, `group:NAME` or `device:ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Fleet,
    Group(Name),
    Device(Name),
}

impl std::str::FromStr for Target {
    type Err = FleetError;

    fn from_str(given: &str) -> Result<Target, FleetError> {
        let name = |text: &str| {
            Name::new(text).map_err(|source| FleetError::BadTargetName {
                given: given.to_owned(),
                source,
            })
        };
        match given.split_once(':') {
            None if given == "fleet" => Ok(Target::Fleet),
            Some(("group", g)) => Ok(Target::Group(name(g)?)),
            Some(("device", d)) => Ok(Target::Device(name(d)?)),
            _ => Err(FleetError::BadTarget {
                given: given.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Fleet => f.write_str("fleet"),
            Target::Group(g) => write!(f, "group:{g}"),
            Target::Device(d) => write!(f, "device:{d}"),
        }
    }
}

impl Target {
    pub fn layer(&self) -> Layer {
        match self {
            Target::Fleet => Layer::Fleet,
            Target::Group(_) => Layer::Group,
            Target::Device(_) => Layer::Device,
        }
    }

    /// The layer this target sets in `fleet` (a fleet layer's target is the fleet's name).
    pub fn layer_id(&self, fleet: &Name) -> LayerId {
        let target = match self {
            Target::Fleet => fleet.clone(),
            Target::Group(n) | Target::Device(n) => n.clone(),
        };
        LayerId {
            layer: self.layer(),
            target,
        }
    }

    /// The retained topic of this layer.
    pub fn topic(&self, fleet: &str) -> String {
        match self {
            Target::Fleet => topics::fleet_config(fleet),
            Target::Group(g) => topics::group_config(fleet, g),
            Target::Device(d) => topics::device_config(fleet, d),
        }
    }

    /// Where a staged rollout hands `device` this layer: its rollout topic for a fleet or
    /// group layer, its own config topic for a device layer.
    pub fn wave_topic(&self, fleet: &str, device: &str) -> String {
        match self {
            Target::Device(_) => topics::device_config(fleet, device),
            _ => topics::rollout_config(fleet, device),
        }
    }

    /// Whether a rollout leaves per-device topics to clear (fleet and group layers).
    pub fn uses_rollout_topics(&self) -> bool {
        !matches!(self, Target::Device(_))
    }

    /// Whether `device`, which reported `state`, takes this layer.
    pub fn includes(&self, device: &str, state: &StateMessage) -> bool {
        match self {
            Target::Fleet => true,
            Target::Group(g) => state.groups.iter().any(|x| x == g),
            Target::Device(d) => d.as_str() == device,
        }
    }

    /// The version of this layer `device` reports applied, when it takes this layer.
    pub fn reported_version(
        &self,
        fleet: &Name,
        device: &str,
        state: &StateMessage,
    ) -> Option<u64> {
        if !self.includes(device, state) {
            return None;
        }
        state.config.as_ref()?.version(&self.layer_id(fleet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(groups: &[&str], fleet: Option<u64>, group: Option<(&str, u64)>) -> StateMessage {
        let mut report = caidan_sync::contract::ConfigReport {
            fleet,
            ..Default::default()
        };
        if let Some((g, v)) = group {
            report.groups.insert(Name::new(g).unwrap(), v);
        }
        StateMessage {
            online: true,
            profile: Name::new("kiosk").unwrap(),
            config_version: None,
            outbox_depth: None,
            last_error: None,
            storage: None,
            stock: None,
            location: None,
            groups: groups.iter().map(|g| Name::new(*g).unwrap()).collect(),
            scene: None,
            config: Some(report),
            at: None,
            clock: None,
        }
    }

    #[test]
    fn parses_each_form_and_refuses_the_rest() {
        assert_eq!("fleet".parse::<Target>().unwrap(), Target::Fleet);
        assert_eq!(
            "group:cinemas".parse::<Target>().unwrap(),
            Target::Group(Name::new("cinemas").unwrap())
        );
        assert_eq!(
            "device:k-01".parse::<Target>().unwrap().to_string(),
            "device:k-01"
        );
        for bad in [
            "",
            "fleet:x",
            "group:",
            "group:Big",
            "device:a/b",
            "store:x",
            "all",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topics_and_scope() {
        let fleet = Name::new("demo").unwrap();
        let g = Target::Group(Name::new("north").unwrap());
        assert_eq!(g.topic("demo"), "caidan/v1/demo/g/north/config");
        assert_eq!(
            g.wave_topic("demo", "k1"),
            "caidan/v1/demo/d/k1/config/rollout"
        );
        assert_eq!(Target::Fleet.topic("demo"), "caidan/v1/demo/config");
        let d = Target::Device(Name::new("k1").unwrap());
        assert_eq!(d.wave_topic("demo", "k1"), "caidan/v1/demo/d/k1/config");
        assert_eq!(d.layer_id(&fleet).to_string(), "device:k1");

        let s = state(&["north"], Some(4), Some(("north", 9)));
        assert!(g.includes("k2", &s) && Target::Fleet.includes("k2", &s));
        assert!(!d.includes("k2", &s));
        assert_eq!(g.reported_version(&fleet, "k2", &s), Some(9));
        assert_eq!(Target::Fleet.reported_version(&fleet, "k2", &s), Some(4));
        let other = Target::Group(Name::new("south").unwrap());
        assert_eq!(other.reported_version(&fleet, "k2", &s), None);
    }
}

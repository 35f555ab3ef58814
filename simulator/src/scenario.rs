//! A scenario file: the fleet, the day, the shoppers, the orders, the rollout and the faults.
//! Every field is documented in `examples/demo.toml`; unknown fields are refused.

use std::collections::BTreeSet;
use std::path::Path;

use caidan_profiles::Scene;
use serde::Deserialize;

/// Most agents one scenario may ask for.
pub const MAX_DEVICES: u32 = 20_000;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Seed of every random choice; `--seed` overrides it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub time: TimeSpan,
    pub devices: Vec<DeviceGroup>,
    pub shoppers: Shoppers,
    #[serde(default)]
    pub orders: Orders,
    #[serde(default)]
    pub rollout: Option<Rollout>,
    #[serde(default)]
    pub faults: Vec<Fault>,
}

fn default_seed() -> u64 {
    1
}

/// The stretch of virtual time simulated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpan {
    /// Local start, `YYYY-MM-DDTHH:MM` in `timezone`.
    pub start: String,
    pub timezone: String,
    pub hours: u32,
    /// Virtual seconds per real second.
    pub speed: u32,
    /// Virtual minutes advanced per step; every action of a step runs before the next.
    #[serde(default = "default_step")]
    pub step_minutes: u32,
}

fn default_step() -> u32 {
    1
}

/// `count` agents of one profile in one scene and region.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceGroup {
    pub profile: String,
    pub scene: Scene,
    pub region: String,
    pub count: u32,
    /// Run these as real processes (needed for `kill9`); in process otherwise.
    #[serde(default)]
    pub process: bool,
    /// Run each in its own network namespace, its uplink and its shop link on veth pairs
    /// (needs `process`, root and iproute2): `link_fault` then works on real links.
    #[serde(default)]
    pub netns: bool,
    /// Storage budget in bytes, below the profile's, for a disk near its budget.
    #[serde(default)]
    pub storage_budget_bytes: Option<u64>,
}

/// Who comes by, how often and how they behave.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shoppers {
    /// Visits per device in the scene's busiest hour; other hours follow the scene's shape.
    pub peak_visits_per_hour: u32,
    /// Distinct shoppers per device; a visit picks one, so some come back.
    pub pool_per_device: u32,
    /// Share of claims redeemed at the counter (Purchase), 0..=1.
    pub redeem_rate: f64,
    /// Segments shoppers belong to, with the share of the pool in each.
    #[serde(default)]
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    pub share: f64,
}

/// Pickup orders pushed to devices that hand things over (staff counter, keypad).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Orders {
    /// Orders per pickup-capable device per day.
    pub per_device_per_day: u32,
    /// Share of orders picked up before they expire, 0..=1.
    pub pickup_rate: f64,
    /// How long an order is held, in minutes.
    pub hold_minutes: u32,
}

impl Default for Orders {
    fn default() -> Self {
        Orders {
            per_device_per_day: 0,
            pickup_rate: 0.0,
            hold_minutes: 60,
        }
    }
}

/// One signed fleet config layer published mid-run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Hours after the start.
    pub at_hour: f64,
    /// Settings of the fleet layer (e.g. `brand_line`, `qr`).
    pub settings: toml::Table,
}

/// Something that goes wrong, `at_hour` hours after the start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct Fault {
    pub at_hour: f64,
    pub kind: FaultKind,
}

impl TryFrom<toml::Table> for Fault {
    type Error = String;

    // `at_hour` beside the kind's own fields, each refused when unknown (serde's flatten
    // cannot deny unknown fields).
    fn try_from(mut t: toml::Table) -> Result<Fault, String> {
        let at_hour = match t.remove("at_hour") {
            Some(toml::Value::Float(h)) => h,
            Some(toml::Value::Integer(h)) => h as f64,
            Some(other) => return Err(format!("at_hour must be a number, got {other}")),
            None => return Err("missing field `at_hour`".into()),
        };
        let kind = FaultKind::deserialize(toml::Value::Table(t)).map_err(|e| e.to_string())?;
        Ok(Fault { at_hour, kind })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// The devices' network link is cut for `minutes`.
    LinkCut {
        #[serde(default)]
        devices: Vec<String>,
        #[serde(default)]
        scene: Option<Scene>,
        minutes: u32,
    },
    /// The broker stops and comes back after `minutes`.
    BrokerRestart { minutes: u32 },
    /// The data bank stops and comes back after `minutes`.
    DatabankRestart { minutes: u32 },
    /// A real-process agent is killed with SIGKILL and started again after `minutes`.
    Kill9 { device: String, minutes: u32 },
    /// A device's wall clock jumps by `hours` (negative: back).
    ClockJump { device: String, hours: i32 },
    /// A device's dispenser jams on its next attempt.
    DispenserJam { device: String },
    /// A real network fault on a namespaced device's uplink for `minutes`: cut, or slowed
    /// by `delay_ms` with `loss_pct` random loss (tc netem; a thin tbf link where the kernel
    /// lacks netem). Shoppers, on the shop link, are still served.
    LinkFault {
        device: String,
        minutes: u32,
        #[serde(default)]
        cut: bool,
        #[serde(default)]
        delay_ms: u32,
        #[serde(default)]
        loss_pct: u32,
    },
}

/// Why a scenario is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("{origin}: {field}: {reason}")]
    Invalid {
        origin: String,
        field: String,
        reason: String,
    },
}

/// The demo scenario `caidan-sim demo` runs, as shipped in `examples/demo.toml`.
pub const DEMO: &str = include_str!("../examples/demo.toml");

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text, &path.display().to_string())
    }

    pub fn demo() -> Scenario {
        Scenario::parse(DEMO, "examples/demo.toml").expect("the demo scenario is valid")
    }

    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            origin: origin.into(),
            source: Box::new(e),
        })?;
        s.validate(origin)?;
        Ok(s)
    }

    /// Device ids in order, `{scene}-{profile}-g{group}n{n}`, with their group's index.
    pub fn devices_with_groups(&self) -> impl Iterator<Item = (String, usize)> + '_ {
        self.devices.iter().enumerate().flat_map(|(g, group)| {
            (1..=group.count)
                .map(move |n| (format!("{}-{}-g{g}n{n}", group.scene, group.profile), g))
        })
    }

    /// Device ids in order.
    pub fn device_ids(&self) -> Vec<String> {
        self.devices_with_groups().map(|(id, _)| id).collect()
    }

    /// The group a device id belongs to.
    pub fn group_of(&self, device: &str) -> Option<&DeviceGroup> {
        self.devices_with_groups()
            .find(|(id, _)| id == device)
            .map(|(_, g)| &self.devices[g])
    }

    pub fn start_ms(&self) -> Result<i64, String> {
        let tz = jiff::tz::TimeZone::get(&self.time.timezone)
            .map_err(|e| format!("unknown time zone {:?}: {e}", self.time.timezone))?;
        let dt: jiff::civil::DateTime = self
            .time
            .start
            .parse()
            .map_err(|e| format!("{:?} is not YYYY-MM-DDTHH:MM: {e}", self.time.start))?;
        let z = dt
            .to_zoned(tz)
            .map_err(|e| format!("{:?}: {e}", self.time.start))?;
        Ok(z.timestamp().as_millisecond())
    }

    fn validate(&self, origin: &str) -> Result<(), ScenarioError> {
        let bad = |field: &str, reason: String| ScenarioError::Invalid {
            origin: origin.into(),
            field: field.into(),
            reason,
        };
        if self.name.trim().is_empty() || self.name.len() > 100 {
            return Err(bad("name", "1 to 100 characters".into()));
        }
        self.start_ms().map_err(|r| bad("time.start", r))?;
        let t = &self.time;
        if !(1..=24 * 14).contains(&t.hours) {
            return Err(bad(
                "time.hours",
                format!("must be 1..=336, got {}", t.hours),
            ));
        }
        if !(1..=100_000).contains(&t.speed) {
            return Err(bad(
                "time.speed",
                format!("must be 1..=100000, got {}", t.speed),
            ));
        }
        if !(1..=60).contains(&t.step_minutes) {
            return Err(bad(
                "time.step_minutes",
                format!("must be 1..=60, got {}", t.step_minutes),
            ));
        }
        if self.devices.is_empty() {
            return Err(bad("devices", "list at least one group".into()));
        }
        let mut total = 0u32;
        for (i, g) in self.devices.iter().enumerate() {
            let field = |f: &str| format!("devices[{i}].{f}");
            let Some(p) = caidan_profiles::bundled(&g.profile) else {
                return Err(bad(
                    &field("profile"),
                    format!(
                        "no bundled profile {:?}; known: {}",
                        g.profile,
                        caidan_profiles::bundled_names().join(", ")
                    ),
                ));
            };
            if !p.scenes.contains(&g.scene) {
                return Err(bad(
                    &field("scene"),
                    format!("profile {} is not deployed in {}", g.profile, g.scene),
                ));
            }
            if g.region.trim().is_empty() || g.region.len() > 32 {
                return Err(bad(&field("region"), "1 to 32 characters".into()));
            }
            if g.count == 0 {
                return Err(bad(&field("count"), "must be at least 1".into()));
            }
            total = total.saturating_add(g.count);
        }
        if total > MAX_DEVICES {
            return Err(bad(
                "devices",
                format!("{total} devices, at most {MAX_DEVICES}"),
            ));
        }
        let s = &self.shoppers;
        if !(0..=100_000).contains(&s.peak_visits_per_hour) {
            return Err(bad(
                "shoppers.peak_visits_per_hour",
                "must be 0..=100000".into(),
            ));
        }
        if s.pool_per_device == 0 {
            return Err(bad("shoppers.pool_per_device", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&s.redeem_rate) {
            return Err(bad("shoppers.redeem_rate", "must be 0..=1".into()));
        }
        let shares: f64 = s.segments.iter().map(|g| g.share).sum();
        if s.segments.iter().any(|g| !(0.0..=1.0).contains(&g.share)) || shares > 1.0 + 1e-9 {
            return Err(bad(
                "shoppers.segments",
                "shares are 0..=1 and add up to at most 1".into(),
            ));
        }
        let o = &self.orders;
        if !(0.0..=1.0).contains(&o.pickup_rate) {
            return Err(bad("orders.pickup_rate", "must be 0..=1".into()));
        }
        if !(1..=7 * 24 * 60).contains(&o.hold_minutes) {
            return Err(bad("orders.hold_minutes", "must be 1..=10080".into()));
        }
        let hours = f64::from(t.hours);
        if let Some(r) = &self.rollout
            && !(0.0..hours).contains(&r.at_hour)
        {
            return Err(bad("rollout.at_hour", format!("must be within 0..{hours}")));
        }
        let ids: BTreeSet<String> = self.device_ids().into_iter().collect();
        let processes: BTreeSet<String> = self
            .devices_with_groups()
            .filter(|(_, g)| self.devices[*g].process)
            .map(|(id, _)| id)
            .collect();
        let namespaced: BTreeSet<String> = self
            .devices_with_groups()
            .filter(|(_, g)| self.devices[*g].netns)
            .map(|(id, _)| id)
            .collect();
        if let Some(g) = self.devices.iter().position(|g| g.netns && !g.process) {
            return Err(bad(
                &format!("devices[{g}].netns"),
                "needs process = true (a namespace holds a process)".into(),
            ));
        }
        for (i, f) in self.faults.iter().enumerate() {
            let field = |x: &str| format!("faults[{i}].{x}");
            if !(0.0..hours).contains(&f.at_hour) {
                return Err(bad(&field("at_hour"), format!("must be within 0..{hours}")));
            }
            let known = |d: &String| {
                if ids.contains(d) {
                    Ok(())
                } else {
                    Err(bad(
                        &field("device"),
                        format!("no device {d:?} (ids look like {:?})", ids.first()),
                    ))
                }
            };
            match &f.kind {
                FaultKind::LinkCut {
                    devices,
                    scene,
                    minutes,
                } => {
                    devices.iter().try_for_each(known)?;
                    if devices.is_empty() && scene.is_none() {
                        return Err(bad(&field("devices"), "name devices or a scene".into()));
                    }
                    if *minutes == 0 {
                        return Err(bad(&field("minutes"), "must be at least 1".into()));
                    }
                }
                FaultKind::Kill9 { device, .. } => {
                    known(device)?;
                    if !processes.contains(device) {
                        return Err(bad(
                            &field("device"),
                            format!(
                                "{device} runs in process; kill9 needs a group with process = true"
                            ),
                        ));
                    }
                }
                FaultKind::ClockJump { device, hours } => {
                    known(device)?;
                    if *hours == 0 || hours.abs() > 24 * 400 {
                        return Err(bad(
                            &field("hours"),
                            "must be non-zero, at most 9600".into(),
                        ));
                    }
                }
                FaultKind::DispenserJam { device } => {
                    known(device)?;
                    let profile = self.group_of(device).map(|g| g.profile.as_str());
                    if profile
                        .and_then(caidan_profiles::bundled)
                        .is_some_and(|p| p.actuators.dispenser_slots == 0)
                    {
                        return Err(bad(&field("device"), format!("{device} has no dispenser")));
                    }
                }
                FaultKind::LinkFault {
                    device,
                    minutes,
                    cut,
                    delay_ms,
                    loss_pct,
                } => {
                    known(device)?;
                    if !namespaced.contains(device) {
                        return Err(bad(
                            &field("device"),
                            format!(
                                "{device} has no namespace; link_fault needs a group with netns = true"
                            ),
                        ));
                    }
                    if *minutes == 0 {
                        return Err(bad(&field("minutes"), "must be at least 1".into()));
                    }
                    if !*cut && *delay_ms == 0 && *loss_pct == 0 {
                        return Err(bad(
                            &field("cut"),
                            "say cut = true, or a delay_ms or loss_pct".into(),
                        ));
                    }
                    if *delay_ms > 60_000 || *loss_pct > 100 {
                        return Err(bad(
                            &field("delay_ms"),
                            "delay_ms at most 60000, loss_pct at most 100".into(),
                        ));
                    }
                }
                FaultKind::BrokerRestart { .. } | FaultKind::DatabankRestart { .. } => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_scenario_is_valid_and_covers_every_profile_and_scene() {
        let s = Scenario::demo();
        let profiles: BTreeSet<&str> = s.devices.iter().map(|g| g.profile.as_str()).collect();
        for p in caidan_profiles::bundled_names() {
            assert!(profiles.contains(p), "demo lacks {p}");
        }
        let scenes: BTreeSet<Scene> = s.devices.iter().map(|g| g.scene).collect();
        assert_eq!(scenes.len(), Scene::ALL.len());
    }

    #[test]
    fn every_example_scenario_is_valid() {
        for (name, text) in [
            ("demo", DEMO),
            (
                "rush-hour-offline",
                include_str!("../examples/rush-hour-offline.toml"),
            ),
            ("faults", include_str!("../tests/faults.toml")),
        ] {
            Scenario::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn a_bad_scenario_names_the_field() {
        let bad = DEMO.replace("speed = ", "speed = 0 #");
        let e = Scenario::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("x.toml: time.speed: must be 1..=100000, got 0"),
            "{e}"
        );
        let bad = DEMO.replacen("profile = \"vending-machine\"", "profile = \"toaster\"", 1);
        let e = Scenario::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("no bundled profile \"toaster\""), "{e}");
        let bad = format!("{DEMO}\nsurprise = 1\n");
        assert!(
            Scenario::parse(&bad, "x.toml")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn a_link_fault_needs_a_namespaced_process_device() {
        let faults = include_str!("../tests/faults.toml");
        // Without the namespace, the fault has no link to work on.
        let plain = faults.replace("netns = true", "netns = false");
        let e = Scenario::parse(&plain, "x.toml").unwrap_err().to_string();
        assert!(
            e.contains("link_fault needs a group with netns = true"),
            "{e}"
        );
        // A namespace holds a process.
        let in_process = faults.replace("process = true", "process = false");
        let e = Scenario::parse(&in_process, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("netns: needs process = true"), "{e}");
        // A fault that does nothing is refused.
        let idle = faults.replace("cut = true", "cut = false");
        let e = Scenario::parse(&idle, "x.toml").unwrap_err().to_string();
        assert!(
            e.contains("say cut = true, or a delay_ms or loss_pct"),
            "{e}"
        );
    }
}

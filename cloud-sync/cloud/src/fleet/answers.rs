//! Which devices answered one document, and how: each device's answer on `config/ack`, or
//! its retained state already reporting the version, or nothing before its deadline.

use std::collections::BTreeMap;
use std::time::Instant;

use caidan_sync::contract::{ConfigAck, ConfigStatus, LayerId, Name, StateMessage};

/// The document answers are matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub layer: LayerId,
    pub version: u64,
    /// SHA-256 of the payload, hex.
    pub digest: String,
}

impl Expected {
    /// Whether `ack` answers this document: its digest, or its layer, target and version (a
    /// device that could not read the payload still names the digest).
    pub fn matches(&self, ack: &ConfigAck) -> bool {
        ack.digest == self.digest
            || (ack.layer == Some(self.layer.layer)
                && ack.target.as_ref() == Some(&self.layer.target)
                && ack.version == Some(self.version))
    }
}

/// Where one device stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent; no answer yet.
    Waiting {
        deadline: Instant,
    },
    Applied,
    /// Refused, with the device's `code: message`.
    Rejected {
        reason: String,
    },
    /// No answer before the deadline. `late_applied` records an apply that came after, so
    /// the device is still rolled back.
    TimedOut {
        late_applied: bool,
    },
}

/// Counts of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub waiting: usize,
    pub applied: usize,
    pub rejected: usize,
    pub timed_out: usize,
}

impl Tally {
    /// Answered or timed out.
    pub fn finished(&self) -> usize {
        self.applied + self.rejected + self.timed_out
    }

    pub fn failures(&self) -> usize {
        self.rejected + self.timed_out
    }
}

/// The answers to one document from the devices it was sent to.
#[derive(Debug, Clone)]
pub struct Answers {
    pub expected: Expected,
    outcomes: BTreeMap<Name, Outcome>,
}

impl Answers {
    pub fn new(expected: Expected) -> Answers {
        Answers {
            expected,
            outcomes: BTreeMap::new(),
        }
    }

    /// `device` was sent the document and has until `deadline` to answer.
    pub fn sent(&mut self, device: Name, deadline: Instant) {
        self.outcomes.insert(device, Outcome::Waiting { deadline });
    }

    /// A device's answer on `config/ack`; `true` when it answers this document and came
    /// from a device that was sent it. The first answer counts; an apply after a timeout is
    /// noted, not counted.
    pub fn handle_ack(&mut self, device: &str, ack: &ConfigAck) -> bool {
        if !self.expected.matches(ack) {
            return false;
        }
        let reason = ack.reason.as_ref().map_or_else(
            || "rejected without a reason".to_owned(),
            |r| format!("{}: {}", r.code.as_str(), r.message),
        );
        match ack.status {
            ConfigStatus::Applied => self.answer(device, Outcome::Applied),
            ConfigStatus::Rejected => self.answer(device, Outcome::Rejected { reason }),
        }
    }

    /// A device's state: it counts as applied when it reports the version (or a later one)
    /// for the layer, as rejected when its last refusal is this document.
    pub fn handle_state(&mut self, device: &str, state: &StateMessage) -> bool {
        let Some(report) = state.config.as_ref() else {
            return false;
        };
        if report
            .version(&self.expected.layer)
            .is_some_and(|v| v >= self.expected.version)
        {
            return self.answer(device, Outcome::Applied);
        }
        match &report.last_rejection {
            Some(ack) if self.expected.matches(ack) => self.handle_ack(device, ack),
            _ => false,
        }
    }

    fn answer(&mut self, device: &str, outcome: Outcome) -> bool {
        let Some(current) = self.outcomes.get_mut(device) else {
            return false;
        };
        match current {
            Outcome::Waiting { .. } => *current = outcome,
            Outcome::TimedOut { late_applied } if outcome == Outcome::Applied => {
                *late_applied = true
            }
            _ => return false,
        }
        true
    }

    /// Marks devices whose deadline has passed as timed out.
    pub fn expire(&mut self, now: Instant) {
        for outcome in self.outcomes.values_mut() {
            if matches!(outcome, Outcome::Waiting { deadline } if *deadline <= now) {
                *outcome = Outcome::TimedOut {
                    late_applied: false,
                };
            }
        }
    }

    /// The earliest deadline still running.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.outcomes
            .values()
            .filter_map(|o| match o {
                Outcome::Waiting { deadline } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// Whether every one of `devices` has an answer or timed out.
    pub fn all_finished<'a>(&self, devices: impl IntoIterator<Item = &'a Name>) -> bool {
        devices
            .into_iter()
            .all(|d| !matches!(self.outcomes.get(d), Some(Outcome::Waiting { .. }) | None))
    }

    pub fn outcome(&self, device: &str) -> Option<&Outcome> {
        self.outcomes.get(device)
    }

    pub fn outcomes(&self) -> &BTreeMap<Name, Outcome> {
        &self.outcomes
    }

    /// Counts over every device sent.
    pub fn tally(&self) -> Tally {
        tally(self.outcomes.values())
    }

    /// Counts over `devices`.
    pub fn tally_of(&self, devices: &[Name]) -> Tally {
        tally(devices.iter().filter_map(|d| self.outcomes.get(d)))
    }

    /// Devices with this outcome kind, in order.
    pub fn devices(&self, pick: impl Fn(&Outcome) -> bool) -> Vec<Name> {
        self.outcomes
            .iter()
            .filter(|(_, o)| pick(o))
            .map(|(d, _)| d.clone())
            .collect()
    }
}

fn tally<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> Tally {
    let mut t = Tally::default();
    for o in outcomes {
        match o {
            Outcome::Waiting { .. } => t.waiting += 1,
            Outcome::Applied => t.applied += 1,
            Outcome::Rejected { .. } => t.rejected += 1,
            Outcome::TimedOut { .. } => t.timed_out += 1,
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::contract::{ConfigReport, Layer, RejectCode, Rejection};
    use std::time::Duration;

    fn expected() -> Expected {
        Expected {
            layer: LayerId {
                layer: Layer::Fleet,
                target: Name::new("demo").unwrap(),
            },
            version: 5,
            digest: "ab".repeat(32),
        }
    }

    fn ack(version: Option<u64>, status: ConfigStatus, digest: &str) -> ConfigAck {
        ConfigAck {
            layer: version.map(|_| Layer::Fleet),
            target: version.map(|_| Name::new("demo").unwrap()),
            version,
            status,
            reason: (status == ConfigStatus::Rejected)
                .then(|| Rejection::new(RejectCode::Invalid, "qr.rotation_secs out of range")),
            digest: digest.to_owned(),
        }
    }

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn answers_are_matched_and_counted_once() {
        let now = Instant::now();
        let mut a = Answers::new(expected());
        a.sent(name("k1"), now + Duration::from_secs(5));
        a.sent(name("k2"), now + Duration::from_secs(5));
        a.sent(name("k3"), now + Duration::from_secs(1));
        let other = "cd".repeat(32);
        assert!(!a.handle_ack("k1", &ack(Some(4), ConfigStatus::Applied, &other)));
        assert!(
            !a.handle_ack("k9", &ack(Some(5), ConfigStatus::Applied, &other)),
            "not sent"
        );
        assert!(a.handle_ack("k1", &ack(Some(5), ConfigStatus::Applied, &other)));
        // Unreadable payload: only the digest names the document.
        assert!(a.handle_ack("k2", &ack(None, ConfigStatus::Rejected, &"ab".repeat(32))));
        assert!(
            !a.handle_ack("k2", &ack(Some(5), ConfigStatus::Applied, &other)),
            "first answer counts"
        );
        assert_eq!(a.next_deadline(), Some(now + Duration::from_secs(1)));
        a.expire(now + Duration::from_secs(2));
        let t = a.tally();
        assert_eq!(
            (t.applied, t.rejected, t.timed_out, t.waiting),
            (1, 1, 1, 0)
        );
        assert!(a.all_finished(a.outcomes().keys()));
        assert!(
            matches!(a.outcome("k2"), Some(Outcome::Rejected { reason }) if reason.starts_with("invalid: qr"))
        );
        assert!(a.handle_ack("k3", &ack(Some(5), ConfigStatus::Applied, &other)));
        assert_eq!(
            a.outcome("k3"),
            Some(&Outcome::TimedOut { late_applied: true })
        );
        assert_eq!(
            a.tally().timed_out,
            1,
            "a late answer still counts as timed out"
        );
    }

    #[test]
    fn a_state_reporting_the_version_counts_as_applied() {
        let now = Instant::now();
        let mut a = Answers::new(expected());
        a.sent(name("k1"), now + Duration::from_secs(5));
        a.sent(name("k2"), now + Duration::from_secs(5));
        let mut state: StateMessage = serde_json::from_value(serde_json::json!({
            "online": true, "profile": "kiosk", "config_version": 4, "outbox_depth": 0,
            "last_error": null, "config": {"fleet": 4}
        }))
        .unwrap();
        assert!(!a.handle_state("k1", &state));
        state.config = Some(ConfigReport {
            fleet: Some(5),
            ..Default::default()
        });
        assert!(a.handle_state("k1", &state));
        state.config = Some(ConfigReport {
            fleet: Some(4),
            last_rejection: Some(ack(Some(5), ConfigStatus::Rejected, "x")),
            ..Default::default()
        });
        assert!(a.handle_state("k2", &state));
        assert_eq!(a.tally().rejected, 1);
    }
}

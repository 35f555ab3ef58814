//! What a rollout or a rollback printed at its end: who applied, who refused and why, who
//! stayed silent, who was rolled back.

use std::fmt;

use caidan_sync::contract::Name;

use super::abort::Halt;
use super::answers::{Answers, Outcome};
use super::rollout::Rollout;

/// Names listed before the rest are only counted.
const LISTED: usize = 50;

/// The devices that answered one document, by answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerSummary {
    pub applied: Vec<Name>,
    pub rejected: Vec<(Name, String)>,
    /// No answer in time (`late` marks an apply that came after the deadline).
    pub timed_out: Vec<(Name, bool)>,
    pub waiting: Vec<Name>,
}

impl AnswerSummary {
    pub fn of(answers: &Answers) -> AnswerSummary {
        let mut s = AnswerSummary::default();
        for (d, o) in answers.outcomes() {
            match o {
                Outcome::Applied => s.applied.push(d.clone()),
                Outcome::Rejected { reason } => s.rejected.push((d.clone(), reason.clone())),
                Outcome::TimedOut { late_applied } => s.timed_out.push((d.clone(), *late_applied)),
                Outcome::Waiting { .. } => s.waiting.push(d.clone()),
            }
        }
        s
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, indent: &str) -> fmt::Result {
        writeln!(
            f,
            "{indent}applied ({}): {}",
            self.applied.len(),
            names(&self.applied)
        )?;
        writeln!(f, "{indent}rejected ({}):", self.rejected.len())?;
        for (d, why) in self.rejected.iter().take(LISTED) {
            writeln!(f, "{indent}  {d}: {why}")?;
        }
        if self.rejected.len() > LISTED {
            writeln!(f, "{indent}  ... and {} more", self.rejected.len() - LISTED)?;
        }
        let timed: Vec<String> = self
            .timed_out
            .iter()
            .map(|(d, late)| {
                if *late {
                    format!("{d} (applied late)")
                } else {
                    d.to_string()
                }
            })
            .collect();
        writeln!(f, "{indent}timed out ({}): {}", timed.len(), list(&timed))?;
        if !self.waiting.is_empty() {
            writeln!(
                f,
                "{indent}no answer yet ({}): {}",
                self.waiting.len(),
                names(&self.waiting)
            )?;
        }
        Ok(())
    }
}

fn names(v: &[Name]) -> String {
    list(&v.iter().map(|n| n.to_string()).collect::<Vec<_>>())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        return "-".to_owned();
    }
    let mut text = v
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if v.len() > LISTED {
        text.push_str(&format!(", ... and {} more", v.len() - LISTED));
    }
    text
}

/// The previous settings handed back after a halt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackSummary {
    pub version: u64,
    /// The version whose settings came back; `None` when nothing was retained before and the
    /// devices got empty settings.
    pub restored: Option<u64>,
    pub answers: AnswerSummary,
}

/// The end of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSummary {
    pub target: String,
    pub version: u64,
    pub digest: String,
    pub answers: AnswerSummary,
    /// In scope but not sent, because the rollout halted first.
    pub not_sent: Vec<Name>,
    /// Offline when the rollout started: they take the target topic when back.
    pub offline: Vec<Name>,
    pub halt: Option<Halt>,
    pub rollback: Option<RollbackSummary>,
}

impl RolloutSummary {
    pub fn new(
        target: String,
        rollout: &Rollout,
        offline: Vec<Name>,
        halt: Option<Halt>,
        rollback: Option<RollbackSummary>,
    ) -> RolloutSummary {
        let expected = &rollout.answers().expected;
        RolloutSummary {
            target,
            version: expected.version,
            digest: expected.digest.clone(),
            answers: AnswerSummary::of(rollout.answers()),
            not_sent: rollout.not_sent(),
            offline,
            halt,
            rollback,
        }
    }
}

impl fmt::Display for RolloutSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = match &self.halt {
            Some(h) => format!("HALTED: {h}"),
            None => "completed".to_owned(),
        };
        writeln!(
            f,
            "rollout of {} version {} (digest {}): {end}",
            self.target,
            self.version,
            &self.digest[..self.digest.len().min(16)]
        )?;
        self.answers.write(f, "  ")?;
        if !self.not_sent.is_empty() {
            writeln!(
                f,
                "  not sent ({}): {}",
                self.not_sent.len(),
                names(&self.not_sent)
            )?;
        }
        if !self.offline.is_empty() {
            writeln!(
                f,
                "  offline, left to the target topic ({}): {}",
                self.offline.len(),
                names(&self.offline)
            )?;
        }
        if let Some(r) = &self.rollback {
            let from = r.restored.map_or_else(
                || "empty settings".to_owned(),
                |v| format!("the settings of version {v}"),
            );
            writeln!(f, "  rolled back to {from} as version {}:", r.version)?;
            r.answers.write(f, "    ")?;
        }
        Ok(())
    }
}

/// The end of `fleet rollback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackReport {
    pub topic: String,
    pub version: u64,
    pub restored: u64,
    pub digest: String,
    pub answers: AnswerSummary,
    pub offline: Vec<Name>,
}

impl fmt::Display for RollbackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rolled back {} to the settings of version {} as version {} (digest {})",
            self.topic,
            self.restored,
            self.version,
            &self.digest[..self.digest.len().min(16)]
        )?;
        self.answers.write(f, "  ")?;
        if !self.offline.is_empty() {
            writeln!(
                f,
                "  offline ({}): {}",
                self.offline.len(),
                names(&self.offline)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::contract::{ConfigAck, ConfigStatus, Layer, LayerId, RejectCode, Rejection};
    use std::time::{Duration, Instant};

    use super::super::abort::AbortCriteria;
    use super::super::answers::Expected;

    #[test]
    fn a_halted_rollout_says_who_did_what() {
        let devices: Vec<Name> = ["k1", "k2", "k3", "k4"]
            .map(|d| Name::new(d).unwrap())
            .to_vec();
        let expected = Expected {
            layer: LayerId {
                layer: Layer::Fleet,
                target: Name::new("demo").unwrap(),
            },
            version: 4,
            digest: "ab".repeat(32),
        };
        let mut r = Rollout::new(
            &devices,
            &super::super::waves::plan(4, 50, 1),
            expected.clone(),
            AbortCriteria {
                halt_on_percent: 50,
                min_devices: 2,
            },
            Duration::from_secs(1),
        );
        let now = Instant::now();
        assert!(matches!(
            r.poll(now),
            super::super::rollout::Step::Send { .. }
        ));
        let mut ack = ConfigAck {
            layer: Some(Layer::Fleet),
            target: Some(Name::new("demo").unwrap()),
            version: Some(4),
            status: ConfigStatus::Applied,
            reason: None,
            digest: expected.digest.clone(),
        };
        r.handle_ack("k1", &ack);
        ack.status = ConfigStatus::Rejected;
        ack.reason = Some(Rejection::new(RejectCode::Invalid, "bad qr"));
        r.handle_ack("k2", &ack);
        assert!(matches!(
            r.poll(now),
            super::super::rollout::Step::WaveDone { wave: 0, .. }
        ));
        let super::super::rollout::Step::Halt(h) = r.poll(now) else {
            panic!("halts once the canary is reported")
        };
        let s = RolloutSummary::new(
            "fleet".into(),
            &r,
            vec![Name::new("k9").unwrap()],
            Some(h),
            Some(RollbackSummary {
                version: 5,
                restored: Some(3),
                answers: AnswerSummary {
                    applied: vec![Name::new("k1").unwrap()],
                    ..Default::default()
                },
            }),
        );
        let text = s.to_string();
        for want in [
            "rollout of fleet version 4 (digest abababababababab): HALTED: 1 of 2",
            "applied (1): k1",
            "k2: invalid: bad qr",
            "not sent (2): k3, k4",
            "offline, left to the target topic (1): k9",
            "rolled back to the settings of version 3 as version 5:",
            "    applied (1): k1",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}

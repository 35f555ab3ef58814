//! A staged rollout as a state machine without I/O: the caller feeds it answers and states
//! (`handle_*`), asks what to do next with the current time (`poll`), and does the sending
//! and waiting itself.

use std::time::{Duration, Instant};

use caidan_sync::contract::{ConfigAck, Name, StateMessage};

use super::abort::{AbortCriteria, Halt};
use super::answers::{Answers, Expected, Outcome, Tally};
use super::waves::WavePlan;

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Publish the document to each of these devices, then poll again.
    Send { wave: usize, devices: Vec<Name> },
    /// Feed answers until this instant (or until one arrives), then poll again.
    Wait { until: Instant },
    /// Every device of `wave` answered or timed out; `tally` counts that wave only.
    WaveDone { wave: usize, tally: Tally },
    /// The abort criteria were met; nothing more is sent.
    Halt(Halt),
    /// Every wave passed.
    Done,
}

/// One rollout of one document over the devices in scope.
#[derive(Debug, Clone)]
pub struct Rollout {
    waves: Vec<Vec<Name>>,
    /// Waves sent so far.
    sent: usize,
    /// Waves whose end was reported.
    reported: usize,
    answers: Answers,
    criteria: AbortCriteria,
    wave_timeout: Duration,
    halt: Option<Halt>,
}

impl Rollout {
    /// `devices` in the order waves take them (callers sort by device id).
    pub fn new(
        devices: &[Name],
        plan: &WavePlan,
        expected: Expected,
        criteria: AbortCriteria,
        wave_timeout: Duration,
    ) -> Rollout {
        Rollout {
            waves: plan.split(devices),
            sent: 0,
            reported: 0,
            answers: Answers::new(expected),
            criteria,
            wave_timeout,
            halt: None,
        }
    }

    pub fn waves(&self) -> &[Vec<Name>] {
        &self.waves
    }

    pub fn answers(&self) -> &Answers {
        &self.answers
    }

    /// A device's answer on `config/ack`.
    pub fn handle_ack(&mut self, device: &str, ack: &ConfigAck) -> bool {
        self.answers.handle_ack(device, ack)
    }

    /// A device's state message.
    pub fn handle_state(&mut self, device: &str, state: &StateMessage) -> bool {
        self.answers.handle_state(device, state)
    }

    /// What to do at `now`. The threshold is checked on every call, so a rollout halts as
    /// soon as enough failures are in, not only between waves.
    pub fn poll(&mut self, now: Instant) -> Step {
        if let Some(h) = self.halt {
            return Step::Halt(h);
        }
        self.answers.expire(now);
        let current = self.sent.checked_sub(1);
        let finished = current.is_none_or(|w| self.answers.all_finished(&self.waves[w]));
        if let Some(wave) = current.filter(|_| finished && self.reported < self.sent) {
            // Reported before the threshold is checked, so a wave that ends in a halt is
            // still reported whole.
            self.reported = self.sent;
            let tally = self.answers.tally_of(&self.waves[wave]);
            return Step::WaveDone { wave, tally };
        }
        if let Some(h) = self.criteria.check(&self.answers.tally()) {
            self.halt = Some(h);
            return Step::Halt(h);
        }
        if !finished {
            let until = self.answers.next_deadline().unwrap_or(now);
            return Step::Wait { until };
        }
        if self.sent < self.waves.len() {
            let devices = self.waves[self.sent].clone();
            for d in &devices {
                self.answers.sent(d.clone(), now + self.wave_timeout);
            }
            self.sent += 1;
            return Step::Send {
                wave: self.sent - 1,
                devices,
            };
        }
        Step::Done
    }

    /// After a halt: the devices that may run the new document (applied, timed out or not
    /// answered yet), which get the previous settings back.
    pub fn to_roll_back(&self) -> Vec<Name> {
        self.answers
            .devices(|o| !matches!(o, Outcome::Rejected { .. }))
    }

    /// Devices that refused the document (still running what they ran before).
    pub fn rejected(&self) -> Vec<Name> {
        self.answers
            .devices(|o| matches!(o, Outcome::Rejected { .. }))
    }

    /// Devices in scope that were never sent the document.
    pub fn not_sent(&self) -> Vec<Name> {
        self.waves[self.sent..].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::contract::{ConfigStatus, Layer, LayerId, RejectCode, Rejection};

    fn names(n: usize) -> Vec<Name> {
        (0..n)
            .map(|i| Name::new(format!("k{i:02}")).unwrap())
            .collect()
    }

    fn expected() -> Expected {
        Expected {
            layer: LayerId {
                layer: Layer::Fleet,
                target: Name::new("demo").unwrap(),
            },
            version: 2,
            digest: "ab".repeat(32),
        }
    }

    fn answer(ok: bool) -> ConfigAck {
        ConfigAck {
            layer: Some(Layer::Fleet),
            target: Some(Name::new("demo").unwrap()),
            version: Some(2),
            status: if ok {
                ConfigStatus::Applied
            } else {
                ConfigStatus::Rejected
            },
            reason: (!ok).then(|| Rejection::new(RejectCode::InvalidForProfile, "no printer")),
            digest: "ab".repeat(32),
        }
    }

    fn rollout(n: usize, halt_on: u8, min: usize) -> Rollout {
        Rollout::new(
            &names(n),
            &super::super::waves::plan(n, 10, 3),
            expected(),
            AbortCriteria {
                halt_on_percent: halt_on,
                min_devices: min,
            },
            Duration::from_secs(10),
        )
    }

    /// Answers every device of each wave with `ok(device)` until the rollout ends.
    fn drive(r: &mut Rollout, ok: impl Fn(&str) -> Option<bool>) -> (Step, Vec<usize>) {
        let mut now = Instant::now();
        let mut done = Vec::new();
        loop {
            match r.poll(now) {
                Step::Send { devices, .. } => {
                    for d in devices {
                        if let Some(ok) = ok(&d) {
                            r.handle_ack(&d, &answer(ok));
                        }
                    }
                }
                Step::Wait { until } => now = until,
                Step::WaveDone { wave, .. } => done.push(wave),
                end => return (end, done),
            }
        }
    }

    #[test]
    fn clean_rollout_passes_every_wave() {
        let mut r = rollout(10, 20, 1);
        assert_eq!(
            r.waves().iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1, 1, 2, 6]
        );
        let (end, done) = drive(&mut r, |_| Some(true));
        assert_eq!(end, Step::Done);
        assert_eq!(done, vec![0, 1, 2, 3]);
        assert_eq!(r.answers().tally().applied, 10);
        assert!(r.not_sent().is_empty());
    }

    #[test]
    fn a_rejecting_canary_halts_before_the_first_wave_is_sent() {
        let mut r = rollout(10, 50, 1);
        let (end, done) = drive(&mut r, |d| Some(d != "k00"));
        assert!(matches!(end, Step::Halt(h) if h.rejected == 1 && h.finished == 1));
        assert_eq!(
            done,
            vec![0],
            "the canary is reported, then the rollout halts"
        );
        assert_eq!(r.not_sent().len(), 9);
        assert_eq!(r.rejected(), names(1));
        assert!(r.to_roll_back().is_empty());
    }

    #[test]
    fn silent_devices_time_out_and_count_as_failures() {
        // min 4: the canary and the first two waves finish before the threshold applies.
        let mut r = rollout(10, 25, 4);
        let (end, done) = drive(&mut r, |d| (d != "k02").then_some(true));
        let Step::Halt(h) = end else {
            panic!("{end:?}")
        };
        assert_eq!((h.timed_out, h.finished), (1, 4));
        assert_eq!(
            done,
            vec![0, 1, 2],
            "halted when the wave with k02 timed out"
        );
        let back = r.to_roll_back();
        assert_eq!(
            back,
            names(4),
            "the silent one may have applied: rolled back too"
        );
        assert_eq!(r.not_sent(), names(10)[4..].to_vec());
    }

    #[test]
    fn under_the_threshold_failures_do_not_halt() {
        let mut r = rollout(10, 20, 5);
        let (end, _) = drive(&mut r, |d| Some(d != "k05"));
        assert_eq!(end, Step::Done, "1 of 10 is 10%");
        assert_eq!(r.answers().tally().rejected, 1);
    }
}

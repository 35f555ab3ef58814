//! `fleet rollout`: hand a new version of a layer to the devices in scope wave by wave, each
//! on its own topic, watching their answers; halt and roll back when the abort criteria are
//! met, or publish on the target topic when every wave passed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use caidan_sync::contract::Name;

use crate::fleet::abort::AbortCriteria;
use crate::fleet::answers::{Answers, Expected};
use crate::fleet::connection::Connection;
use crate::fleet::document::{self, Signed, next_version};
use crate::fleet::history::{self, Action, Entry, History};
use crate::fleet::rollout::{Rollout, Step};
use crate::fleet::settings::read_settings;
use crate::fleet::snapshot::{self, Incoming, Snapshot};
use crate::fleet::summary::{AnswerSummary, RollbackSummary, RolloutSummary};
use crate::fleet::{FleetError, Target, waves};

use super::{Session, Signing, await_answers, open_and_read};

/// Publishes awaited together: bounds what sits in memory with large documents.
const PUBLISH_CHUNK: usize = 32;

/// What to roll out, and how.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    pub signing: Signing,
    pub file: PathBuf,
    pub canary_percent: u8,
    pub waves: usize,
    pub criteria: AbortCriteria,
    pub wave_timeout: Duration,
}

/// Runs the rollout; the summary says whether it halted (and what was rolled back).
pub async fn rollout(
    session: &Session,
    opts: &RolloutOptions,
) -> Result<RolloutSummary, FleetError> {
    let target = &opts.signing.target;
    let fleet = &session.fleet;
    let layer = target.layer_id(fleet);
    let settings = read_settings(&opts.file, target)?;
    let key = opts.signing.load_key()?;
    let history = History::of(&opts.signing.state_dir, fleet, &layer);
    let entries = history.load()?;
    let trial = document::document(fleet, &layer, u64::MAX, settings.clone(), now());
    document::sign(trial, &key)?;

    let topic = target.topic(fleet);
    let (mut conn, snap) = open_and_read(session, Some(&topic), true).await?;
    let mut run = Run {
        session,
        opts,
        target,
        topic,
        history,
        conn: &mut conn,
    };
    let result = run.go(snap, &entries, settings, &key).await;
    conn.close().await;
    result
}

struct Run<'a> {
    session: &'a Session,
    opts: &'a RolloutOptions,
    target: &'a Target,
    topic: String,
    history: History,
    conn: &'a mut Connection,
}

impl Run<'_> {
    async fn go(
        &mut self,
        snap: Snapshot,
        entries: &[Entry],
        settings: serde_json::Map<String, serde_json::Value>,
        key: &caidan_sync::keys::SecretKey,
    ) -> Result<RolloutSummary, FleetError> {
        let fleet = &self.session.fleet;
        let target = self.target;
        let layer = target.layer_id(fleet);
        let (online, offline): (Vec<_>, Vec<_>) = snap
            .in_scope(target)
            .into_iter()
            .partition(|(_, s)| s.online);
        let online: Vec<Name> = online.into_iter().map(|(d, _)| d.clone()).collect();
        let offline: Vec<Name> = offline.into_iter().map(|(d, _)| d.clone()).collect();
        if online.is_empty() {
            return Err(if offline.is_empty() {
                FleetError::NoDevices {
                    fleet: fleet.to_string(),
                    target: target.to_string(),
                }
            } else {
                FleetError::AllOffline {
                    target: target.to_string(),
                    devices: join(&offline),
                }
            });
        }
        if let Some(why) = &snap.unreadable {
            eprintln!(
                "warning: {} retains something unreadable ({why}); a rollback restores empty settings",
                self.topic
            );
        }
        // A rollback re-signs these settings with this key: say so when someone else signed them.
        let trusted = caidan_sync::keys::TrustedKeys::new(vec![key.public()]);
        if let Some(r) = snap
            .retained
            .as_ref()
            .filter(|r| r.envelope.verify(&trusted).is_err())
        {
            eprintln!(
                "warning: version {} on {} is not signed by this operator key; a rollback would re-sign its settings",
                r.document.version, self.topic
            );
        }
        let version = next_version([
            snap.retained_version(),
            snap.highest_reported(fleet, target),
            history::max_version(entries),
        ]);
        let signed = document::sign(
            document::document(fleet, &layer, version, settings, now()),
            key,
        )?;
        let plan = waves::plan(online.len(), self.opts.canary_percent, self.opts.waves);
        println!(
            "rolling out {target} version {version} (digest {}) to {} device(s) in waves of {:?}",
            short(&signed.digest),
            online.len(),
            plan.sizes
        );
        if !offline.is_empty() {
            println!("offline, left to the target topic: {}", join(&offline));
        }
        let expected = Expected {
            layer: layer.clone(),
            version,
            digest: signed.digest.clone(),
        };
        let mut ro = Rollout::new(
            &online,
            &plan,
            expected,
            self.opts.criteria,
            self.opts.wave_timeout,
        );
        let waves = ro.waves().len();
        let halt = loop {
            match ro.poll(Instant::now()) {
                Step::Send { wave, devices } => {
                    println!("{}: sending to {}", wave_name(wave, waves), join(&devices));
                    self.publish_all(&devices, &signed.bytes).await?;
                }
                Step::Wait { until } => match self.next(until).await? {
                    Some(Incoming::Ack(d, a)) => {
                        ro.handle_ack(&d, &a);
                    }
                    Some(Incoming::State(d, s)) => {
                        ro.handle_state(&d, &s);
                    }
                    _ => {}
                },
                Step::WaveDone { wave, tally } => println!(
                    "{}: {} applied, {} rejected, {} timed out",
                    wave_name(wave, waves),
                    tally.applied,
                    tally.rejected,
                    tally.timed_out
                ),
                Step::Halt(h) => break Some(h),
                Step::Done => break None,
            }
        };
        let Some(halt) = halt else {
            if target.uses_rollout_topics() {
                self.conn
                    .publish_acked(&self.topic, signed.bytes.clone())
                    .await?;
                println!("published version {version} retained on {}", self.topic);
                let sent: Vec<Name> = ro.answers().outcomes().keys().cloned().collect();
                self.publish_all(&sent, &[]).await?;
                println!("cleared {} rollout topic(s)", sent.len());
            }
            self.record(Action::Rollout, &signed)?;
            let name = target.to_string();
            return Ok(RolloutSummary::new(name, &ro, offline, None, None));
        };

        println!("halting: {halt}");
        self.record(Action::RolloutHalted, &signed)?;
        // A device layer's topic is the target topic itself: it gets the old settings back
        // whatever the device answered.
        let recipients = if target.uses_rollout_topics() {
            ro.to_roll_back()
        } else {
            ro.answers().outcomes().keys().cloned().collect()
        };
        let mut rollback = None;
        if recipients.is_empty() {
            println!("no device may run version {version}; nothing to roll back");
        } else {
            let previous = snap.retained.as_ref().map(|r| &r.document);
            let restore = document::restoring(previous, fleet, &layer, version + 1, now());
            let restore = document::sign(restore, key)?;
            println!(
                "rolling back {} to {} as version {}",
                join(&recipients),
                previous.map_or_else(
                    || "empty settings".to_owned(),
                    |d| format!("version {}", d.version)
                ),
                version + 1
            );
            let answers = self.roll_back(&mut ro, &recipients, &restore).await?;
            let action = if target.uses_rollout_topics() {
                Action::RolloutRollback
            } else {
                Action::Rollback
            };
            self.record(action, &restore)?;
            if target.uses_rollout_topics() {
                // Confirmed ones run the old settings for good; the rest keep theirs retained.
                let mut clear = ro.rejected();
                clear.extend(AnswerSummary::of(&answers).applied);
                self.publish_all(&clear, &[]).await?;
            }
            rollback = Some(RollbackSummary {
                version: version + 1,
                restored: previous.map(|d| d.version),
                answers: AnswerSummary::of(&answers),
            });
        }
        let name = target.to_string();
        Ok(RolloutSummary::new(
            name,
            &ro,
            offline,
            Some(halt),
            rollback,
        ))
    }

    /// Sends `restore` to `recipients` and waits up to a wave timeout for their answers,
    /// noting late answers to the rolled-out version on the way.
    async fn roll_back(
        &mut self,
        ro: &mut Rollout,
        recipients: &[Name],
        restore: &Signed,
    ) -> Result<Answers, FleetError> {
        let mut answers = Answers::new(Expected {
            layer: self.target.layer_id(&self.session.fleet),
            version: restore.document.version,
            digest: restore.digest.clone(),
        });
        let deadline = Instant::now() + self.opts.wave_timeout;
        for d in recipients {
            answers.sent(d.clone(), deadline);
        }
        self.publish_all(recipients, &restore.bytes).await?;
        let fleet = &self.session.fleet;
        await_answers(self.conn, fleet, &mut answers, recipients, |late| {
            if let Incoming::Ack(d, a) = late {
                ro.handle_ack(&d, &a);
            }
        })
        .await?;
        Ok(answers)
    }

    /// Publishes `payload` retained on each device's wave topic (empty clears it), a chunk
    /// at a time, and waits for every PUBACK.
    async fn publish_all(&self, devices: &[Name], payload: &[u8]) -> Result<(), FleetError> {
        let fleet = &self.session.fleet;
        for chunk in devices.chunks(PUBLISH_CHUNK) {
            let mut pending = Vec::with_capacity(chunk.len());
            for d in chunk {
                let topic = self.target.wave_topic(fleet, d);
                pending.push(self.conn.publish(&topic, payload.to_vec()).await?);
            }
            for p in pending {
                p.acked().await?;
            }
        }
        Ok(())
    }

    /// The next message of the fleet before `until`, read.
    async fn next(&mut self, until: Instant) -> Result<Option<Incoming>, FleetError> {
        let m = self
            .conn
            .next(tokio::time::Instant::from_std(until))
            .await?;
        Ok(m.map(|m| snapshot::read(&self.session.fleet, &m)))
    }

    fn record(&self, action: Action, signed: &Signed) -> Result<(), FleetError> {
        self.history
            .append(&Entry::new(action, signed, now()))
            .map_err(|e| FleetError::NotRecorded {
                what: format!("version {}", signed.document.version),
                source: Box::new(e),
            })
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn wave_name(wave: usize, waves: usize) -> String {
    match wave {
        0 => "canary".to_owned(),
        w => format!("wave {w}/{}", waves - 1),
    }
}

fn join(devices: &[Name]) -> String {
    devices
        .iter()
        .map(Name::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(16)]
}

//! `fleet rollback`: publish the settings that ran before (or those of a chosen version) again,
//! re-signed above every version seen, on the target topic, and report who answered.

use std::time::{Duration, Instant};

use caidan_sync::contract::Name;

use crate::fleet::FleetError;
use crate::fleet::answers::{Answers, Expected};
use crate::fleet::connection::Connection;
use crate::fleet::document::{self, next_version};
use crate::fleet::history::{self, Action, Entry, History};
use crate::fleet::snapshot::Snapshot;
use crate::fleet::summary::{AnswerSummary, RollbackReport};

use super::{Session, Signing, await_answers, open_and_read};

/// What to roll back.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub signing: Signing,
    /// Restore this version's settings instead of the one before the retained document.
    pub to_version: Option<u64>,
    /// How long to wait for the devices in scope to answer.
    pub wait: Duration,
}

/// Rolls the target back; the report lists which devices answered.
pub async fn rollback(
    session: &Session,
    opts: &RollbackOptions,
) -> Result<RollbackReport, FleetError> {
    let key = opts.signing.load_key()?;
    let target = &opts.signing.target;
    let layer = target.layer_id(&session.fleet);
    let history = History::of(&opts.signing.state_dir, &session.fleet, &layer);
    let entries = history.load()?;
    let topic = target.topic(&session.fleet);
    let (mut conn, snap) = open_and_read(session, Some(&topic), true).await?;
    let result = go(session, opts, &mut conn, &snap, &history, &entries, &key).await;
    conn.close().await;
    result
}

async fn go(
    session: &Session,
    opts: &RollbackOptions,
    conn: &mut Connection,
    snap: &Snapshot,
    history: &History,
    entries: &[Entry],
    key: &caidan_sync::keys::SecretKey,
) -> Result<RollbackReport, FleetError> {
    let fleet = &session.fleet;
    let target = &opts.signing.target;
    let layer = target.layer_id(fleet);
    let topic = target.topic(fleet);
    let source = match opts.to_version {
        Some(version) => {
            history::find(entries, version).ok_or_else(|| FleetError::NoSuchVersion {
                target: target.to_string(),
                version,
                path: history.path.clone(),
            })?
        }
        None => {
            let current = match (&snap.retained, &snap.unreadable) {
                (Some(r), _) => r.document.version,
                (None, Some(reason)) => {
                    return Err(FleetError::UnreadableRetained {
                        topic,
                        reason: reason.clone(),
                    });
                }
                (None, None) => return Err(FleetError::NothingRetained { topic }),
            };
            history::previous(entries, current).ok_or_else(|| FleetError::NoPrevious {
                target: target.to_string(),
                current,
                path: history.path.clone(),
            })?
        }
    };
    let bad_history = |reason: String| FleetError::History {
        path: history.path.clone(),
        reason,
    };
    let previous = source.document().map_err(bad_history)?;
    if previous.layer_id() != layer || previous.fleet != *fleet {
        return Err(bad_history(format!(
            "version {} is a document of {} in fleet {}, not of {target}",
            previous.version,
            previous.layer_id(),
            previous.fleet
        )));
    }
    let version = next_version([
        snap.retained_version(),
        snap.highest_reported(fleet, target),
        history::max_version(entries),
    ]);
    let now = jiff::Timestamp::now();
    let doc = document::restoring(Some(&previous), fleet, &layer, version, now);
    let signed = document::sign(doc, key)?;
    conn.publish_acked(&topic, signed.bytes.clone()).await?;
    history
        .append(&Entry::new(Action::Rollback, &signed, now))
        .map_err(|e| FleetError::NotRecorded {
            what: format!("version {version} on {topic}"),
            source: Box::new(e),
        })?;
    println!(
        "published the settings of version {} as version {version} on {topic}; waiting up to {} s for answers",
        previous.version,
        opts.wait.as_secs()
    );

    let (online, offline): (Vec<_>, Vec<_>) = snap
        .in_scope(target)
        .into_iter()
        .partition(|(_, s)| s.online);
    let online: Vec<Name> = online.into_iter().map(|(d, _)| d.clone()).collect();
    let mut answers = Answers::new(Expected {
        layer,
        version,
        digest: signed.digest.clone(),
    });
    let deadline = Instant::now() + opts.wait;
    for d in &online {
        answers.sent(d.clone(), deadline);
    }
    await_answers(conn, fleet, &mut answers, &online, |_| {}).await?;
    Ok(RollbackReport {
        topic,
        version,
        restored: previous.version,
        digest: signed.digest,
        answers: AnswerSummary::of(&answers),
        offline: offline.into_iter().map(|(d, _)| d.clone()).collect(),
    })
}

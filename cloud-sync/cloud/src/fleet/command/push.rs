//! `fleet push`: sign a config file as the next version of a layer and publish it retained
//! on the layer's topic.

use std::path::PathBuf;

use crate::fleet::FleetError;
use crate::fleet::document::{self, next_version};
use crate::fleet::history::{self, Action, Entry, History};
use crate::fleet::settings::read_settings;

use super::{Session, Signing, open_and_read};

/// What to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub signing: Signing,
    pub file: PathBuf,
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub topic: String,
    pub version: u64,
    pub digest: String,
}

/// Checks the file and the key, numbers the document above everything seen, signs and
/// publishes it, and records it in the history. Any bad input stops it before it connects.
pub async fn push(session: &Session, opts: &PushOptions) -> Result<PushReport, FleetError> {
    let target = &opts.signing.target;
    let fleet = &session.fleet;
    let layer = target.layer_id(fleet);
    let settings = read_settings(&opts.file, target)?;
    let key = opts.signing.load_key()?;
    let history = History::of(&opts.signing.state_dir, fleet, &layer);
    let entries = history.load()?;
    // The widest version there is: if this fits, the real one does.
    let trial = document::document(
        fleet,
        &layer,
        u64::MAX,
        settings.clone(),
        jiff::Timestamp::now(),
    );
    document::sign(trial, &key)?;

    let topic = target.topic(fleet);
    let (conn, snapshot) = open_and_read(session, Some(&topic), false).await?;
    if let Some(why) = &snapshot.unreadable {
        eprintln!(
            "warning: {topic} retains something unreadable ({why}); numbering above it anyway"
        );
    }
    let version = next_version([
        snapshot.retained_version(),
        snapshot.highest_reported(fleet, target),
        history::max_version(&entries),
    ]);
    let now = jiff::Timestamp::now();
    let signed = document::sign(
        document::document(fleet, &layer, version, settings, now),
        &key,
    )?;
    conn.publish_acked(&topic, signed.bytes.clone()).await?;
    conn.close().await;
    history
        .append(&Entry::new(Action::Push, &signed, now))
        .map_err(|e| FleetError::NotRecorded {
            what: format!("version {version} on {topic}"),
            source: Box::new(e),
        })?;
    Ok(PushReport {
        topic,
        version,
        digest: signed.digest,
    })
}

//! Each operator command over a broker connection: read what is retained, decide with the
//! pure parts, publish, report.

mod push;
mod rollback;
mod rollout;
mod status;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::contract::Name;
use caidan_sync::keys::SecretKey;
use caidan_sync::tls::TlsFiles;
use caidan_sync::topics;

use super::answers::Answers;
use super::connection::Connection;
use super::snapshot::{self, Incoming, Snapshot};
use super::{FleetError, Target};

pub use push::{PushOptions, PushReport, push};
pub use rollback::{RollbackOptions, rollback};
pub use rollout::{RolloutOptions, rollout};
pub use status::status;

/// Retained messages are taken as complete once none came for this long.
pub const QUIET: Duration = Duration::from_millis(500);
/// The longest a command reads retained messages, however busy the broker.
pub const COLLECT_LIMIT: Duration = Duration::from_secs(10);

/// Which fleet, on which broker.
#[derive(Debug, Clone)]
pub struct Session {
    pub fleet: Name,
    pub broker: BrokerUrl,
    pub tls: TlsFiles,
}

/// What every signing command takes: the target, the operator key and the history folder.
#[derive(Debug, Clone)]
pub struct Signing {
    pub target: Target,
    pub key: PathBuf,
    pub state_dir: PathBuf,
}

impl Signing {
    pub fn load_key(&self) -> Result<SecretKey, FleetError> {
        Ok(SecretKey::load(&self.key)?)
    }
}

/// Every device's state filter of `fleet`.
fn states_filter(fleet: &str) -> String {
    format!("{}/{fleet}/d/+/state", topics::ROOT)
}

/// Every device's answers filter of `fleet`.
fn acks_filter(fleet: &str) -> String {
    format!("{}/{fleet}/d/+/config/ack", topics::ROOT)
}

/// Connects, subscribes to every device's state, `target_topic` and, with `acks`, every
/// device's answers, and reads what is retained.
async fn open_and_read(
    session: &Session,
    target_topic: Option<&str>,
    acks: bool,
) -> Result<(Connection, Snapshot), FleetError> {
    let mut conn = Connection::open(&session.broker, &session.tls).await?;
    let mut filters = vec![states_filter(&session.fleet)];
    filters.extend(target_topic.map(str::to_owned));
    if acks {
        filters.push(acks_filter(&session.fleet));
    }
    conn.subscribe(&filters).await?;
    let messages = conn.collect(QUIET, COLLECT_LIMIT).await?;
    let snapshot = Snapshot::build(&session.fleet, target_topic, &messages);
    for why in &snapshot.garbled {
        eprintln!("warning: skipped {why}");
    }
    Ok((conn, snapshot))
}

/// Feeds the fleet's messages to `answers` until every one of `devices` answered or timed
/// out; what is not an answer to its document goes to `other`.
async fn await_answers(
    conn: &mut Connection,
    fleet: &str,
    answers: &mut Answers,
    devices: &[Name],
    mut other: impl FnMut(Incoming),
) -> Result<(), FleetError> {
    loop {
        let now = Instant::now();
        answers.expire(now);
        if answers.all_finished(devices) {
            return Ok(());
        }
        let until = answers.next_deadline().unwrap_or(now);
        let Some(m) = conn.next(tokio::time::Instant::from_std(until)).await? else {
            continue;
        };
        let incoming = snapshot::read(fleet, &m);
        let used = match &incoming {
            Incoming::Ack(d, a) => answers.handle_ack(d, a),
            Incoming::State(d, s) => answers.handle_state(d, s),
            _ => false,
        };
        if !used {
            other(incoming);
        }
    }
}

//! The operator's own record of what was signed for each layer, one JSON line per document
//! under `--state DIR/{fleet}/`, so a rollback can find the settings that ran before.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use caidan_sync::contract::{ConfigDocument, Envelope, Layer, LayerId, Name};
use serde::{Deserialize, Serialize};

use super::FleetError;
use super::document::Signed;

/// What was done with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Published to the target topic by `fleet push`.
    Push,
    /// Published to the target topic when every wave of a rollout passed.
    Rollout,
    /// Sent to some devices by a rollout that halted; never on the target topic.
    RolloutHalted,
    /// Sent to the devices of a halted rollout to restore what they ran; never on the target
    /// topic (a device layer's rollback is, and is recorded as [`Action::Rollback`]).
    RolloutRollback,
    /// Published to the target topic by `fleet rollback` (or a halted device rollout).
    Rollback,
}

impl Action {
    /// Whether the document was published on the target topic.
    fn on_target(self) -> bool {
        !matches!(self, Action::RolloutHalted | Action::RolloutRollback)
    }
}

/// One signed document of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub action: Action,
    pub version: u64,
    pub digest: String,
    /// When it was recorded.
    pub at: jiff::Timestamp,
    pub envelope: Envelope,
}

impl Entry {
    pub fn new(action: Action, signed: &Signed, at: jiff::Timestamp) -> Entry {
        Entry {
            action,
            version: signed.document.version,
            digest: signed.digest.clone(),
            at,
            envelope: signed.envelope.clone(),
        }
    }

    /// The document the envelope carries.
    pub fn document(&self) -> Result<ConfigDocument, String> {
        super::document::document_of(&self.envelope)
    }
}

/// The history file of one layer.
#[derive(Debug, Clone)]
pub struct History {
    pub path: PathBuf,
}

impl History {
    /// `{dir}/{fleet}/fleet.jsonl`, `group-{name}.jsonl` or `device-{id}.jsonl`; names are
    /// `[a-z0-9_-]`, so they are safe file names.
    pub fn of(dir: &Path, fleet: &Name, layer: &LayerId) -> History {
        let file = match layer.layer {
            Layer::Fleet => "fleet.jsonl".to_owned(),
            l => format!("{}-{}.jsonl", l.as_str(), layer.target),
        };
        History {
            path: dir.join(fleet.as_str()).join(file),
        }
    }

    /// Every entry, oldest first; none when the file does not exist yet.
    pub fn load(&self) -> Result<Vec<Entry>, FleetError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e.to_string())),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| self.error(format!("line {}: {e}", i + 1)))
            })
            .collect()
    }

    /// Appends `entry` and syncs the file.
    pub fn append(&self, entry: &Entry) -> Result<(), FleetError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e.to_string()))?;
        }
        let mut line = serde_json::to_vec(entry).expect("a history entry always serialises");
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(&line)?;
                f.sync_all()
            })
            .map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, reason: String) -> FleetError {
        FleetError::History {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The highest version recorded.
pub fn max_version(entries: &[Entry]) -> Option<u64> {
    entries.iter().map(|e| e.version).max()
}

/// The newest document that was on the target topic before version `current`.
pub fn previous(entries: &[Entry], current: u64) -> Option<&Entry> {
    entries
        .iter()
        .filter(|e| e.action.on_target() && e.version < current)
        .max_by_key(|e| e.version)
}

/// The document of `version`.
pub fn find(entries: &[Entry], version: u64) -> Option<&Entry> {
    entries.iter().rev().find(|e| e.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::keys::SecretKey;

    fn signed(version: u64, line: &str) -> Signed {
        let fleet = Name::new("demo").unwrap();
        let layer = LayerId {
            layer: Layer::Fleet,
            target: fleet.clone(),
        };
        let settings = serde_json::json!({ "brand_line": line })
            .as_object()
            .unwrap()
            .clone();
        let doc = super::super::document::document(
            &fleet,
            &layer,
            version,
            settings,
            jiff::Timestamp::now(),
        );
        super::super::document::sign(doc, &SecretKey::generate()).unwrap()
    }

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = Name::new("demo").unwrap();
        let group = LayerId {
            layer: Layer::Group,
            target: Name::new("north").unwrap(),
        };
        let h = History::of(dir.path(), &fleet, &group);
        assert!(h.path.ends_with("demo/group-north.jsonl"));
        assert!(h.load().unwrap().is_empty());
        let now = jiff::Timestamp::now();
        h.append(&Entry::new(Action::Push, &signed(1, "a"), now))
            .unwrap();
        h.append(&Entry::new(Action::Rollout, &signed(2, "b"), now))
            .unwrap();
        let entries = h.load().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1].document().unwrap().settings["brand_line"],
            serde_json::json!("b")
        );
        std::fs::write(&h.path, "{not json\n").unwrap();
        assert!(h.load().unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn previous_skips_what_never_was_on_the_target_topic() {
        let now = jiff::Timestamp::now();
        let entries = vec![
            Entry::new(Action::Push, &signed(1, "a"), now),
            Entry::new(Action::Push, &signed(2, "b"), now),
            Entry::new(Action::RolloutHalted, &signed(3, "c"), now),
            Entry::new(Action::RolloutRollback, &signed(4, "b"), now),
            Entry::new(Action::Rollout, &signed(5, "d"), now),
        ];
        assert_eq!(previous(&entries, 5).unwrap().version, 2);
        assert_eq!(previous(&entries, 2).unwrap().version, 1);
        assert!(previous(&entries, 1).is_none());
        assert_eq!(max_version(&entries), Some(5));
        assert_eq!(find(&entries, 3).unwrap().action, Action::RolloutHalted);
        assert!(find(&entries, 6).is_none());
    }
}

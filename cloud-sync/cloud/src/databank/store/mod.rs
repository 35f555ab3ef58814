//! The data bank's SQLite store: events keyed by id, sequence progress per device and
//! epoch, device state and location, and the latest stock levels ([`stock`]). One
//! [`Store`] is owned by each ingester's writer thread.
//!
//! Several ingesters may share one store file (one MQTT share group, batches of one device
//! spread over them). Each transaction therefore starts with `BEGIN IMMEDIATE` (writers queue
//! on the write lock via `busy_timeout` instead of failing on a read-to-write upgrade) and
//! reads the sequence progress of the devices it touches from the database inside that
//! transaction: no progress is cached across transactions, so another ingester's commits are
//! always merged, never overwritten, and every acknowledgement is the store's true highest
//! contiguous seq as of the commit.

pub mod dead_letter;
pub mod pg;
mod progress;
mod schema;
pub mod stock;

use std::path::Path;
use std::sync::Arc;

use caidan_sync::clock::Clock;
use caidan_sync::contract::{EventData, Name, Received, StateMessage};
use caidan_sync::topics;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;
use uuid::Uuid;

use super::checkpoint::Checkpointer;
use dead_letter::DeadLetter;
use progress::{ProgressKey, Touched};

pub use schema::{BUSY_TIMEOUT, PAGE_SIZE, SCHEMA_VERSION, open_connection};

/// What went wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("store schema version {found} is newer than this build ({supported})")]
    NewerSchema { found: i64, supported: i64 },
    #[error("refused: {0}")]
    Refused(String),
    #[error("corrupt sequence progress for {device}/{epoch}: {reason}")]
    CorruptProgress {
        device: String,
        epoch: String,
        reason: String,
    },
}

impl StoreError {
    /// Whether the work itself is refused (a constraint or a value SQLite will not take):
    /// applying it again would fail again, so it is set aside rather than retried.
    pub fn is_poison(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::ConstraintViolation | rusqlite::ErrorCode::TooBig | rusqlite::ErrorCode::TypeMismatch)
        ) || matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(_))
        ) || self.pg_class().is_some_and(|c| {
            // Data exceptions, integrity violations, program limits (a value too large).
            matches!(c, "22" | "23" | "54")
        })
    }

    /// The SQLSTATE class of a PostgreSQL error the server sent.
    fn pg_class(&self) -> Option<&str> {
        match self {
            StoreError::Postgres(e) => e.code().map(|c| &c.code()[..2]),
            _ => None,
        }
    }

    /// Whether another writer on the same file held the write lock past [`BUSY_TIMEOUT`]:
    /// nothing was written, and the same work may be applied again.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ) || matches!(
            self,
            StoreError::Postgres(e) if e.code().is_some_and(|c| matches!(c.code(), "40001" | "40P01" | "55P03"))
        )
    }
}

/// A store the writer thread commits work to.
pub trait Apply: Send + 'static {
    /// Applies all `work` in one transaction: nothing of it is visible, or acknowledged,
    /// unless the whole group commits.
    fn apply(&mut self, work: &[Work]) -> Result<Vec<Outcome>, StoreError>;
}

impl Apply for Store {
    fn apply(&mut self, work: &[Work]) -> Result<Vec<Outcome>, StoreError> {
        Store::apply(self, work)
    }
}

/// Keeps a device's latest state: `$1` fleet, `$2` device, `$3` online, `$4` the state
/// JSON, `$5` its stock (kept when absent), `$6` received ms, `$7`/`$8` lat/lon. The same
/// text runs on both stores: SQLite numbers `$N` parameters by first appearance.
pub(crate) const DEVICE_UPSERT: &str = "INSERT INTO devices
      (fleet, device, online, state, stock, updated_ms, lat, lon)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (fleet, device) DO UPDATE SET online = excluded.online,
      state = excluded.state,
      stock = COALESCE(excluded.stock, devices.stock),
      updated_ms = excluded.updated_ms,
      lat = excluded.lat, lon = excluded.lon";

/// The columns a state message is kept in.
pub(crate) struct StateRow {
    pub text: String,
    pub stock: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

impl StateRow {
    pub(crate) fn of(state: &StateMessage) -> StateRow {
        // The location is the state's own: the last will carries it too, so a message
        // without one means the config no longer says where.
        let (lat, lon) = state.location.map(|l| (l.lat, l.lon)).unzip();
        StateRow {
            text: serde_json::to_string(state).unwrap_or_default(),
            stock: state
                .stock
                .as_ref()
                .and_then(|s| serde_json::to_string(s).ok()),
            lat,
            lon,
        }
    }
}

/// A device's last state message as stored.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub fleet: String,
    pub device: String,
    pub online: Option<bool>,
    pub state: String,
    pub stock: Option<String>,
    pub updated_ms: i64,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// A device epoch's highest contiguous seq as stored.
#[derive(Debug, Clone)]
pub struct EpochRow {
    pub fleet: String,
    pub device: String,
    pub epoch: String,
    pub seq: i64,
}

/// Every device's last state, and every epoch's progress (oldest update first).
pub fn devices(c: &Connection) -> rusqlite::Result<(Vec<DeviceRow>, Vec<EpochRow>)> {
    let devices = c
        .prepare_cached(
            "SELECT fleet, device, online, state, stock, updated_ms, lat, lon FROM devices
             ORDER BY fleet, device",
        )?
        .query_map([], |r| {
            Ok(DeviceRow {
                fleet: r.get(0)?,
                device: r.get(1)?,
                online: r.get(2)?,
                state: r.get(3)?,
                stock: r.get(4)?,
                updated_ms: r.get(5)?,
                lat: r.get(6)?,
                lon: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let epochs = c
        .prepare_cached(
            "SELECT fleet, device, epoch, contiguous FROM seq_progress ORDER BY updated_ms",
        )?
        .query_map([], |r| {
            Ok(EpochRow {
                fleet: r.get(0)?,
                device: r.get(1)?,
                epoch: r.get(2)?,
                seq: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((devices, epochs))
}

/// The config answers of a device: (epoch, seq, time_ms, body), oldest first.
pub fn config_events(
    c: &Connection,
    fleet: &str,
    device: &str,
) -> rusqlite::Result<Vec<(String, i64, i64, String)>> {
    c.prepare_cached(
        "SELECT epoch, seq, time_ms, body FROM events
         WHERE fleet = ?1 AND device = ?2 AND type = ?3 ORDER BY time_ms, seq",
    )?
    .query_map(
        params![
            fleet,
            device,
            caidan_sync::contract::EventType::Config.as_str()
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?
    .collect()
}

/// One unit of work for the writer.
#[derive(Debug, Clone)]
pub enum Work {
    /// A checked event batch of one device.
    Batch(Vec<Received>),
    /// A retained `state` message of one device.
    State {
        fleet: Name,
        device: Name,
        state: Box<StateMessage>,
    },
    /// A message that cannot be stored or acknowledged, kept with its reason.
    DeadLetter(DeadLetter),
}

/// The result of one committed [`Work`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub inserted: u64,
    pub duplicates: u64,
    /// What to acknowledge: one per (device, epoch) in the batch.
    pub acks: Vec<Progress>,
    /// Events refused because their id or seq was already stored elsewhere (kept as dead
    /// letters, their seqs not counted as received), by reason.
    pub conflicts: Vec<&'static str>,
    /// Dead letters this work kept, by reason.
    pub dead_letters: Vec<&'static str>,
}

/// A device epoch's highest contiguous seq as of a commit: what an acknowledgement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub fleet: String,
    pub device: String,
    pub epoch: Uuid,
    pub seq: u64,
}

/// Page cache of the writer's connection, in KiB: the data bank runs on a server, and a
/// cache that holds the hot index and table pages saves a read per insert.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// WAL size (pages) at which the writer checkpoints by itself; normally the background
/// [`Checkpointer`] keeps the WAL well below it.
const BACKSTOP_CHECKPOINT_PAGES: i64 = 16_384;

/// SQLite store (WAL, `synchronous=FULL`).
pub struct Store {
    conn: Connection,
    checkpointer: Checkpointer,
    clock: Arc<dyn Clock>,
}

/// A UUID as the store keeps it (hyphenated, lower case), without allocating.
fn uuid_text<'b>(id: &Uuid, buf: &'b mut [u8; 36]) -> &'b str {
    id.as_hyphenated().encode_lower(buf)
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let conn = open_connection(path, true)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES)?;
        let checkpointer = Checkpointer::spawn(path)?;
        Ok(Store {
            conn,
            checkpointer,
            clock,
        })
    }

    /// Applies all `work` in one transaction; nothing is visible (or acknowledged) unless
    /// the whole group commits.
    ///
    /// The transaction is `IMMEDIATE`: it holds the write lock from its first statement, so
    /// the progress rows it reads are the latest committed by any ingester on this file, and
    /// nobody else can commit until it has merged and written them back.
    pub fn apply(&mut self, work: &[Work]) -> Result<Vec<Outcome>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = self.clock.now_ms();
        // Progress of every (fleet, device, epoch) this transaction touches, read once from
        // the database under the write lock, then merged with this group's seqs.
        let mut touched = Touched::default();
        let mut outcomes = Vec::with_capacity(work.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO events
                 (id, fleet, device, epoch, seq, type, time_ms, brand, offer, scene, shopper,
                  count, brands, body, order_state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            for item in work {
                let mut outcome = Outcome::default();
                match item {
                    Work::Batch(events) => {
                        apply_batch(&tx, &mut insert, &mut touched, events, now, &mut outcome)?;
                    }
                    Work::State {
                        fleet,
                        device,
                        state,
                    } => {
                        let StateRow {
                            text,
                            stock,
                            lat,
                            lon,
                        } = StateRow::of(state);
                        tx.execute(
                            DEVICE_UPSERT,
                            params![
                                fleet.as_str(),
                                device.as_str(),
                                state.online,
                                text,
                                stock,
                                now,
                                lat,
                                lon
                            ],
                        )?;
                    }
                    Work::DeadLetter(letter) => {
                        dead_letter::put(&tx, letter, now)?;
                        outcome.dead_letters.push(letter.reason);
                    }
                }
                outcomes.push(outcome);
            }
            touched.save(&tx, now)?;
        }
        tx.commit()?;
        self.checkpointer.nudge();
        Ok(outcomes)
    }

    /// Number of stored events (for tests and the operator).
    pub fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))?
            as u64)
    }
}

/// Stores one batch: each event once by id, bound to its (device, epoch, seq). An event
/// whose id is stored at another seq, or whose seq is stored under another id, is set
/// aside as a dead letter and its seq is not counted as received. Each newly stored event's
/// stock levels and time are kept as [`stock`] says.
fn apply_batch(
    tx: &rusqlite::Transaction<'_>,
    insert: &mut rusqlite::CachedStatement<'_>,
    touched: &mut Touched,
    events: &[Received],
    now: i64,
    outcome: &mut Outcome,
) -> Result<(), StoreError> {
    let mut epochs: Vec<ProgressKey> = Vec::new();
    // Latest device time of the events newly stored, per entry of `epochs`.
    let mut latest: Vec<Option<i64>> = Vec::new();
    let (mut id_buf, mut epoch_buf) = ([0u8; 36], [0u8; 36]);
    // A batch is one device's, nearly always of one epoch: the progress is looked up once
    // per run of one key.
    let mut run: Option<(&str, &str, uuid::Uuid)> = None;
    let mut progress = None;
    let mut slot = 0;
    for r in events {
        let e = &r.event;
        let id = uuid_text(&e.id, &mut id_buf);
        let epoch = uuid_text(&e.epoch, &mut epoch_buf);
        let key = (e.fleet.as_str(), e.device.as_str(), e.epoch);
        if run != Some(key) {
            let owned: ProgressKey = (key.0.to_owned(), key.1.to_owned(), epoch.to_owned());
            slot = match epochs.iter().position(|k| *k == owned) {
                Some(i) => i,
                None => {
                    epochs.push(owned);
                    latest.push(None);
                    epochs.len() - 1
                }
            };
            run = Some(key);
            progress = None;
        }
        let p = match progress.take() {
            Some(p) => p,
            None => touched.progress_mut(tx, (key.0, key.1, epoch))?,
        };
        let conflict = if p.contains(e.seq) {
            // Seen before: a redelivery of the same record, or another id at that seq.
            let stored: Option<(String, String, String, i64)> = tx
                .prepare_cached("SELECT fleet, device, epoch, seq FROM events WHERE id = ?1")?
                .query_row([id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .optional()?;
            let same = stored.is_some_and(|(f, d, ep, sq)| {
                f == key.0 && d == key.1 && ep == epoch && sq == e.seq as i64
            });
            (!same).then_some("seq_conflict")
        } else {
            let brands = match &e.data {
                EventData::Impression(_) | EventData::Scan(_) => {
                    serde_json::to_string(e.data.brands()).ok()
                }
                _ => None,
            };
            let count = matches!(e.data, EventData::Impression(_)).then(|| e.data.count() as i64);
            let n = insert.execute(params![
                id,
                key.0,
                key.1,
                epoch,
                e.seq as i64,
                e.event_type().as_str(),
                e.time.as_millisecond(),
                e.brand().map(|b| b.as_str()),
                e.offer().map(|o| o.as_str()),
                e.data.scene().as_str(),
                e.data.shopper().map(|s| s.as_str()),
                count,
                brands,
                r.raw,
                match &e.data {
                    EventData::Order(d) => Some(d.state.as_str()),
                    _ => None,
                }
            ])?;
            if n == 1 {
                stock::record(tx, e, now)?;
                let time = e.time.as_millisecond();
                latest[slot] = Some(latest[slot].map_or(time, |t| t.max(time)));
            }
            // Not inserted although its seq is new: the id is stored at another place.
            (n == 0).then_some("id_conflict")
        };
        match conflict {
            None => {
                if p.record(e.seq) {
                    outcome.inserted += 1;
                } else {
                    outcome.duplicates += 1;
                }
            }
            Some(reason) => {
                let topic = topics::events(key.0, key.1);
                let detail = format!("event {} at seq {}", e.id, e.seq);
                dead_letter::put(
                    tx,
                    &DeadLetter::new(&topic, reason, &detail, r.raw.as_bytes()),
                    now,
                )?;
                outcome.conflicts.push(reason);
            }
        }
        progress = Some(p);
    }
    for (key, time) in epochs.iter().zip(latest) {
        if let Some(time) = time {
            stock::note_epoch_time(tx, &key.0, &key.1, &key.2, time)?;
        }
    }
    for key in epochs {
        let seq = touched.contiguous(&key);
        let epoch = key.2.parse().expect("stored from a UUID");
        let (fleet, device, _) = key;
        outcome.acks.push(Progress {
            fleet,
            device,
            epoch,
            seq,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

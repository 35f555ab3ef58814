//! The data bank's PostgreSQL store: the same work, outcomes and promises as the SQLite
//! [`Store`](super::Store), for a platform that outgrows one file.
//!
//! Several ingesters (data bank processes) may write one database at once. Each
//! transaction first locks the sequence progress rows of every (fleet, device, epoch) it
//! touches, in one sorted order (`INSERT ... ON CONFLICT DO NOTHING`, then
//! `SELECT ... FOR UPDATE`), so two ingesters handed batches of the same device serialize
//! on that device and never deadlock; everything else a batch writes (its events, stock
//! levels, epoch times and funnel cells) is keyed by the device too. Events go in with one
//! multi-row insert per batch (`ON CONFLICT DO NOTHING`, `RETURNING` the ids stored), and
//! the funnel rollups ([`schema`]) are updated in the same transaction. Acknowledgements
//! are computed from the locked progress, after the commit, as on SQLite.

mod prepared;
pub mod read;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use caidan_sync::clock::Clock;
use caidan_sync::contract::{Event, EventData, Received, Stage};
use caidan_sync::topics;
use postgres::{Client, NoTls};
use uuid::Uuid;

use self::prepared::{Prepared, Tx};
use super::dead_letter::{self, DeadLetter};
use super::{Apply, DEVICE_UPSERT, Outcome, Progress, StateRow, StoreError, Work};
use crate::databank::funnel::{self, Fact};
use crate::databank::seqs::SeqProgress;

/// `(fleet, device, epoch)`.
type Key = (String, String, String);
/// Where an event is stored: `(fleet, device, epoch, seq)`.
type Place = (String, String, String, i64);
/// `(brand, dim, grain, start_ms, key)`: one funnel rollup cell (see [`schema`]).
type Cell = (String, i16, i16, i64, String);

/// The `dim` of a funnel cell: which grouping its key is of.
pub mod dim {
    pub const TOUCHPOINT: i16 = 0;
    pub const SCENE: i16 = 1;
    pub const OFFER: i16 = 2;
    /// The brand's whole funnel (key `''`).
    pub const ALL: i16 = 3;
}

/// The `grain` of a funnel cell.
pub mod grain {
    pub const HOUR: i16 = 0;
    pub const DAY: i16 = 1;
}

/// One UTC day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// How often the writer makes partitions ahead and applies retention.
const MAINTENANCE_EVERY_MS: i64 = 3_600_000;

/// Options of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://` or `postgresql://` connection URL (libpq key=value strings work too).
    pub url: String,
    /// Days of raw events kept (by the day in their id); `None` keeps them all. The funnel
    /// rollups are kept regardless.
    pub retention_days: Option<u32>,
}

/// One ingester's connection to the PostgreSQL store.
pub struct PgStore {
    client: Client,
    options: PgOptions,
    clock: Arc<dyn Clock>,
    /// Days known to have a partition (or known to live in the default one).
    days: BTreeSet<i32>,
    last_maintenance_ms: Option<i64>,
    /// The writer's statements, prepared on `client`.
    prepared: Prepared,
}

/// Connects to `url`.
pub fn connect(url: &str) -> Result<Client, StoreError> {
    Ok(Client::connect(url, NoTls)?)
}

/// Memory each funnel query may use to count distinct loyal shoppers before spilling to disk.
const READ_WORK_MEM: &str = "64MB";

/// The configuration of the API's read connections: `url` with more `work_mem`, so a
/// Loyalty count over months stays in memory, and without parallel workers: a funnel
/// query reads a few thousand cells, and starting workers for it cost more than the scan
/// (7.5 ms serial against 18.6 ms with two workers for a week by touchpoint over 10M
/// events), while the API's concurrent requests are the parallelism that pays.
pub fn reader_config(url: &str) -> Result<postgres::Config, StoreError> {
    let mut config: postgres::Config = url.parse()?;
    let options = format!(
        "{} -c work_mem={READ_WORK_MEM} -c max_parallel_workers_per_gather=0",
        config.get_options().unwrap_or_default()
    );
    config.options(options.trim());
    Ok(config)
}

/// A read connection as the API makes them.
pub fn connect_reader(url: &str) -> Result<Client, StoreError> {
    Ok(reader_config(url)?.connect(NoTls)?)
}

impl PgStore {
    /// Connects, creates or migrates the schema, and makes today's partitions.
    pub fn open(options: PgOptions, clock: Arc<dyn Clock>) -> Result<PgStore, StoreError> {
        let mut client = connect(&options.url)?;
        schema::migrate(&mut client)?;
        let mut store = PgStore {
            client,
            options,
            clock,
            days: BTreeSet::new(),
            last_maintenance_ms: None,
            prepared: Prepared::default(),
        };
        store.maintain()?;
        Ok(store)
    }

    /// Makes the partitions of the days around now and drops those past retention.
    pub fn maintain(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.days = schema::day_partitions(&mut self.client)?;
        let (_, ahead) = schema::partition_window(now, self.options.retention_days);
        let today = ahead - 2;
        for day in today..=ahead {
            self.ensure_day(day, now)?;
        }
        if let Some(days) = self.options.retention_days {
            let dropped = schema::apply_retention(&mut self.client, now, days)?;
            if !dropped.is_empty() {
                tracing::info!(?dropped, retention_days = days, "event partitions dropped");
            }
            self.days = schema::day_partitions(&mut self.client)?;
        }
        self.last_maintenance_ms = Some(now);
        Ok(())
    }

    fn ensure_day(&mut self, day: i32, now_ms: i64) -> Result<(), StoreError> {
        let (from, to) = schema::partition_window(now_ms, self.options.retention_days);
        if self.days.contains(&day) || day < from || day > to {
            return Ok(());
        }
        if !schema::create_partition(&mut self.client, day)? {
            tracing::warn!(
                day,
                "events of this day already in the default partition: kept there"
            );
        }
        self.days.insert(day);
        Ok(())
    }

    /// Number of stored events.
    pub fn event_count(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client
            .query_one("SELECT count(*) FROM events", &[])?
            .get(0);
        Ok(n as u64)
    }

    /// Applies all `work` in one transaction, as [`super::Store::apply`] does.
    pub fn apply(&mut self, work: &[Work]) -> Result<Vec<Outcome>, StoreError> {
        if self.client.is_closed() {
            tracing::warn!("PostgreSQL connection lost: reconnecting");
            self.client = connect(&self.options.url)?;
            self.prepared = Prepared::default();
        }
        let now = self.clock.now_ms();
        if self
            .last_maintenance_ms
            .is_none_or(|t| now - t >= MAINTENANCE_EVERY_MS)
        {
            self.maintain()?;
        }
        let days: BTreeSet<i32> = batches(work)
            .flatten()
            .map(|r| schema::id_day(&r.event.id))
            .collect();
        for day in days {
            self.ensure_day(day, now)?;
        }
        let mut tx = Tx::new(self.client.transaction()?, &mut self.prepared);
        let mut progress = lock_progress(&mut tx, work, now)?;
        let mut rollup = Rollup::default();
        let mut latest = BTreeMap::new();
        let expired = self
            .options
            .retention_days
            .map(|days| schema::retention_cutoff(now, days));
        let mut outcomes = Vec::with_capacity(work.len());
        for item in work {
            let mut outcome = Outcome::default();
            match item {
                Work::Batch(events) => {
                    let mut batch = BatchTx {
                        tx: &mut tx,
                        progress: &mut progress,
                        rollup: &mut rollup,
                        latest: &mut latest,
                        now,
                        expired,
                    };
                    batch.apply(events, &mut outcome)?;
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
                        &[
                            &fleet.as_str(),
                            &device.as_str(),
                            &state.online,
                            &text,
                            &stock,
                            &now,
                            &lat,
                            &lon,
                        ],
                    )?;
                }
                Work::DeadLetter(letter) => {
                    put_dead_letter(&mut tx, letter, now)?;
                    outcome.dead_letters.push(letter.reason);
                }
            }
            outcomes.push(outcome);
        }
        save_progress(&mut tx, &progress, now)?;
        save_epoch_times(&mut tx, &latest)?;
        rollup.save(&mut tx)?;
        tx.commit()?;
        Ok(outcomes)
    }
}

impl Apply for PgStore {
    fn apply(&mut self, work: &[Work]) -> Result<Vec<Outcome>, StoreError> {
        PgStore::apply(self, work)
    }
}

fn batches(work: &[Work]) -> impl Iterator<Item = &Vec<Received>> {
    work.iter().filter_map(|w| match w {
        Work::Batch(events) => Some(events),
        _ => None,
    })
}

fn key_of(e: &Event) -> Key {
    (
        e.fleet.to_string(),
        e.device.to_string(),
        e.epoch.to_string(),
    )
}

/// Locks (creating when new) the progress rows of every key in `work`, in sorted order,
/// and reads them.
fn lock_progress(
    tx: &mut Tx<'_>,
    work: &[Work],
    now: i64,
) -> Result<HashMap<Key, SeqProgress>, StoreError> {
    let keys: BTreeSet<Key> = batches(work).flatten().map(|r| key_of(&r.event)).collect();
    let mut progress = HashMap::with_capacity(keys.len());
    if keys.is_empty() {
        return Ok(progress);
    }
    let (f, d, e) = columns3(&keys);
    tx.execute(
        "INSERT INTO seq_progress (fleet, device, epoch, contiguous, beyond, updated_ms)
         SELECT f, d, e, 0, '[]', $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS t(f, d, e)
         ORDER BY f, d, e
         ON CONFLICT DO NOTHING",
        &[&f, &d, &e, &now],
    )?;
    let rows = tx.query(
        "SELECT fleet, device, epoch, contiguous, beyond FROM seq_progress
         WHERE (fleet, device, epoch) IN
           (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
         ORDER BY fleet, device, epoch
         FOR UPDATE",
        &[&f, &d, &e],
    )?;
    for r in rows {
        let key: Key = (r.get(0), r.get(1), r.get(2));
        let beyond: &str = r.get(4);
        let ranges: Vec<(u64, u64)> =
            serde_json::from_str(beyond).map_err(|e| StoreError::CorruptProgress {
                device: key.1.clone(),
                epoch: key.2.clone(),
                reason: e.to_string(),
            })?;
        let contiguous: i64 = r.get(3);
        progress.insert(key, SeqProgress::from_parts(contiguous as u64, ranges));
    }
    Ok(progress)
}

/// The fleet, device and epoch columns of `keys`, as parameter arrays.
fn columns3<'k>(
    keys: impl IntoIterator<Item = &'k Key>,
) -> (Vec<&'k str>, Vec<&'k str>, Vec<&'k str>) {
    let mut cols = (Vec::new(), Vec::new(), Vec::new());
    for (f, d, e) in keys {
        cols.0.push(f.as_str());
        cols.1.push(d.as_str());
        cols.2.push(e.as_str());
    }
    cols
}

fn save_progress(
    tx: &mut Tx<'_>,
    progress: &HashMap<Key, SeqProgress>,
    now: i64,
) -> Result<(), StoreError> {
    if progress.is_empty() {
        return Ok(());
    }
    let sorted: BTreeMap<&Key, &SeqProgress> = progress.iter().collect();
    let (mut f, mut d, mut e, mut c, mut b) = (vec![], vec![], vec![], vec![], vec![]);
    for (k, p) in sorted {
        f.push(k.0.as_str());
        d.push(k.1.as_str());
        e.push(k.2.as_str());
        c.push(p.contiguous() as i64);
        b.push(serde_json::to_string(&p.ranges()).unwrap_or_else(|_| "[]".into()));
    }
    tx.execute(
        "UPDATE seq_progress s SET contiguous = t.c, beyond = t.b, updated_ms = $6
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[]) AS t(f, d, e, c, b)
         WHERE s.fleet = t.f AND s.device = t.d AND s.epoch = t.e",
        &[&f, &d, &e, &c, &b, &now],
    )?;
    Ok(())
}

/// Moves each (fleet, device, epoch)'s latest event time forward, in one statement for the
/// group, in key order as the progress rows.
fn save_epoch_times(tx: &mut Tx<'_>, latest: &BTreeMap<Key, i64>) -> Result<(), StoreError> {
    if latest.is_empty() {
        return Ok(());
    }
    let (f, d, e) = columns3(latest.keys());
    let times: Vec<i64> = latest.values().copied().collect();
    tx.execute(
        "INSERT INTO device_epochs (fleet, device, epoch, last_time_ms)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[])
         ON CONFLICT (fleet, device, epoch) DO UPDATE SET
           last_time_ms = GREATEST(device_epochs.last_time_ms, excluded.last_time_ms)",
        &[&f, &d, &e, &times],
    )?;
    Ok(())
}

/// What one batch is, seq by seq, before it is written.
enum Plan {
    /// A seq not recorded before: inserted unless its id is stored elsewhere.
    New,
    /// A seq already recorded (before this batch, or earlier in it).
    Seen,
}

/// What storing one batch works on, inside the group's transaction.
struct BatchTx<'a, 't> {
    tx: &'a mut Tx<'t>,
    progress: &'a mut HashMap<Key, SeqProgress>,
    rollup: &'a mut Rollup,
    /// The latest time of an event stored per (fleet, device, epoch), over the group.
    latest: &'a mut BTreeMap<Key, i64>,
    now: i64,
    /// Days before this one were dropped by retention: a recorded seq whose event is of
    /// such a day cannot be compared with what was stored, and counts as a redelivery.
    expired: Option<i32>,
}

impl BatchTx<'_, '_> {
    /// Stores one batch as [`super::Store`] does: each event once by id, bound to its
    /// (device, epoch, seq); an id stored at another place or another id at a recorded seq is
    /// set aside and its seq not counted.
    fn apply(&mut self, events: &[Received], outcome: &mut Outcome) -> Result<(), StoreError> {
        let (tx, progress, rollup, latest, now) = (
            &mut *self.tx,
            &mut *self.progress,
            &mut *self.rollup,
            &mut *self.latest,
            self.now,
        );
        let mut plans = Vec::with_capacity(events.len());
        let mut pending: HashMap<(Key, u64), Uuid> = HashMap::new();
        let mut keys: Vec<Key> = Vec::new();
        for r in events {
            let e = &r.event;
            let key = key_of(e);
            if !keys.contains(&key) {
                keys.push(key.clone());
            }
            let recorded = progress.get(&key).is_some_and(|p| p.contains(e.seq));
            let slot = (key, e.seq);
            if recorded || pending.contains_key(&slot) {
                plans.push(Plan::Seen);
            } else {
                pending.insert(slot, e.id);
                plans.push(Plan::New);
            }
        }
        let stored = insert_events(
            tx,
            events
                .iter()
                .zip(&plans)
                .filter(|(_, p)| matches!(p, Plan::New))
                .map(|(r, _)| r),
        )?;
        let seen_ids: Vec<&Received> = events
            .iter()
            .zip(&plans)
            .filter(|(r, p)| matches!(p, Plan::Seen) && !stored.contains(&r.event.id))
            .map(|(r, _)| r)
            .collect();
        let places = stored_places(tx, &seen_ids)?;
        // An id two new seqs of the batch carry is stored once, for the first of them.
        let mut claimed: HashSet<Uuid> = HashSet::new();
        for (r, plan) in events.iter().zip(&plans) {
            let e = &r.event;
            let key = key_of(e);
            let conflict = match plan {
                Plan::New if stored.contains(&e.id) && claimed.insert(e.id) => {
                    record_stock(tx, e, now)?;
                    let t = e.time.as_millisecond();
                    let entry = latest.entry(key.clone()).or_insert(t);
                    *entry = (*entry).max(t);
                    rollup.add(e);
                    None
                }
                Plan::New => Some("id_conflict"),
                Plan::Seen => {
                    let here = (key.0.as_str(), key.1.as_str(), key.2.as_str(), e.seq as i64);
                    let same_place = places
                        .get(&e.id)
                        .is_some_and(|p| (p.0.as_str(), p.1.as_str(), p.2.as_str(), p.3) == here);
                    let same_pending =
                        pending.get(&(key.clone(), e.seq)) == Some(&e.id) && stored.contains(&e.id);
                    let dropped = !places.contains_key(&e.id)
                        && self.expired.is_some_and(|d| schema::id_day(&e.id) < d);
                    (!(same_place || same_pending || dropped)).then_some("seq_conflict")
                }
            };
            match conflict {
                None => {
                    let p = progress.entry(key).or_default();
                    if p.record(e.seq) {
                        outcome.inserted += 1;
                    } else {
                        outcome.duplicates += 1;
                    }
                }
                Some(reason) => {
                    let topic = topics::events(&key.0, &key.1);
                    let detail = format!("event {} at seq {}", e.id, e.seq);
                    let letter = DeadLetter::new(&topic, reason, &detail, r.raw.as_bytes());
                    put_dead_letter(tx, &letter, now)?;
                    outcome.conflicts.push(reason);
                }
            }
        }
        for key in keys {
            let seq = progress.get(&key).map_or(0, SeqProgress::contiguous);
            let epoch = key.2.parse().expect("made from a UUID");
            outcome.acks.push(Progress {
                fleet: key.0,
                device: key.1,
                epoch,
                seq,
            });
        }
        Ok(())
    }
}

/// Inserts `events` in one statement; returns the ids it stored (the others were there).
fn insert_events<'a>(
    tx: &mut Tx<'_>,
    events: impl Iterator<Item = &'a Received>,
) -> Result<HashSet<Uuid>, StoreError> {
    #[derive(Default)]
    struct Cols<'a> {
        id: Vec<Uuid>,
        day: Vec<i32>,
        fleet: Vec<&'a str>,
        device: Vec<&'a str>,
        epoch: Vec<String>,
        seq: Vec<i64>,
        ty: Vec<&'static str>,
        time: Vec<i64>,
        brand: Vec<Option<&'a str>>,
        offer: Vec<Option<&'a str>>,
        scene: Vec<&'static str>,
        shopper: Vec<Option<&'a str>>,
        count: Vec<Option<i64>>,
        brands: Vec<Option<String>>,
        body: Vec<&'a str>,
        order_state: Vec<Option<&'static str>>,
    }
    let mut c = Cols::default();
    for r in events {
        let e = &r.event;
        c.id.push(e.id);
        c.day.push(schema::id_day(&e.id));
        c.fleet.push(e.fleet.as_str());
        c.device.push(e.device.as_str());
        c.epoch.push(e.epoch.to_string());
        c.seq.push(e.seq as i64);
        c.ty.push(e.event_type().as_str());
        c.time.push(e.time.as_millisecond());
        c.brand.push(e.brand().map(|b| b.as_str()));
        c.offer.push(e.offer().map(|o| o.as_str()));
        c.scene.push(e.data.scene().as_str());
        c.shopper.push(e.data.shopper().map(|s| s.as_str()));
        c.count
            .push(matches!(e.data, EventData::Impression(_)).then(|| e.data.count() as i64));
        c.brands.push(match &e.data {
            EventData::Impression(_) | EventData::Scan(_) => {
                serde_json::to_string(e.data.brands()).ok()
            }
            _ => None,
        });
        c.body.push(r.raw.as_str());
        c.order_state.push(match &e.data {
            EventData::Order(d) => Some(d.state.as_str()),
            _ => None,
        });
    }
    if c.id.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = tx.query(
        "INSERT INTO events
           (id, id_day, fleet, device, epoch, seq, type, time_ms, brand, offer, scene, shopper,
            count, brands, body, order_state)
         SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::text[],
           $6::int8[], $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[],
           $12::text[], $13::int8[], $14::text[], $15::text[], $16::text[])
         ON CONFLICT DO NOTHING
         RETURNING id",
        &[
            &c.id,
            &c.day,
            &c.fleet,
            &c.device,
            &c.epoch,
            &c.seq,
            &c.ty,
            &c.time,
            &c.brand,
            &c.offer,
            &c.scene,
            &c.shopper,
            &c.count,
            &c.brands,
            &c.body,
            &c.order_state,
        ],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Where each of `events`' ids is stored: (fleet, device, epoch, seq).
fn stored_places(
    tx: &mut Tx<'_>,
    events: &[&Received],
) -> Result<HashMap<Uuid, Place>, StoreError> {
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = events.iter().map(|r| r.event.id).collect();
    let days: Vec<i32> = ids.iter().map(schema::id_day).collect();
    let rows = tx.query(
        "SELECT e.id, e.fleet, e.device, e.epoch, e.seq FROM events e
         JOIN unnest($1::int4[], $2::uuid[]) AS t(day, id) ON e.id_day = t.day AND e.id = t.id",
        &[&days, &ids],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect())
}

/// The stock levels an order or stock event carries, kept as [`super::stock`] says.
fn record_stock(tx: &mut Tx<'_>, event: &Event, now_ms: i64) -> Result<(), StoreError> {
    let levels = super::stock::carried(event);
    let epoch = event.epoch.to_string();
    for l in levels.iter() {
        tx.execute(
            "INSERT INTO stock_levels
               (fleet, device, epoch, sku, on_hand, reserved, seq, time_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (fleet, device, epoch, sku) DO UPDATE SET
               on_hand = excluded.on_hand, reserved = excluded.reserved, seq = excluded.seq,
               time_ms = excluded.time_ms, updated_ms = excluded.updated_ms
             WHERE excluded.seq > stock_levels.seq",
            &[
                &event.fleet.as_str(),
                &event.device.as_str(),
                &epoch,
                &l.sku.as_str(),
                &i64::from(l.on_hand),
                &i64::from(l.reserved),
                &(event.seq as i64),
                &event.time.as_millisecond(),
                &now_ms,
            ],
        )?;
    }
    Ok(())
}

/// PostgreSQL text cannot hold NUL: a payload head or detail that has one keeps U+FFFD.
fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}").into()
    } else {
        s.into()
    }
}

/// Keeps `letter` once per (topic, payload), counting repeats; bounds the table.
fn put_dead_letter(tx: &mut Tx<'_>, letter: &DeadLetter, now_ms: i64) -> Result<(), StoreError> {
    let row = tx.query_one(
        "INSERT INTO dead_letters (topic, reason, detail, size, sha256, head, first_ms, last_ms, count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 1)
         ON CONFLICT (topic, sha256) DO UPDATE SET count = dead_letters.count + 1,
           last_ms = excluded.last_ms
         RETURNING id, count",
        &[
            &pg_text(&letter.topic),
            &letter.reason,
            &pg_text(&letter.detail),
            &(letter.size as i64),
            &letter.sha256,
            &pg_text(&letter.head),
            &now_ms,
        ],
    )?;
    let (id, count): (i64, i64) = (row.get(0), row.get(1));
    if count == 1 && id % 100 == 0 {
        tx.execute(
            "DELETE FROM dead_letters WHERE id IN (
               SELECT id FROM dead_letters ORDER BY last_ms DESC OFFSET $1)",
            &[&dead_letter::MAX_ROWS],
        )?;
    }
    Ok(())
}

/// Cell keys as parameter arrays.
#[derive(Default)]
struct CellCols<'a> {
    brand: Vec<&'a str>,
    dim: Vec<i16>,
    grain: Vec<i16>,
    start: Vec<i64>,
    key: Vec<&'a str>,
}

impl<'a> CellCols<'a> {
    fn push(&mut self, cell: &'a Cell) {
        self.brand.push(&cell.0);
        self.dim.push(cell.1);
        self.grain.push(cell.2);
        self.start.push(cell.3);
        self.key.push(&cell.4);
    }
}

/// A shopper's row of one grouping: (brand, dim, key, shopper).
type ShopperRow = (String, i16, String, String);

/// The funnel cells one transaction adds to.
#[derive(Default)]
struct Rollup {
    stages: BTreeMap<Cell, [i64; 3]>,
    /// The purchase hours added per shopper row, one element per purchase.
    purchases: BTreeMap<ShopperRow, Vec<i64>>,
}

impl Rollup {
    fn add(&mut self, e: &Event) {
        let fact = Fact::of(e);
        let hour = funnel::hour_of(fact.time_ms);
        let day = fact.time_ms.div_euclid(DAY_MS) * DAY_MS;
        let keys = [
            (dim::TOUCHPOINT, fact.device.as_str()),
            (dim::SCENE, fact.scene.as_deref().unwrap_or_default()),
            (dim::OFFER, fact.offer.as_deref().unwrap_or_default()),
            (dim::ALL, ""),
        ];
        for (brand, stage, amount) in funnel::contributions(&fact) {
            let i = match stage {
                Stage::Awareness => 0,
                Stage::Interest => 1,
                Stage::Purchase => 2,
            };
            for (d, key) in keys {
                if let (Stage::Purchase, Some(s)) = (stage, &fact.shopper) {
                    let row = (brand.to_owned(), d, key.to_owned(), s.clone());
                    let added = self.purchases.entry(row).or_default();
                    added.extend(std::iter::repeat_n(hour, amount as usize));
                }
                for (g, start) in [(grain::HOUR, hour), (grain::DAY, day)] {
                    let cell: Cell = (brand.to_owned(), d, g, start, key.to_owned());
                    self.stages.entry(cell).or_default()[i] += amount as i64;
                }
            }
        }
    }

    /// Adds the cells to the rollup tables, in key order: cells are shared by devices,
    /// and one order for every ingester means their row locks never deadlock.
    fn save(self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        if !self.stages.is_empty() {
            let mut c = CellCols::default();
            let (mut a, mut i, mut p) = (vec![], vec![], vec![]);
            for (cell, n) in &self.stages {
                c.push(cell);
                a.push(n[0]);
                i.push(n[1]);
                p.push(n[2]);
            }
            tx.execute(
                "INSERT INTO funnel_cells AS f
                   (brand, dim, grain, start_ms, key, awareness, interest, purchase)
                 SELECT * FROM unnest($1::text[], $2::int2[], $3::int2[], $4::int8[], $5::text[],
                   $6::int8[], $7::int8[], $8::int8[])
                 ON CONFLICT (brand, dim, grain, start_ms, key) DO UPDATE SET
                   awareness = f.awareness + excluded.awareness,
                   interest = f.interest + excluded.interest,
                   purchase = f.purchase + excluded.purchase",
                &[&c.brand, &c.dim, &c.grain, &c.start, &c.key, &a, &i, &p],
            )?;
        }
        if !self.purchases.is_empty() {
            self.save_purchases(tx)?;
        }
        Ok(())
    }

    /// Merges the purchase hours into each shopper row's sorted list: one parameter row per
    /// purchase, grouped and sorted by PostgreSQL, rows upserted in key order as the cells.
    fn save_purchases(&self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let n: usize = self.purchases.values().map(Vec::len).sum();
        let (mut brand, mut dim, mut key, mut shopper, mut hour) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((b, d, k, s), hours) in &self.purchases {
            for h in hours {
                brand.push(b.as_str());
                dim.push(*d);
                key.push(k.as_str());
                shopper.push(s.as_str());
                hour.push(*h);
            }
        }
        tx.execute(
            "INSERT INTO funnel_shopper_hours AS f (brand, dim, key, shopper, hours, last_ms)
             SELECT b, d, k, s, array_agg(h ORDER BY h), max(h)
             FROM unnest($1::text[], $2::int2[], $3::text[], $4::text[], $5::int8[])
               AS n(b, d, k, s, h)
             GROUP BY b, d, k, s
             ORDER BY b, d, k, s
             ON CONFLICT (brand, dim, key, shopper) DO UPDATE SET
               hours = (SELECT array_agg(x ORDER BY x) FROM unnest(f.hours || excluded.hours) AS x),
               last_ms = greatest(f.last_ms, excluded.last_ms)",
            &[&brand, &dim, &key, &shopper, &hour],
        )?;
        Ok(())
    }
}

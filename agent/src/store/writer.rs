//! The single writer: owns the SQLite connection on its own thread and commits every
//! request that arrived together in one transaction (group commit). Each caller is answered
//! only after the commit that holds its fact.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{Notify, mpsc, oneshot};

use super::budget::{Fill, FillWatch, StorageBudget};
use super::ops::Dispensing;
use super::ops::{self, Now};
use super::schema::{self, Access};
use super::state::{Identity, State};
use super::{
    ClaimOutcome, ClaimRefusal, HoldView, ImportSummary, NotOpen, OrderOutcome, PickupRefusal,
    RedeemRefusal, Redemption, StockAfter, StockUpdate, StoreError,
};
use crate::catalogue::Catalogue;
use crate::inventory::{StockRefusal, Units};
use crate::pickup::CodeHash;
use caidan_sync::clock::Clock;
use caidan_sync::contract::{ClaimCode, ShopperHash};
use caidan_sync::contract::{DispenseFault, Ident, PickupOrder};
use caidan_sync::uplink::ShopperSignal;

/// Commands waiting for the writer before callers wait for room.
const QUEUE: usize = 4096;
const MIB: f64 = 1024.0 * 1024.0;
/// While the disk is full, new claims are refused without trying; one is let through to
/// probe for room at most this often (a trim that frees rows clears the state at once).
const DISK_PROBE_MS: i64 = 2_000;
/// How often the store records the time it has seen (`meta.clock_floor_ms`): a restart with a
/// clock set back starts no earlier than this much before the last commit.
const FLOOR_EVERY_MS: i64 = 60_000;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A writer command's answer, still to come.
pub struct Answer<T>(oneshot::Receiver<Result<T, StoreError>>);

impl<T> Answer<T> {
    pub async fn wait(self) -> Result<T, StoreError> {
        self.0.await.map_err(|_| StoreError::WriterGone)?
    }
}

enum Command {
    Claim {
        shopper: ShopperHash,
        window: i64,
        reply: Reply<Result<ClaimOutcome, ClaimRefusal>>,
    },
    Scan {
        shopper: ShopperHash,
        window: i64,
        reply: Reply<bool>,
    },
    Impressions {
        minute_ms: i64,
        count: u64,
    },
    Redeem {
        code: ClaimCode,
        reply: Reply<Result<Redemption, RedeemRefusal>>,
    },
    Import {
        catalogue: Box<Catalogue>,
        reply: Reply<ImportSummary>,
    },
    ApplyConfig {
        plan: Box<ops::ConfigApply>,
        /// Claims per QR window from the new config, when it changes.
        claims_per_window: Option<u32>,
        reply: Reply<()>,
    },
    RejectConfig {
        answer: Box<caidan_sync::contract::ConfigAck>,
        reply: Reply<()>,
    },
    Trim {
        through: i64,
        reply: Reply<u64>,
    },
    Order {
        order: Box<PickupOrder>,
        code: CodeHash,
        reply: Reply<OrderOutcome>,
    },
    InvalidOrder {
        order_id: Ident,
        reply: Reply<OrderOutcome>,
    },
    Cancel {
        order_id: Ident,
        reply: Reply<Result<(), NotOpen>>,
    },
    Release {
        id: String,
        reply: Reply<Result<(), NotOpen>>,
    },
    Stock {
        update: StockUpdate,
        reply: Reply<Result<StockAfter, StockRefusal>>,
    },
    Pickup {
        code: CodeHash,
        reply: Reply<Result<HoldView, PickupRefusal>>,
    },
    BeginDispense {
        code: CodeHash,
        reply: Reply<Result<Dispensing, PickupRefusal>>,
    },
    FinishDispense {
        id: String,
        given: Vec<Units>,
        fault: Option<DispenseFault>,
        reply: Reply<HoldView>,
    },
    Expire {
        reply: Option<Reply<usize>>,
    },
    /// Caps the store file at `pages` pages (`PRAGMA max_page_count`), so that tests can
    /// fill the "disk".
    #[cfg(test)]
    MaxPageCount {
        pages: u64,
        reply: Reply<u64>,
    },
}

/// After a command met a full disk, the rest of the batch is refused as over budget.
/// SQLite may answer SQLITE_FULL by rolling back the whole transaction: then what the
/// batch did before is gone too, and all of it is refused.
fn check_disk(conn: &Connection, disk_full: bool, refusing: &mut bool) -> Result<(), StoreError> {
    if disk_full {
        *refusing = true;
        if conn.is_autocommit() {
            return Err(StoreError::DiskFull);
        }
    }
    Ok(())
}

/// Whether `e` is SQLite's `SQLITE_FULL`: the disk (or the file's page cap) has no room.
fn is_disk_full(e: &StoreError) -> bool {
    match e {
        StoreError::DiskFull => true,
        StoreError::Sql(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::DiskFull
        }
        StoreError::CommitFailed(inner) => is_disk_full(inner),
        _ => false,
    }
}

/// An answer held back until its batch commits.
type Pending = Box<dyn FnOnce(Option<&Arc<StoreError>>) + Send>;

fn pend<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> Pending {
    Box::new(move |commit_error| {
        let _ = reply.send(match commit_error {
            Some(e) if is_disk_full(e) => Err(StoreError::DiskFull),
            Some(e) => Err(StoreError::CommitFailed(e.clone())),
            None => result,
        });
    })
}

/// A cheap, cloneable handle to the writer thread.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<Command>,
    depth: Arc<AtomicI64>,
    catalogue_version: Arc<AtomicI64>,
    storage: Arc<StorageGauge>,
    shoppers: Arc<ShopperSignal>,
}

/// The store's size against its budget, as the writer last measured it.
#[derive(Debug)]
struct StorageGauge {
    limit: u64,
    used: AtomicU64,
    fill: AtomicU8,
    impressions_dropped: AtomicU64,
}

/// A reading of [`WriterHandle::storage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStatus {
    /// Bytes of store pages in use (free pages left by trims not counted).
    pub used: u64,
    pub limit: u64,
    pub fill: Fill,
    /// Per-minute impression counts not written because the store was full.
    pub impressions_dropped: u64,
}

/// Starts the writer thread for the store at `path`.
pub struct Writer;

impl Writer {
    /// Opens (creating or migrating) the store and starts its writer. `wake` is notified
    /// after every commit that added outbox events.
    pub fn spawn(
        path: &Path,
        identity: Identity,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
        max_batch: usize,
        budget: StorageBudget,
    ) -> Result<(WriterHandle, std::thread::JoinHandle<()>), StoreError> {
        let conn = schema::open(path, Access::Writer, clock.now_ms())?;
        let storage = Arc::new(StorageGauge {
            limit: budget.limit,
            used: AtomicU64::new(0),
            fill: AtomicU8::new(Fill::Normal as u8),
            impressions_dropped: AtomicU64::new(0),
        });
        let state = State::load(&conn, &identity)?;
        let depth = Arc::new(AtomicI64::new(state.depth));
        let catalogue_version = Arc::new(AtomicI64::new(state.catalogue_version as i64));
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut worker = Worker {
            conn,
            state,
            identity,
            clock,
            wake,
            depth: depth.clone(),
            catalogue_version: catalogue_version.clone(),
            data_version: 0,
            budget,
            watch: FillWatch::default(),
            storage: storage.clone(),
            disk_full_at: None,
            floor_saved_ms: i64::MIN,
        };
        worker.data_version = worker.data_version()?;
        worker.measure_fill();
        let join = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || worker.run(rx, max_batch.max(1)))
            .map_err(StoreError::WriterThread)?;
        Ok((
            WriterHandle {
                tx,
                depth,
                catalogue_version,
                storage,
                shoppers: Arc::new(ShopperSignal::default()),
            },
            join,
        ))
    }
}

impl WriterHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        self.submit(make).await?.wait().await
    }

    /// Hands a command to the writer without waiting for its answer. The writer carries
    /// commands out in the order they were submitted, many to one commit.
    async fn submit<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Answer<T>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        Ok(Answer(rx))
    }

    fn call_blocking<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .blocking_send(make(reply))
            .map_err(|_| StoreError::WriterGone)?;
        rx.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Today's egg for a hashed shopper id who scanned the QR of `window`, durable before
    /// it returns; refused when that window has handed out all its new claims.
    pub async fn claim(
        &self,
        shopper: ShopperHash,
        window: i64,
    ) -> Result<Result<ClaimOutcome, ClaimRefusal>, StoreError> {
        self.shoppers.mark();
        self.call(|reply| Command::Claim {
            shopper,
            window,
            reply,
        })
        .await
    }

    /// Records that `shopper` opened the egg page of `window`, once per window; `false`
    /// when it was not recorded (seen already).
    pub async fn scan(&self, shopper: ShopperHash, window: i64) -> Result<bool, StoreError> {
        self.call(|reply| Command::Scan {
            shopper,
            window,
            reply,
        })
        .await
    }

    /// Queues one aggregated impression event; dropped with a warning when the queue is full.
    pub fn impressions(&self, minute_ms: i64, count: u64) {
        if self
            .tx
            .try_send(Command::Impressions { minute_ms, count })
            .is_err()
        {
            tracing::warn!(
                minute_ms,
                count,
                "writer queue full: impression count dropped"
            );
        }
    }

    pub async fn redeem(
        &self,
        code: ClaimCode,
    ) -> Result<Result<Redemption, RedeemRefusal>, StoreError> {
        self.call(|reply| Command::Redeem { code, reply }).await
    }

    pub async fn import(&self, catalogue: Catalogue) -> Result<ImportSummary, StoreError> {
        self.call(|reply| Command::Import {
            catalogue: Box::new(catalogue),
            reply,
        })
        .await
    }

    pub fn import_blocking(&self, catalogue: Catalogue) -> Result<ImportSummary, StoreError> {
        self.call_blocking(|reply| Command::Import {
            catalogue: Box::new(catalogue),
            reply,
        })
    }

    /// Applies one verified config layer and all it changes in one transaction.
    pub async fn apply_config(
        &self,
        plan: ops::ConfigApply,
        claims_per_window: Option<u32>,
    ) -> Result<(), StoreError> {
        self.call(|reply| Command::ApplyConfig {
            plan: Box::new(plan),
            claims_per_window,
            reply,
        })
        .await
    }

    /// Records a refused config document.
    pub async fn reject_config(
        &self,
        answer: caidan_sync::contract::ConfigAck,
    ) -> Result<(), StoreError> {
        self.call(|reply| Command::RejectConfig {
            answer: Box::new(answer),
            reply,
        })
        .await
    }

    /// Reserves a pickup order from the order system, or rejects it with a reason.
    pub async fn order(
        &self,
        order: PickupOrder,
        code: CodeHash,
    ) -> Result<OrderOutcome, StoreError> {
        self.submit_order(order, code).await?.wait().await
    }

    /// [`WriterHandle::order`], answered later.
    pub async fn submit_order(
        &self,
        order: PickupOrder,
        code: CodeHash,
    ) -> Result<Answer<OrderOutcome>, StoreError> {
        self.submit(|reply| Command::Order {
            order: Box::new(order),
            code,
            reply,
        })
        .await
    }

    /// [`WriterHandle::invalid_order`], answered later.
    pub async fn submit_invalid_order(
        &self,
        order_id: Ident,
    ) -> Result<Answer<OrderOutcome>, StoreError> {
        self.submit(|reply| Command::InvalidOrder { order_id, reply })
            .await
    }

    /// [`WriterHandle::cancel`], answered later.
    pub async fn submit_cancel(
        &self,
        order_id: Ident,
    ) -> Result<Answer<Result<(), NotOpen>>, StoreError> {
        self.submit(|reply| Command::Cancel { order_id, reply })
            .await
    }

    /// [`WriterHandle::change_stock`], answered later.
    pub async fn submit_stock(
        &self,
        update: StockUpdate,
    ) -> Result<Answer<Result<StockAfter, StockRefusal>>, StoreError> {
        self.submit(|reply| Command::Stock { update, reply }).await
    }

    /// Rejects as `invalid` an order whose message broke a bound.
    pub async fn invalid_order(&self, order_id: Ident) -> Result<OrderOutcome, StoreError> {
        self.call(|reply| Command::InvalidOrder { order_id, reply })
            .await
    }

    pub async fn cancel(&self, order_id: Ident) -> Result<Result<(), NotOpen>, StoreError> {
        self.call(|reply| Command::Cancel { order_id, reply }).await
    }

    /// Staff release an open hold before its window ends.
    pub async fn release(&self, id: String) -> Result<Result<(), NotOpen>, StoreError> {
        self.call(|reply| Command::Release { id, reply }).await
    }

    pub async fn change_stock(
        &self,
        update: StockUpdate,
    ) -> Result<Result<StockAfter, StockRefusal>, StoreError> {
        self.call(|reply| Command::Stock { update, reply }).await
    }

    pub fn change_stock_blocking(
        &self,
        update: StockUpdate,
    ) -> Result<Result<StockAfter, StockRefusal>, StoreError> {
        self.call_blocking(|reply| Command::Stock { update, reply })
    }

    /// Staff hand over the hold behind a pickup code, at most once.
    pub async fn pickup(
        &self,
        code: CodeHash,
    ) -> Result<Result<HoldView, PickupRefusal>, StoreError> {
        self.call(|reply| Command::Pickup { code, reply }).await
    }

    /// Claims the hold behind a pickup code for the dispenser.
    pub async fn begin_dispense(
        &self,
        code: CodeHash,
    ) -> Result<Result<Dispensing, PickupRefusal>, StoreError> {
        self.call(|reply| Command::BeginDispense { code, reply })
            .await
    }

    /// Records what the dispenser handed out of a claimed hold.
    pub async fn finish_dispense(
        &self,
        id: String,
        given: Vec<Units>,
        fault: Option<DispenseFault>,
    ) -> Result<HoldView, StoreError> {
        self.call(|reply| Command::FinishDispense {
            id,
            given,
            fault,
            reply,
        })
        .await
    }

    /// Releases holds whose window has ended; returns how many.
    pub async fn expire(&self) -> Result<usize, StoreError> {
        self.call(|reply| Command::Expire { reply: Some(reply) })
            .await
    }

    /// Queues an expiry pass without waiting for it (the periodic sweep).
    pub fn expire_soon(&self) {
        let _ = self.tx.try_send(Command::Expire { reply: None });
    }

    /// Deletes outbox records up to `through`; blocking, for the uplink's worker threads.
    pub fn trim_blocking(&self, through: i64) -> Result<u64, StoreError> {
        self.call_blocking(|reply| Command::Trim { through, reply })
    }

    /// Marked on every claim, so the uplink steps aside while shoppers are served.
    pub fn shopper_signal(&self) -> Arc<ShopperSignal> {
        self.shoppers.clone()
    }

    pub fn outbox_depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// The store's size against its storage budget.
    pub fn storage(&self) -> StorageStatus {
        let g = &self.storage;
        StorageStatus {
            used: g.used.load(Ordering::Relaxed),
            limit: g.limit,
            fill: match g.fill.load(Ordering::Relaxed) {
                x if x == Fill::Full as u8 => Fill::Full,
                x if x == Fill::Warning as u8 => Fill::Warning,
                _ => Fill::Normal,
            },
            impressions_dropped: g.impressions_dropped.load(Ordering::Relaxed),
        }
    }

    pub fn catalogue_version(&self) -> i64 {
        self.catalogue_version.load(Ordering::Relaxed)
    }

    /// Caps the store file at `pages` pages on the writer's connection; returns the cap.
    #[cfg(test)]
    pub(crate) async fn set_max_page_count(&self, pages: u64) -> Result<u64, StoreError> {
        self.call(|reply| Command::MaxPageCount { pages, reply })
            .await
    }
}

struct Worker {
    conn: Connection,
    state: State,
    identity: Identity,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    depth: Arc<AtomicI64>,
    catalogue_version: Arc<AtomicI64>,
    data_version: i64,
    budget: StorageBudget,
    watch: FillWatch,
    storage: Arc<StorageGauge>,
    /// When a write last found the disk full (monotonic ms); `None` while there is room.
    disk_full_at: Option<i64>,
    /// The time last recorded as `meta.clock_floor_ms`.
    floor_saved_ms: i64,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<Command>, max_batch: usize) {
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
        tracing::debug!("store writer stopped: every handle dropped");
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }

    /// Measures the store against its budget (pages in use, so space freed by trims counts
    /// as free), publishes the reading and logs each change of level once.
    fn measure_fill(&mut self) -> Fill {
        let used = match schema::used_bytes(&self.conn) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot measure the store size");
                return self.watch.current();
            }
        };
        let fill = self.budget.fill(used);
        // A full disk is a full store, whatever the budget says.
        let shown = match self.disk_full_at {
            Some(_) => Fill::Full,
            None => fill,
        };
        self.storage.used.store(used, Ordering::Relaxed);
        self.storage.fill.store(shown as u8, Ordering::Relaxed);
        if let Some(level) = self.watch.update(shown) {
            let (used_mib, limit_mib) = (used as f64 / MIB, self.budget.limit as f64 / MIB);
            match level {
                Fill::Full if fill != Fill::Full => tracing::error!(
                    used_mib,
                    limit_mib,
                    "store full: the disk has no room (SQLITE_FULL); new eggs are refused and impression counts dropped until a write succeeds again"
                ),
                Fill::Full => tracing::error!(
                    used_mib,
                    limit_mib,
                    "store full: storage budget reached; new eggs are refused and impression counts dropped until the data bank acknowledges the outbox"
                ),
                Fill::Warning => tracing::warn!(
                    used_mib,
                    limit_mib,
                    "store filling up: past the storage budget's warning level; is the uplink connected?"
                ),
                Fill::Normal => {
                    tracing::info!(used_mib, limit_mib, "store back under its warning level")
                }
            }
        }
        fill
    }

    fn reload(&mut self) {
        match State::load(&self.conn, &self.identity) {
            Ok(mut s) => {
                // What the QR windows saw is not in the store: keep it across the reload.
                s.windows = self.state.windows.clone();
                self.state = s;
                self.publish_counters();
            }
            Err(e) => tracing::error!(error = %e, "cannot reload store state"),
        }
    }

    fn publish_counters(&self) {
        self.depth.store(self.state.depth, Ordering::Relaxed);
        self.catalogue_version
            .store(self.state.catalogue_version as i64, Ordering::Relaxed);
    }

    fn commit_batch(&mut self, batch: &mut Vec<Command>) {
        // Another process (`caidan-agent offers import`) may have changed the store.
        match self.data_version() {
            Ok(v) if v != self.data_version => {
                self.data_version = v;
                tracing::info!("store changed by another process: reloading");
                self.reload();
            }
            _ => {}
        }
        let fill = self.measure_fill();
        let (used, limit) = (self.storage.used.load(Ordering::Relaxed), self.budget.limit);
        let full = move || match fill {
            Fill::Full => StoreError::StorageFull { used, limit },
            _ => StoreError::DiskFull,
        };
        let now = Now {
            ms: self.clock.now_ms(),
            uptime_ms: self.clock.monotonic_ms(),
        };
        // Over the budget nothing new is tried; on a full disk one batch in a while probes.
        let mut refusing = fill == Fill::Full
            || self
                .disk_full_at
                .is_some_and(|at| now.uptime_ms.saturating_sub(at) < DISK_PROBE_MS);
        let mut disk_full = false;
        let changes_before = self.conn.total_changes();
        let seq_before = self.state.next_seq;
        let mut pending: Vec<Pending> = Vec::with_capacity(batch.len());
        let mut reload_after = false;
        let outcome = (|| -> Result<(), StoreError> {
            let mut tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for cmd in batch.drain(..) {
                check_disk(&tx, disk_full, &mut refusing)?;
                let st = &mut self.state;
                // A trim is one plain DELETE and needs no savepoint (so it journals no
                // pages): if it fails, the whole group fails and every caller is told.
                let cmd = match cmd {
                    Command::Trim { through, reply } => match ops::trim(&tx, st, through) {
                        Ok(n) => {
                            pending.push(pend(reply, Ok(n)));
                            continue;
                        }
                        Err(e) => {
                            pending.push(pend(reply, Ok(0)));
                            return Err(e);
                        }
                    },
                    // A rescan needs no write: the shopper still gets today's claim back.
                    Command::Claim { shopper, reply, .. } if refusing => {
                        let result = match ops::claim_today(&tx, st, now, &shopper) {
                            Ok(Some(outcome)) => Ok(Ok(outcome)),
                            Ok(None) => Err(full()),
                            Err(e) => Err(e),
                        };
                        pending.push(pend(reply, result));
                        continue;
                    }
                    Command::Scan { reply, .. } if refusing => {
                        pending.push(pend(reply, Err(full())));
                        continue;
                    }
                    Command::Impressions { count, .. } if refusing => {
                        self.storage
                            .impressions_dropped
                            .fetch_add(count, Ordering::Relaxed);
                        tracing::warn!(count, "store full: impression count not stored");
                        continue;
                    }
                    #[cfg(test)]
                    Command::MaxPageCount { pages, reply } => {
                        let r = tx
                            .pragma_update_and_check(None, "max_page_count", pages, |r| r.get(0))
                            .map_err(StoreError::from);
                        pending.push(pend(reply, r));
                        continue;
                    }
                    other => other,
                };
                let sp = tx.savepoint()?;
                // A command that found the disk full is undone whole (its savepoint) and
                // answered `DiskFull`; the commands after it are refused as over budget.
                macro_rules! run {
                    ($reply:expr, $result:expr) => {{
                        let result = $result;
                        if result.is_ok() {
                            sp.commit()?;
                        } else {
                            drop(sp);
                        }
                        let result = result.map_err(|e| {
                            if is_disk_full(&e) {
                                disk_full = true;
                                StoreError::DiskFull
                            } else {
                                e
                            }
                        });
                        pending.push(pend($reply, result));
                    }};
                }
                match cmd {
                    Command::Claim {
                        shopper,
                        window,
                        reply,
                    } => {
                        run!(reply, ops::claim(&sp, st, now, &shopper, window))
                    }
                    Command::Scan {
                        shopper,
                        window,
                        reply,
                    } => {
                        run!(reply, ops::scan(&sp, st, now, &shopper, window))
                    }
                    Command::Redeem { code, reply } => {
                        run!(reply, ops::redeem(&sp, st, now, &code))
                    }
                    Command::Trim { .. } => unreachable!("trims run before the savepoint"),
                    #[cfg(test)]
                    Command::MaxPageCount { .. } => unreachable!("run before the savepoint"),
                    Command::Import { catalogue, reply } => {
                        reload_after = true;
                        run!(reply, ops::import(&sp, st, now, &catalogue))
                    }
                    Command::ApplyConfig {
                        plan,
                        claims_per_window,
                        reply,
                    } => {
                        reload_after |= plan.catalogue.is_some();
                        let r = ops::apply_config(&sp, st, now, &plan);
                        if r.is_ok()
                            && let Some(n) = claims_per_window
                        {
                            self.identity.claims_per_window = n;
                        }
                        run!(reply, r)
                    }
                    Command::RejectConfig { answer, reply } => {
                        run!(reply, ops::reject_config(&sp, st, now, &answer))
                    }
                    Command::Order { order, code, reply } => {
                        let dispenser = self.identity.dispenser.as_deref();
                        run!(reply, ops::order(&sp, st, now, &order, &code, dispenser))
                    }
                    Command::InvalidOrder { order_id, reply } => {
                        run!(reply, ops::invalid_order(&sp, st, now, &order_id))
                    }
                    Command::Cancel { order_id, reply } => {
                        run!(reply, ops::cancel(&sp, st, now, &order_id))
                    }
                    Command::Release { id, reply } => {
                        run!(reply, ops::release(&sp, st, now, &id))
                    }
                    Command::Stock { update, reply } => {
                        run!(reply, ops::change_stock(&sp, st, now, &update))
                    }
                    Command::Pickup { code, reply } => {
                        run!(reply, ops::pickup(&sp, st, now, &code))
                    }
                    Command::BeginDispense { code, reply } => {
                        run!(reply, ops::begin_dispense(&sp, st, now, &code))
                    }
                    Command::FinishDispense {
                        id,
                        given,
                        fault,
                        reply,
                    } => {
                        run!(
                            reply,
                            ops::finish_dispense(&sp, st, now, &id, &given, fault)
                        )
                    }
                    Command::Expire { reply } => {
                        if st.stock.next_expiry().is_some_and(|t| t <= now.ms) {
                            let result = ops::expire(&sp, st, now);
                            match reply {
                                Some(reply) => run!(reply, result),
                                None => match result {
                                    Ok(_) => sp.commit()?,
                                    Err(e) => {
                                        tracing::error!(error = %e, "expiry pass failed");
                                        disk_full |= is_disk_full(&e);
                                        drop(sp);
                                        reload_after = true;
                                    }
                                },
                            }
                        } else if let Some(reply) = reply {
                            drop(sp);
                            pending.push(pend(reply, Ok(0)));
                        }
                    }
                    Command::Impressions { minute_ms, count } => {
                        if let Err(e) = ops::impressions(&sp, st, now, minute_ms, count) {
                            tracing::error!(error = %e, "impression event not stored");
                            disk_full |= is_disk_full(&e);
                        } else {
                            sp.commit()?;
                        }
                    }
                }
            }
            check_disk(&tx, disk_full, &mut refusing)?;
            if !refusing && now.ms.saturating_sub(self.floor_saved_ms) >= FLOOR_EVERY_MS {
                schema::set_clock_floor(&tx, now.ms)?;
                self.floor_saved_ms = now.ms;
            }
            tx.commit()?;
            Ok(())
        })();
        let error = outcome.err().map(Arc::new);
        if let Some(e) = &error {
            tracing::error!(error = %e, "batch commit failed: reloading state from the store");
            disk_full |= is_disk_full(e);
            reload_after = true;
        }
        // The full flag follows the last write: set by SQLITE_FULL, cleared by a commit that
        // changed rows without meeting it (room is back: a trim, or space the operator freed).
        let was_full = self.disk_full_at.is_some();
        if disk_full {
            self.disk_full_at = Some(now.uptime_ms);
        } else if was_full && error.is_none() && self.conn.total_changes() > changes_before {
            self.disk_full_at = None;
            tracing::info!("the disk has room again: new eggs are taken");
        }
        if was_full != self.disk_full_at.is_some() {
            self.measure_fill();
        }
        for p in pending {
            p(error.as_ref());
        }
        if reload_after {
            self.reload();
        } else {
            self.publish_counters();
        }
        if error.is_none() && self.state.next_seq != seq_before {
            self.wake.notify_one();
        }
    }
}

//! The single writer: one thread owns the store (SQLite or PostgreSQL) and commits the
//! work that queued up together in one transaction (group commit), then reports each
//! outcome with its tag. Other ingesters may write the same store; their transactions and
//! ours serialize on SQLite's write lock, or on PostgreSQL's row locks per device (see
//! [`super::store`] and [`super::store::pg`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use std::time::Duration;

use super::metrics::Metrics;
use super::store::dead_letter::DeadLetter;
use super::store::{Apply, Outcome, StoreError, Work};

/// Most events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 20_000;
/// Most work items committed in one transaction.
const MAX_GROUP_ITEMS: usize = 1_000;
/// Times work is applied again after a failure that is not the work's own: another
/// ingester holding the write lock past the busy timeout, a full or failing disk.
const TRANSIENT_RETRIES: u32 = 6;

/// What the writer reports for each submitted item: the outcome, or the store error that
/// rolled its transaction back (then nothing of it is stored or acknowledged).
pub type Done<T> = (Result<Outcome, Arc<StoreError>>, T);

/// Cheap handle to the writer thread.
pub struct WriterHandle<T> {
    tx: mpsc::Sender<(Work, T)>,
}

impl<T> Clone for WriterHandle<T> {
    fn clone(&self) -> Self {
        WriterHandle {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static> WriterHandle<T> {
    /// Queues `work`; waits when the writer is `capacity` items behind. Returns `false` when
    /// the writer has stopped.
    pub async fn submit(&self, work: Work, tag: T) -> bool {
        self.tx.send((work, tag)).await.is_ok()
    }
}

/// Starts the writer thread. It stops once every handle is dropped and the queue is empty.
pub fn spawn<S: Apply, T: Send + 'static>(
    mut store: S,
    metrics: Arc<Metrics>,
    capacity: usize,
    done: mpsc::UnboundedSender<Done<T>>,
) -> std::io::Result<(WriterHandle<T>, JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel::<(Work, T)>(capacity);
    let handle = std::thread::Builder::new()
        .name("databank-writer".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut group = vec![first];
                let mut events = size(&group[0].0);
                while events < MAX_GROUP_EVENTS && group.len() < MAX_GROUP_ITEMS {
                    match rx.try_recv() {
                        Ok(item) => {
                            events += size(&item.0);
                            group.push(item);
                        }
                        Err(_) => break,
                    }
                }
                let (work, tags): (Vec<Work>, Vec<T>) = group.into_iter().unzip();
                let span = tracing::debug_span!("commit", items = work.len(), events);
                let _guard = span.enter();
                let results = commit_group(&mut store, &metrics, work);
                for (result, tag) in results.into_iter().zip(tags) {
                    let _ = done.send((result, tag));
                }
            }
        })?;
    Ok((WriterHandle { tx }, handle))
}

/// Commits `work` in one transaction. When the group fails for a reason that is the work's
/// own (a poison item), each item is applied alone and the ones refused are set aside as
/// dead letters, so one bad message never holds back the others. Transient failures (a
/// busy or full disk) are retried with a growing pause, then reported: the caller leaves
/// those messages unconfirmed for the broker to deliver again.
fn commit_group(
    store: &mut impl Apply,
    metrics: &Metrics,
    work: Vec<Work>,
) -> Vec<Result<Outcome, Arc<StoreError>>> {
    match apply_retrying(store, &work) {
        Ok(outcomes) => {
            metrics.transactions.fetch_add(1, Relaxed);
            outcomes
                .into_iter()
                .zip(&work)
                .map(|(o, w)| Ok(count(metrics, w, o)))
                .collect()
        }
        Err(e) if e.is_poison() => {
            tracing::warn!(error = %e, items = work.len(), "group refused: applying each item alone");
            work.into_iter()
                .map(
                    |item| match apply_retrying(store, std::slice::from_ref(&item)) {
                        Ok(mut o) => {
                            metrics.transactions.fetch_add(1, Relaxed);
                            Ok(count(metrics, &item, o.remove(0)))
                        }
                        Err(e) if e.is_poison() => set_aside(store, metrics, &item, &e),
                        Err(e) => Err(failed(metrics, e)),
                    },
                )
                .collect()
        }
        Err(e) => {
            let e = failed(metrics, e);
            work.iter().map(|_| Err(e.clone())).collect()
        }
    }
}

/// Applies `work`, retrying a busy store a few times and a failing disk with growing pauses.
fn apply_retrying(store: &mut impl Apply, work: &[Work]) -> Result<Vec<Outcome>, StoreError> {
    let mut attempt = 0u32;
    loop {
        match store.apply(work) {
            Err(e) if !e.is_poison() && attempt < TRANSIENT_RETRIES => {
                attempt += 1;
                if e.is_busy() {
                    tracing::warn!(error = %e, attempt, "store busy (another writer); retrying");
                } else {
                    let pause = Duration::from_millis(100 << attempt.min(6));
                    tracing::error!(error = %e, attempt, retry_in_ms = pause.as_millis() as u64, "store transaction failed; retrying");
                    std::thread::sleep(pause);
                }
            }
            r => return r,
        }
    }
}

/// Keeps a refused item as a dead letter, so its message can be confirmed and never comes
/// back in a loop.
fn set_aside(
    store: &mut impl Apply,
    metrics: &Metrics,
    item: &Work,
    error: &StoreError,
) -> Result<Outcome, Arc<StoreError>> {
    let letter = match item {
        Work::Batch(events) => {
            let topic = events.first().map_or_else(String::new, |r| {
                caidan_sync::topics::events(&r.event.fleet, &r.event.device)
            });
            let raws: Vec<&str> = events.iter().map(|r| r.raw.as_str()).collect();
            DeadLetter::new(
                &topic,
                "store_refused",
                &error.to_string(),
                format!("[{}]", raws.join(",")).as_bytes(),
            )
        }
        Work::State {
            fleet,
            device,
            state,
        } => DeadLetter::new(
            &caidan_sync::topics::state(fleet, device),
            "store_refused",
            &error.to_string(),
            &state.to_json(),
        ),
        Work::DeadLetter(letter) => {
            tracing::error!(error = %error, topic = %letter.topic, "dead letter refused by the store");
            return Err(Arc::new(StoreError::Refused(error.to_string())));
        }
    };
    tracing::error!(error = %error, topic = %letter.topic, "work refused by the store: set aside");
    match store.apply(&[Work::DeadLetter(letter)]) {
        Ok(mut o) => Ok(count(metrics, item, o.remove(0))),
        Err(e) => Err(failed(metrics, e)),
    }
}

fn failed(metrics: &Metrics, e: StoreError) -> Arc<StoreError> {
    tracing::error!(error = %e, "store transaction failed");
    metrics.store_errors.fetch_add(1, Relaxed);
    Arc::new(e)
}

/// Counts a committed item in the metrics.
fn count(metrics: &Metrics, item: &Work, outcome: Outcome) -> Outcome {
    match item {
        Work::Batch(_) => {
            metrics.batches_stored.fetch_add(1, Relaxed);
            metrics.events_stored.fetch_add(outcome.inserted, Relaxed);
            metrics
                .events_duplicate
                .fetch_add(outcome.duplicates, Relaxed);
        }
        Work::State { .. } => {
            metrics.state_updates.fetch_add(1, Relaxed);
        }
        Work::DeadLetter(_) => {}
    }
    for reason in outcome.conflicts.iter().chain(&outcome.dead_letters) {
        metrics.dead_letter(reason);
    }
    outcome
}

fn size(work: &Work) -> usize {
    match work {
        Work::Batch(events) => events.len(),
        Work::State { .. } | Work::DeadLetter(_) => 1,
    }
}

//! The single writer: one thread owns the [`Store`] and commits the work that queued up
//! together in one transaction (group commit), then reports each outcome with its tag.
//! Other ingesters may write the same store file; their transactions and ours serialize on
//! SQLite's write lock (see [`Store::apply`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::store::{Outcome, Store, StoreError, Work};

/// Most events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 20_000;
/// Most work items committed in one transaction.
const MAX_GROUP_ITEMS: usize = 1_000;
/// Times a group is applied again when another ingester on the same store file held the
/// write lock past the busy timeout (each attempt waits that long for it).
const BUSY_RETRIES: u32 = 2;

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
pub fn spawn<T: Send + 'static>(
    mut store: Store,
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
                let mut attempt = 0;
                let applied = loop {
                    match store.apply(&work) {
                        Err(e) if e.is_busy() && attempt < BUSY_RETRIES => {
                            attempt += 1;
                            tracing::warn!(error = %e, attempt, "store busy (another writer); retrying");
                        }
                        r => break r,
                    }
                };
                match applied {
                    Ok(outcomes) => {
                        metrics.transactions.fetch_add(1, Relaxed);
                        for ((outcome, tag), item) in outcomes.into_iter().zip(tags).zip(&work) {
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
                            }
                            let _ = done.send((Ok(outcome), tag));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, items = work.len(), "store transaction failed");
                        metrics.store_errors.fetch_add(1, Relaxed);
                        let e = Arc::new(e);
                        for tag in tags {
                            let _ = done.send((Err(e.clone()), tag));
                        }
                    }
                }
            }
        })?;
    Ok((WriterHandle { tx }, handle))
}

fn size(work: &Work) -> usize {
    match work {
        Work::Batch(events) => events.len(),
        Work::State { .. } => 1,
    }
}

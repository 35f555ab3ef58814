//! WAL checkpoints on a thread of their own, so the writer's commits never wait for the
//! copy of WAL pages into the database file.
//!
//! The writer nudges the checkpointer after each commit; the checkpointer runs a `PASSIVE`
//! checkpoint (it never blocks the writer or readers) at most every [`INTERVAL`]. The
//! writer's own automatic checkpoint stays on at a much larger size as a backstop, so the
//! WAL stays bounded even if this thread falls behind.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::store::{StoreError, open_connection};

/// Least time between two background checkpoints.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// Handle to the checkpoint thread; dropping it stops the thread after its current pass.
pub struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts the thread.
    pub fn spawn(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = open_connection(path, true)?;
        let (nudge, rx) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("databank-checkpoint".into())
            .spawn(move || run(conn, rx))?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Tells the thread that new frames were committed; never blocks.
    pub fn nudge(&self) {
        // Full: a checkpoint is already due. Disconnected: the thread is stopping.
        if let Some(tx) = &self.nudge {
            let _ = tx.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: Connection, nudges: Receiver<()>) {
    while nudges.recv().is_ok() {
        // PASSIVE copies what it can without waiting; a busy result (another ingester's
        // checkpoint on the same file) only means the work is being done elsewhere.
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match result {
            Ok((_, log, done)) => tracing::trace!(log, done, "checkpoint"),
            Err(e) => tracing::debug!(error = %e, "background checkpoint skipped"),
        }
        std::thread::sleep(INTERVAL);
    }
}

//! Sequence progress as the store keeps it: loaded once per transaction under the write
//! lock, merged with the transaction's seqs, written back before the commit.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rusqlite::{OptionalExtension, Transaction, params};

use super::StoreError;
use crate::databank::seqs::SeqProgress;

/// `(fleet, device, epoch)`.
pub type ProgressKey = (String, String, String);

/// Progress of every key one transaction touches.
#[derive(Default)]
pub struct Touched {
    progress: HashMap<ProgressKey, SeqProgress>,
}

impl Touched {
    /// The progress of `key` as of this transaction, loaded from the store the first time
    /// the transaction touches it.
    pub fn progress_mut(
        &mut self,
        tx: &Transaction<'_>,
        key: (&str, &str, &str),
    ) -> Result<&mut SeqProgress, StoreError> {
        let key: ProgressKey = (key.0.to_owned(), key.1.to_owned(), key.2.to_owned());
        Ok(match self.progress.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let p = load(tx, v.key())?;
                v.insert(p)
            }
        })
    }

    /// The highest contiguous seq of `key` as of this transaction.
    pub fn contiguous(&self, key: &ProgressKey) -> u64 {
        self.progress.get(key).map_or(0, SeqProgress::contiguous)
    }

    /// Writes every touched key's progress back.
    pub fn save(&self, tx: &Transaction<'_>, now_ms: i64) -> Result<(), StoreError> {
        let mut save = tx.prepare_cached(
            "INSERT INTO seq_progress (fleet, device, epoch, contiguous, beyond, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (fleet, device, epoch) DO UPDATE SET contiguous = excluded.contiguous,
               beyond = excluded.beyond, updated_ms = excluded.updated_ms",
        )?;
        for ((fleet, device, epoch), p) in &self.progress {
            let beyond = serde_json::to_string(&p.ranges()).unwrap_or_else(|_| "[]".into());
            save.execute(params![
                fleet,
                device,
                epoch,
                p.contiguous() as i64,
                beyond,
                now_ms
            ])?;
        }
        Ok(())
    }
}

/// The committed progress of `key`, read inside the (immediate) transaction `tx`.
fn load(tx: &Transaction<'_>, key: &ProgressKey) -> Result<SeqProgress, StoreError> {
    let row: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT contiguous, beyond FROM seq_progress
                 WHERE fleet = ?1 AND device = ?2 AND epoch = ?3",
        )?
        .query_row(params![key.0, key.1, key.2], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((contiguous, beyond)) = row else {
        return Ok(SeqProgress::default());
    };
    let ranges: Vec<(u64, u64)> =
        serde_json::from_str(&beyond).map_err(|e| StoreError::CorruptProgress {
            device: key.1.clone(),
            epoch: key.2.clone(),
            reason: e.to_string(),
        })?;
    Ok(SeqProgress::from_parts(contiguous as u64, ranges))
}

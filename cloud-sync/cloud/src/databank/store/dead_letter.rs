//! Messages the data bank set aside: what it could not store or acknowledge, with the
//! reason. Each is confirmed to the broker (so it is never redelivered in a loop) and kept
//! once per distinct payload of a topic, counting repeats; the table is bounded.

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::StoreError;

/// Most rows kept; the least recently seen go first.
pub const MAX_ROWS: i64 = 10_000;
/// Bytes of each payload kept, for an operator to look at.
pub const HEAD_BYTES: usize = 1024;
/// Longest reason detail kept.
const DETAIL_CHARS: usize = 300;

/// One message set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The topic, cut to a loggable length.
    pub topic: String,
    /// A stable label (`garbled`, `invalid_event`, `seq_conflict` ...).
    pub reason: &'static str,
    /// What exactly was wrong, bounded.
    pub detail: String,
    pub size: usize,
    pub sha256: String,
    /// The first [`HEAD_BYTES`] of the payload, lossily as text.
    pub head: String,
}

impl DeadLetter {
    pub fn new(topic: &str, reason: &'static str, detail: &str, payload: &[u8]) -> DeadLetter {
        let head_len = payload.len().min(HEAD_BYTES);
        DeadLetter {
            topic: caidan_sync::contract::ids::shown(topic),
            reason,
            detail: detail.chars().take(DETAIL_CHARS).collect(),
            size: payload.len(),
            sha256: hex::encode(Sha256::digest(payload)),
            head: String::from_utf8_lossy(&payload[..head_len]).into_owned(),
        }
    }
}

/// A dead letter as operators list it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeadLetterRow {
    pub topic: String,
    pub reason: String,
    pub detail: String,
    pub size: i64,
    pub sha256: String,
    pub head: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: i64,
}

/// Keeps `letter`, or counts one more of it; bounds the table every 100 new rows.
pub fn put(tx: &Transaction<'_>, letter: &DeadLetter, now_ms: i64) -> Result<(), StoreError> {
    let new = tx
        .prepare_cached(
            "INSERT INTO dead_letters (topic, reason, detail, size, sha256, head, first_ms, last_ms, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1)
             ON CONFLICT (topic, sha256) DO UPDATE SET count = count + 1, last_ms = excluded.last_ms
             RETURNING count",
        )?
        .query_row(
            params![
                letter.topic,
                letter.reason,
                letter.detail,
                letter.size as i64,
                letter.sha256,
                letter.head,
                now_ms
            ],
            |r| r.get::<_, i64>(0),
        )?
        == 1;
    if new {
        let id = tx.last_insert_rowid();
        if id % 100 == 0 {
            tx.execute(
                "DELETE FROM dead_letters WHERE id IN (
                   SELECT id FROM dead_letters ORDER BY last_ms DESC LIMIT -1 OFFSET ?1)",
                [MAX_ROWS],
            )?;
        }
    }
    Ok(())
}

/// The most recently seen dead letters first.
pub fn list(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<DeadLetterRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT topic, reason, detail, size, sha256, head, first_ms, last_ms, count
         FROM dead_letters ORDER BY last_ms DESC, id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(DeadLetterRow {
            topic: r.get(0)?,
            reason: r.get(1)?,
            detail: r.get(2)?,
            size: r.get(3)?,
            sha256: r.get(4)?,
            head: r.get(5)?,
            first_ms: r.get(6)?,
            last_ms: r.get(7)?,
            count: r.get(8)?,
        })
    })?;
    rows.collect()
}

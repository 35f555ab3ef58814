//! Opening the SQLite store: pragmas, versioned migrations, the store epoch.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::StoreError;

/// Schema version this build writes. Bump it and append to [`MIGRATIONS`] to change tables.
pub const SCHEMA_VERSION: i64 = 3;

/// `MIGRATIONS[n]` takes a store from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // v0 -> v1
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE offers (id TEXT PRIMARY KEY, json TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE segments (shopper TEXT PRIMARY KEY, tags TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE stock (sku TEXT PRIMARY KEY, quantity INTEGER NOT NULL CHECK (quantity >= 0)) WITHOUT ROWID;
     CREATE TABLE claims (
        id INTEGER PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        shopper TEXT NOT NULL,
        day TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        brand TEXT NOT NULL,
        kind TEXT NOT NULL,
        title_zh TEXT NOT NULL,
        title_en TEXT NOT NULL,
        desc_zh TEXT NOT NULL,
        desc_en TEXT NOT NULL,
        fallback INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
     );
     CREATE UNIQUE INDEX claims_by_shopper_day ON claims (shopper, day);
     CREATE TABLE redemptions (
        claim_code TEXT PRIMARY KEY REFERENCES claims (code),
        redeemed_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE quota_counters (
        offer_id TEXT PRIMARY KEY,
        total INTEGER NOT NULL,
        day TEXT,
        day_count INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        hour_count INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        json TEXT NOT NULL
     );",
    // v1 -> v2: reserved units, and holds (pickup orders, product and sample eggs).
    "ALTER TABLE stock ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0);
     CREATE TABLE holds (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        lines TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        closed_ms INTEGER,
        shopper TEXT,
        brand TEXT,
        offer TEXT,
        claim_code TEXT,
        handed_by TEXT
     ) WITHOUT ROWID;
     CREATE INDEX holds_by_code ON holds (code_hash, created_ms);
     CREATE UNIQUE INDEX holds_open_code ON holds (code_hash) WHERE state IN ('reserved', 'dispensing');
     CREATE INDEX holds_open ON holds (state, expires_ms);
     CREATE INDEX holds_closed ON holds (closed_ms) WHERE closed_ms IS NOT NULL;",
    // 3: fleet config layers as applied (the signed payload, verified before it was stored).
    "CREATE TABLE config_layers (
        layer TEXT NOT NULL,
        target TEXT NOT NULL,
        version INTEGER NOT NULL,
        digest TEXT NOT NULL,
        document TEXT NOT NULL,
        applied_ms INTEGER NOT NULL,
        PRIMARY KEY (layer, target)
     ) WITHOUT ROWID;",
];

/// How a connection will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The single writer: creates and migrates the store.
    Writer,
    /// Queries only; the store must already exist.
    Reader,
}

/// Opens the store at `path` with WAL and full durability; the writer creates and migrates it.
pub fn open(path: &Path, access: Access, now_ms: i64) -> Result<Connection, StoreError> {
    let flags = match access {
        Access::Writer => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Access::Reader => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if access == Access::Reader && !path.exists() {
        return Err(StoreError::Missing(path.display().to_string()));
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::open(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // A claim the shopper saw must survive power loss: fsync on every commit.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Small devices: cap the page cache (negative = KiB). Measured: a 4 MiB writer cache
    // brought no claim throughput the OS page cache did not already give, and cost 3 MiB of
    // idle RSS with 10,000 offers (loading them fills it).
    let cache_kib = match access {
        Access::Writer => 1024,
        Access::Reader => 512,
    };
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    if access == Access::Writer {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::JournalMode(mode));
        }
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Every command runs in its own savepoint, which journals the pages it touches;
        // in memory that is a copy of a few pages, on disk a temp-file write for each.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        if access == Access::Reader {
            return Err(StoreError::OlderSchema {
                path: path.display().to_string(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        migrate(&conn, version, now_ms)?;
    }
    Ok(conn)
}

fn migrate(conn: &Connection, from: i64, now_ms: i64) -> Result<(), StoreError> {
    if from > 0 {
        tracing::info!(from, to = SCHEMA_VERSION, "migrating agent store");
    }
    let tx = conn.unchecked_transaction()?;
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(sql).map_err(|e| StoreError::Migration {
            to: v as i64 + 1,
            source: e,
        })?;
    }
    if from == 0 {
        // A new store starts a new epoch, so a wiped device is never taken for a replay.
        let epoch = uuid::Uuid::now_v7().to_string();
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', ?1), ('created_ms', ?2)",
            params![epoch, now_ms.to_string()],
        )?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Records `ms` as the latest time the store has seen, in `meta.clock_floor_ms`: a wall clock
/// reading earlier than that at the next start is not believed.
pub fn set_clock_floor(conn: &Connection, ms: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('clock_floor_ms', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value
         WHERE CAST(excluded.value AS INTEGER) > CAST(meta.value AS INTEGER)",
    )?
    .execute([ms.to_string()])?;
    Ok(())
}

/// The latest time the store at `path` has recorded, when it exists and has one. Read before
/// the writer opens it, without migrating it.
pub fn clock_floor(path: &Path) -> Option<i64> {
    if !path.exists() {
        return None;
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    meta(&conn, "clock_floor_ms").ok()??.parse().ok()
}

/// A `meta` value.
pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Bytes of database pages in use: pages freed by deletes (trims) count as free.
pub fn used_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let pragma = |name: &str| -> Result<u64, StoreError> {
        Ok(conn
            .pragma_query_value(None, name, |r| r.get::<_, i64>(0))?
            .max(0) as u64)
    };
    let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    Ok(pages * pragma("page_size")?)
}

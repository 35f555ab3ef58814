//! The raw SQLite limit the claim path is compared against: single-row commits, and the
//! same rows in 50-row transactions, on a WAL store with `synchronous=FULL`, keyed like
//! claims (integer rowid, unique code). Prints one figure a line.

use std::time::Instant;

use rusqlite::{Connection, params};

fn open(dir: &std::path::Path, name: &str) -> Connection {
    let conn = Connection::open(dir.join(name)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE claims (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, shopper TEXT NOT NULL,
         offer_id TEXT NOT NULL, created_ms INTEGER NOT NULL);",
    )
    .unwrap();
    conn
}

fn run(conn: &mut Connection, rows: usize, per_tx: usize) -> f64 {
    let started = Instant::now();
    let mut n = 0;
    while n < rows {
        let tx = conn.transaction().unwrap();
        for _ in 0..per_tx {
            tx.prepare_cached(
                "INSERT INTO claims (code, shopper, offer_id, created_ms) VALUES (?1, ?2, 'o', ?3)",
            )
            .unwrap()
            .execute(params![
                format!("{:08X}", n as u64 * 2_654_435_761 % 4_294_967_291),
                format!("s{n}"),
                n as i64
            ])
            .unwrap();
            n += 1;
        }
        tx.commit().unwrap();
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let single = run(&mut open(dir.path(), "single.db"), 3_000, 1);
    let grouped = run(&mut open(dir.path(), "grouped.db"), 50_000, 50);
    println!("sqlite single-row commits (WAL, synchronous=FULL): {single:.0} rows/s");
    println!("sqlite 50-row transactions (WAL, synchronous=FULL): {grouped:.0} rows/s");
}

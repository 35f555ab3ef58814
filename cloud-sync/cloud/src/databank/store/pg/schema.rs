//! The PostgreSQL schema, its migration, and the day partitions of `events`.
//!
//! `events` is partitioned by range of `id_day`: the UTC day in the event's UUIDv7 id
//! (0 for an id of another version). It is a function of the id alone, so the primary key
//! `(id_day, id)` is as unique as the id, and a redelivery always lands in the partition
//! that already holds it. Days near the bank's clock get a partition of their own, made on
//! demand; anything else (a device clock a year ahead, non-v7 ids) goes to the default
//! partition. Retention drops whole day partitions and deletes old rows of the default one.
//! The funnel rollups (`funnel_cells`, `funnel_shopper_hours`) are never dropped.

use std::collections::BTreeSet;

use postgres::{Client, GenericClient};

use crate::databank::store::StoreError;

/// Version kept in `caidan_schema`.
pub const SCHEMA_VERSION: i32 = 2;

/// Advisory lock key taken while migrating or changing partitions, so several data banks
/// starting at once never race on DDL.
const DDL_LOCK: i64 = 0x00ca_1da2_0001;

const DAY_MS: i64 = 86_400_000;

/// Days a day partition is made ahead of the bank's clock.
const DAYS_AHEAD: i64 = 2;
/// Days back a day partition is made when no retention is set (older days go to the
/// default partition).
const DAYS_BACK_UNLIMITED: i64 = 31;

const SCHEMA_V1: &str = "
CREATE TABLE events (
    id uuid NOT NULL,
    id_day integer NOT NULL,
    fleet text NOT NULL,
    device text NOT NULL,
    epoch text NOT NULL,
    seq bigint NOT NULL,
    type text NOT NULL,
    time_ms bigint NOT NULL,
    brand text,
    offer text,
    scene text,
    shopper text,
    count bigint,
    brands text,
    body text NOT NULL,
    order_state text,
    PRIMARY KEY (id_day, id)
) PARTITION BY RANGE (id_day);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_config ON events (fleet, device) WHERE type = 'com.caidan.config';
CREATE TABLE seq_progress (
    fleet text NOT NULL,
    device text NOT NULL,
    epoch text NOT NULL,
    contiguous bigint NOT NULL,
    beyond text NOT NULL,
    updated_ms bigint NOT NULL,
    PRIMARY KEY (fleet, device, epoch)
);
CREATE TABLE devices (
    fleet text NOT NULL,
    device text NOT NULL,
    online boolean,
    state text NOT NULL,
    stock text,
    updated_ms bigint NOT NULL,
    lat double precision,
    lon double precision,
    PRIMARY KEY (fleet, device)
);
CREATE TABLE dead_letters (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    head text NOT NULL,
    first_ms bigint NOT NULL,
    last_ms bigint NOT NULL,
    count bigint NOT NULL,
    UNIQUE (topic, sha256)
);
CREATE INDEX dead_letters_last ON dead_letters (last_ms);
CREATE TABLE stock_levels (
    fleet text NOT NULL,
    device text NOT NULL,
    epoch text NOT NULL,
    sku text NOT NULL,
    on_hand bigint NOT NULL,
    reserved bigint NOT NULL,
    seq bigint NOT NULL,
    time_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    PRIMARY KEY (fleet, device, epoch, sku)
);
CREATE INDEX stock_levels_sku ON stock_levels (fleet, sku);
CREATE TABLE device_epochs (
    fleet text NOT NULL,
    device text NOT NULL,
    epoch text NOT NULL,
    last_time_ms bigint NOT NULL,
    PRIMARY KEY (fleet, device, epoch)
);
-- The funnel's rollups, kept in the transaction that stores the events. A cell is a
-- brand's stage counts in one UTC hour or day (grain 0 or 1) of one row of one grouping:
-- dim 0 touchpoint, 1 scene, 2 offer (key '' for none), 3 all of the brand (key '').
-- A query reads whole days at day grain and the hours at its edges at hour grain, so a
-- month by scene is about 30 rows, never a scan of raw events.
CREATE TABLE funnel_cells (
    brand text NOT NULL,
    dim smallint NOT NULL,
    grain smallint NOT NULL,
    start_ms bigint NOT NULL,
    key text NOT NULL,
    awareness bigint NOT NULL,
    interest bigint NOT NULL,
    purchase bigint NOT NULL,
    PRIMARY KEY (brand, dim, grain, start_ms, key)
);
-- Purchases per shopper in the same cells: Loyalty is the number of distinct shoppers
-- with two or more purchases in a row of the answer.
CREATE TABLE funnel_cell_shoppers (
    brand text NOT NULL,
    dim smallint NOT NULL,
    grain smallint NOT NULL,
    start_ms bigint NOT NULL,
    key text NOT NULL,
    shopper text NOT NULL,
    purchases bigint NOT NULL,
    PRIMARY KEY (brand, dim, grain, start_ms, key, shopper)
);
";

/// Version 2: Loyalty from each shopper's sorted purchase hours, one row per brand,
/// grouping, row key and shopper, in place of version 1's shopper counts per hour and day
/// cell. A funnel query binary-searches each list (`width_bucket`) for the purchases in its
/// range, over the shoppers who bought since its start (`last_ms`), instead of summing one
/// cell per purchase. The merge's row lock orders two ingesters adding to one shopper.
const SCHEMA_V2: &str = "
CREATE TABLE funnel_shopper_hours (
    brand text NOT NULL,
    dim smallint NOT NULL,
    key text NOT NULL,
    shopper text NOT NULL,
    -- one UTC hour start per purchase, sorted
    hours bigint[] NOT NULL,
    last_ms bigint NOT NULL,
    PRIMARY KEY (brand, dim, key, shopper)
);
CREATE INDEX funnel_shopper_hours_recent ON funnel_shopper_hours (brand, dim, last_ms);
INSERT INTO funnel_shopper_hours (brand, dim, key, shopper, hours, last_ms)
  SELECT brand, dim, key, shopper, array_agg(start_ms ORDER BY start_ms), max(start_ms)
  FROM funnel_cell_shoppers CROSS JOIN LATERAL generate_series(1, purchases)
  WHERE grain = 0 GROUP BY brand, dim, key, shopper;
DROP TABLE funnel_cell_shoppers;
";

/// Creates or migrates the schema; safe to run from several processes at once.
pub fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS caidan_schema (version integer NOT NULL)")?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM caidan_schema", &[])?
        .and_then(|r| r.get(0));
    match found {
        Some(v) if v > SCHEMA_VERSION => {
            return Err(StoreError::NewerSchema {
                found: v.into(),
                supported: SCHEMA_VERSION.into(),
            });
        }
        Some(v) if v == SCHEMA_VERSION => {}
        found => {
            if found.is_none() {
                tx.batch_execute(SCHEMA_V1)?;
            }
            tx.batch_execute(SCHEMA_V2)?;
            tx.execute("DELETE FROM caidan_schema", &[])?;
            tx.execute(
                "INSERT INTO caidan_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The partition day of an event id: the UTC day of a UUIDv7's timestamp, else 0.
pub fn id_day(id: &uuid::Uuid) -> i32 {
    match id.get_timestamp() {
        Some(ts) if id.get_version_num() == 7 => {
            let (secs, _) = ts.to_unix();
            (secs / 86_400).min(i32::MAX as u64) as i32
        }
        _ => 0,
    }
}

/// The day partitions `events` has, by day.
pub fn day_partitions(client: &mut impl GenericClient) -> Result<BTreeSet<i32>, StoreError> {
    let rows = client.query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'events'::regclass",
        &[],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            r.get::<_, &str>(0)
                .strip_prefix("events_d")
                .and_then(|d| d.parse().ok())
        })
        .collect())
}

/// Which days get a partition of their own, as of `now_ms`.
pub fn partition_window(now_ms: i64, retention_days: Option<u32>) -> (i32, i32) {
    let today = now_ms.div_euclid(DAY_MS);
    let back = retention_days.map_or(DAYS_BACK_UNLIMITED, i64::from);
    ((today - back).max(1) as i32, (today + DAYS_AHEAD) as i32)
}

/// Makes the partition of `day`. Returns false when the default partition already holds
/// rows of that day (they stay there; the day is served from the default partition).
pub fn create_partition(client: &mut Client, day: i32) -> Result<bool, StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])?;
    if day_partitions(&mut tx)?.contains(&day) {
        return Ok(true);
    }
    let taken: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM events_default WHERE id_day = $1)",
            &[&day],
        )?
        .get(0);
    if taken {
        return Ok(false);
    }
    tx.batch_execute(&format!(
        "CREATE TABLE events_d{day} PARTITION OF events FOR VALUES FROM ({day}) TO ({})",
        day + 1
    ))?;
    tx.commit()?;
    Ok(true)
}

/// The first day retention keeps, as of `now_ms`.
pub fn retention_cutoff(now_ms: i64, retention_days: u32) -> i32 {
    (now_ms.div_euclid(DAY_MS) - i64::from(retention_days)) as i32
}

/// Drops the day partitions older than `retention_days` before `now_ms` and deletes the
/// default partition's rows of those days. Returns the partitions dropped.
pub fn apply_retention(
    client: &mut Client,
    now_ms: i64,
    retention_days: u32,
) -> Result<Vec<i32>, StoreError> {
    let cutoff = retention_cutoff(now_ms, retention_days);
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])?;
    let old: Vec<i32> = day_partitions(&mut tx)?
        .into_iter()
        .filter(|d| *d < cutoff)
        .collect();
    for day in &old {
        tx.batch_execute(&format!("DROP TABLE events_d{day}"))?;
    }
    tx.execute(
        "DELETE FROM events_default WHERE id_day > 0 AND id_day < $1",
        &[&cutoff],
    )?;
    tx.commit()?;
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 database keeps its Loyalty: its hourly shopper cells become sorted
    /// purchase lists (day cells, which repeated them, are dropped), and it says version 2.
    #[test]
    fn a_version_1_database_migrates_to_purchase_lists() {
        let pg = caidan_testkit::Postgres::start(&["fsync=off"]);
        let url = pg.create_db("v1");
        let mut c = super::super::connect(&url).unwrap();
        c.batch_execute(SCHEMA_V1).unwrap();
        c.batch_execute(
            "CREATE TABLE caidan_schema (version integer NOT NULL);
             INSERT INTO caidan_schema VALUES (1);
             INSERT INTO funnel_cell_shoppers VALUES
               ('b', 3, 0, 7200000, '', 's1', 1),
               ('b', 3, 0, 3600000, '', 's1', 2),
               ('b', 3, 1, 0, '', 's1', 3),
               ('b', 0, 0, 3600000, 'dev-1', 's2', 1);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let rows: Vec<(i16, String, String, Vec<i64>, i64)> = c
            .query(
                "SELECT dim, key, shopper, hours, last_ms FROM funnel_shopper_hours
                 ORDER BY dim, key, shopper",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        assert_eq!(
            rows,
            vec![
                (0, "dev-1".into(), "s2".into(), vec![3_600_000], 3_600_000),
                (
                    3,
                    "".into(),
                    "s1".into(),
                    vec![3_600_000, 3_600_000, 7_200_000],
                    7_200_000
                ),
            ]
        );
        let version: i32 = c
            .query_one("SELECT max(version) FROM caidan_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(version, SCHEMA_VERSION);
        // Migrating again changes nothing.
        migrate(&mut c).unwrap();
        let n: i64 = c
            .query_one("SELECT count(*) FROM funnel_shopper_hours", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
    }
}

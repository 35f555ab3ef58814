//! The data bank's PostgreSQL store against PostgreSQL's own limit, in one run on one
//! private cluster (initdb on a free port, fsync and synchronous_commit on, the defaults):
//!
//! 1. **Raw limit**: one client inserts the same rows into a bare `events` table of the same
//!    shape (partitioned, same key), one multi-row `INSERT ... SELECT FROM unnest ... ON
//!    CONFLICT DO NOTHING` per batch from one prepared statement, committing every `GROUP`
//!    batches.
//! 2. **The store**: 1, 2 and 4 ingesters (each a `PgStore` on its own connection and thread)
//!    apply the same batches, dealt round-robin so each device's batches land on every
//!    ingester (as a shared subscription does), `GROUP` batches per transaction, with the
//!    sequence progress, dead-letter checks and the funnel rollups maintained.
//! 3. **Funnel**: `FUNNEL_EVENTS` (default 10,000,000) events stored in a fresh database,
//!    (4 brands, 1,000 touchpoints, 3 scenes, 2 offers a brand, 90 days, 200,000
//!    shoppers; 80% Awareness, 17% Interest, 3% Purchase, or a third each with
//!    `FUNNEL_MIX=even`, the worst case for Loyalty) with their
//!    rollups built by `INSERT ... SELECT ... GROUP BY` the way the store's transactions
//!    add them (the test `funnel_from_rollups_equals_the_funnel_from_raw_events` holds the
//!    store to the same cells); then the funnel query of one brand,
//!    by touchpoint over 7 days and by scene over 30 days, `FUNNEL_QUERIES` times each:
//!    p50 and p99 against the 50 ms target.
//!
//! `PG_EVENTS` (default 200,000), `PG_DEVICES` (default 100). Run with
//! `cargo bench -p caidan-e2e --bench pg_ingest`.
#![forbid(unsafe_code)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use caidan_cloud::databank::funnel::GroupBy;
use caidan_cloud::databank::store::Work;
use caidan_cloud::databank::store::pg::{self, PgOptions, PgStore};
use caidan_sync::clock::SystemClock;
use caidan_sync::contract::{Event, Received};
use caidan_testkit::Postgres;
use common::{Result, env_usize};
use serde_json::json;

const FLEET: &str = "demo";
const BATCH: usize = 100;
/// Batches per transaction, for the raw client and each ingester alike.
const GROUP: usize = 10;

fn main() -> Result<()> {
    let events = env_usize("PG_EVENTS", 200_000);
    let devices = env_usize("PG_DEVICES", 100);
    let pg = Postgres::start(&["max_connections=50", "shared_buffers=512MB"]);
    let batches = batches(events, devices);
    let n = (batches.len() * BATCH) as f64;
    println!(
        "# {n} events (claims, 1 in 3 a redemption) from {devices} devices in {} batches of {BATCH}, {GROUP} batches per transaction",
        batches.len()
    );

    let raw = {
        let url = pg.create_db("raw");
        let mut c = pg::connect(&url)?;
        c.batch_execute(
            "CREATE TABLE events (id uuid NOT NULL, id_day integer NOT NULL, fleet text NOT NULL,
               device text NOT NULL, epoch text NOT NULL, seq bigint NOT NULL, type text NOT NULL,
               time_ms bigint NOT NULL, brand text, offer text, scene text, shopper text,
               count bigint, brands text, body text NOT NULL, order_state text,
               PRIMARY KEY (id_day, id)) PARTITION BY RANGE (id_day);
             CREATE TABLE events_default PARTITION OF events DEFAULT;",
        )?;
        let today = (jiff::Timestamp::now().as_second() / 86_400) as i32;
        c.batch_execute(&format!(
            "CREATE TABLE events_today PARTITION OF events FOR VALUES FROM ({today}) TO ({})",
            today + 2
        ))?;
        let insert = c.prepare(RAW_INSERT)?;
        let start = Instant::now();
        for group in batches.chunks(GROUP) {
            let mut tx = c.transaction()?;
            for b in group {
                raw_insert(&mut tx, &insert, b)?;
            }
            tx.commit()?;
        }
        n / start.elapsed().as_secs_f64()
    };
    println!("raw multi-row INSERT ... ON CONFLICT DO NOTHING, one client: {raw:.0} events/s");

    for ingesters in [1usize, 2, 4] {
        let url = pg.create_db(&format!("bank{ingesters}"));
        drop(open(&url)?);
        let start = Instant::now();
        let threads: Vec<_> = (0..ingesters)
            .map(|me| {
                let mine: Vec<Work> = batches
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % ingesters == me)
                    .map(|(_, b)| Work::Batch(b.clone()))
                    .collect();
                let url = url.clone();
                std::thread::spawn(move || -> Result<u64> {
                    let mut store = open(&url)?;
                    let mut stored = 0;
                    for group in mine.chunks(GROUP) {
                        stored += store.apply(group)?.iter().map(|o| o.inserted).sum::<u64>();
                    }
                    Ok(stored)
                })
            })
            .collect();
        let mut stored = 0;
        for t in threads {
            stored += t.join().map_err(|_| "ingester panicked")??;
        }
        let rate = n / start.elapsed().as_secs_f64();
        assert_eq!(stored as f64, n, "every event stored once");
        println!(
            "store with rollups, {ingesters} ingester(s): {rate:.0} events/s ({:.2}x the raw limit)",
            rate / raw
        );
    }

    funnel(&pg)?;
    Ok(())
}

fn open(url: &str) -> Result<PgStore> {
    Ok(PgStore::open(
        PgOptions {
            url: url.to_owned(),
            retention_days: None,
        },
        Arc::new(SystemClock::new()),
    )?)
}

/// The raw insert, prepared once as the store prepares its statements.
const RAW_INSERT: &str =
    "INSERT INTO events SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[],
       $5::text[], $6::int8[], $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[],
       $12::text[], $13::int8[], $14::text[], $15::text[], $16::text[])
     ON CONFLICT DO NOTHING";

fn raw_insert(
    tx: &mut postgres::Transaction<'_>,
    insert: &postgres::Statement,
    batch: &[Received],
) -> Result<()> {
    let col = |f: &dyn Fn(&Event) -> String| batch.iter().map(|r| f(&r.event)).collect::<Vec<_>>();
    let ids: Vec<uuid::Uuid> = batch.iter().map(|r| r.event.id).collect();
    let days: Vec<i32> = ids.iter().map(pg::schema::id_day).collect();
    let seqs: Vec<i64> = batch.iter().map(|r| r.event.seq as i64).collect();
    let times: Vec<i64> = batch
        .iter()
        .map(|r| r.event.time.as_millisecond())
        .collect();
    let bodies: Vec<&str> = batch.iter().map(|r| r.raw.as_str()).collect();
    let nulls: Vec<Option<String>> = vec![None; batch.len()];
    let nulls_i: Vec<Option<i64>> = vec![None; batch.len()];
    tx.execute(
        insert,
        &[
            &ids,
            &days,
            &col(&|e| e.fleet.to_string()),
            &col(&|e| e.device.to_string()),
            &col(&|e| e.epoch.to_string()),
            &seqs,
            &col(&|e| e.event_type().as_str().to_owned()),
            &times,
            &col(&|e| e.brand().map(|b| b.to_string()).unwrap_or_default()),
            &col(&|e| e.offer().map(|b| b.to_string()).unwrap_or_default()),
            &col(&|e| e.data.scene().as_str().to_owned()),
            &col(&|e| e.data.shopper().map(|s| s.to_string()).unwrap_or_default()),
            &nulls_i,
            &nulls,
            &bodies,
            &nulls,
        ],
    )?;
    Ok(())
}

/// Claim batches (1 in 3 a redemption) of `devices` devices, each with its own epoch,
/// devices taking turns.
fn batches(events: usize, devices: usize) -> Vec<Vec<Received>> {
    let per_device = events.div_ceil(devices).div_ceil(BATCH) * BATCH;
    let epochs: Vec<String> = (0..devices)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut out = Vec::new();
    for b in 0..per_device / BATCH {
        for (d, epoch) in epochs.iter().enumerate() {
            let device = format!("bench-{d:04}");
            out.push(
                (b * BATCH + 1..=(b + 1) * BATCH)
                    .map(|seq| {
                        let raw = event(&device, epoch, seq).to_string();
                        Received {
                            event: Event::parse(&raw).expect("a valid event"),
                            raw,
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

fn event(device: &str, epoch: &str, seq: usize) -> serde_json::Value {
    let shopper = format!("{:032x}", seq % 500);
    let (ty, data) = if seq.is_multiple_of(3) {
        (
            "redemption",
            json!({"shopper": shopper, "offer": "lumi-cola-3off", "brand": "lumi-cola",
                   "claim_code": "AB12CD34", "scene": "cinema", "uptime_ms": seq * 37}),
        )
    } else {
        (
            "claim",
            json!({"shopper": shopper, "offer": "lumi-cola-3off", "brand": "lumi-cola",
                   "kind": "coupon", "claim_code": "AB12CD34", "fallback": false,
                   "expires_at": "2025-06-02T00:00:00Z", "local_hour": 12,
                   "scene": "cinema", "uptime_ms": seq * 37}),
        )
    };
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": format!("/caidan/{FLEET}/d/{device}"),
        "type": format!("com.caidan.{ty}"),
        "time": format!("2025-06-01T{:02}:{:02}:00Z", (seq / 60) % 24, seq % 60),
        "datacontenttype": "application/json",
        "subject": "lumi-cola-3off",
        "fleet": FLEET,
        "device": device,
        "epoch": epoch,
        "seq": seq,
        "brand": "lumi-cola",
        "data": data,
    })
}

/// Fills a fresh database with `FUNNEL_EVENTS` events and their rollups, and times the
/// funnel query.
fn funnel(pg: &Postgres) -> Result<()> {
    let total = env_usize("FUNNEL_EVENTS", 10_000_000) as i64;
    let queries = env_usize("FUNNEL_QUERIES", 50);
    // Percent of events per stage: a funnel narrows (impressions, then scans and claims,
    // then redemptions); FUNNEL_MIX=even gives a third each, the worst case for Loyalty.
    let (aware, interest) = match std::env::var("FUNNEL_MIX").as_deref() {
        Ok("even") => (34, 33),
        _ => (80, 17),
    };
    println!(
        "# funnel mix: {aware}% awareness, {interest}% interest, {}% purchase",
        100 - aware - interest
    );
    let url = pg.create_db("funnel");
    drop(open(&url)?);
    let mut c = pg::connect_reader(&url)?;
    let start = Instant::now();
    // Each generated row is one event's contribution: (brand, hour, device, scene, offer,
    // stage, shopper). The events themselves go to the default partition.
    c.batch_execute(&format!(
        "CREATE TEMP TABLE gen AS
           SELECT g,
                  'brand-' || (g % 4) AS brand,
                  1748736000000 + (g % 2160) * 3600000 AS hour_ms,
                  'dev-' || lpad(((g / 7) % 1000)::text, 4, '0') AS device,
                  (ARRAY['cinema', 'campus', 'transit'])[1 + (g / 3) % 3] AS scene,
                  'offer-' || (g % 4) || '-' || ((g / 11) % 2) AS offer,
                  CASE WHEN (g * 2654435761) % 100 < {aware} THEN 0
                       WHEN (g * 2654435761) % 100 < {aware} + {interest} THEN 1
                       ELSE 2 END AS stage,
                  lpad(to_hex((g * 7919) % 200000), 32, '0') AS shopper
           FROM generate_series(1::bigint, {total}) AS g;
         INSERT INTO events (id, id_day, fleet, device, epoch, seq, type, time_ms, brand, offer,
                             scene, shopper, body)
           SELECT gen_random_uuid(), 0, 'demo', device, 'e', g, 'com.caidan.claim', hour_ms,
                  brand, offer, scene, shopper, '{{}}' FROM gen;
         CREATE TEMP TABLE dims (dim) AS VALUES (0::int2), (1::int2), (2::int2), (3::int2);
         INSERT INTO funnel_cells
           SELECT brand, dim, 0::int2, hour_ms,
                  CASE dim WHEN 0 THEN device WHEN 1 THEN scene WHEN 2 THEN offer ELSE '' END,
                  count(*) FILTER (WHERE stage = 0), count(*) FILTER (WHERE stage = 1),
                  count(*) FILTER (WHERE stage = 2)
           FROM gen CROSS JOIN dims GROUP BY 1, 2, 3, 4, 5;
         INSERT INTO funnel_cells
           SELECT brand, dim, 1::int2, start_ms / 86400000 * 86400000, key,
                  sum(awareness), sum(interest), sum(purchase)
           FROM funnel_cells WHERE grain = 0 GROUP BY 1, 2, 3, 4, 5;
         INSERT INTO funnel_shopper_hours
           SELECT brand, dim,
                  CASE dim WHEN 0 THEN device WHEN 1 THEN scene WHEN 2 THEN offer ELSE '' END,
                  shopper, array_agg(hour_ms ORDER BY hour_ms), max(hour_ms)
           FROM gen CROSS JOIN dims WHERE stage = 2 GROUP BY 1, 2, 3, 4;
         DROP TABLE gen;
         ANALYZE;"
    ))?;
    let cells: i64 = c
        .query_one("SELECT count(*) FROM funnel_cells", &[])?
        .get(0);
    let shoppers: i64 = c
        .query_one("SELECT count(*) FROM funnel_shopper_hours", &[])?
        .get(0);
    let listed: i64 = c
        .query_one(
            "SELECT sum(cardinality(hours))::int8 FROM funnel_shopper_hours",
            &[],
        )?
        .get(0);
    let stored: i64 = c.query_one("SELECT count(*) FROM events", &[])?.get(0);
    println!(
        "# funnel data: {stored} events, {cells} cells, {shoppers} shopper rows listing {listed} purchases, built in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    // Ends 7 hours into a day, so every range has hours at its edges as well as days.
    let end = 1_748_736_000_000i64 + (89 * 24 + 7) * 3_600_000;
    for (what, by, days) in [
        ("by touchpoint, 7 days", GroupBy::Touchpoint, 7),
        ("by scene, 30 days", GroupBy::Scene, 30),
        ("by offer, 89 days", GroupBy::Offer, 89),
        ("by hour, 1 day", GroupBy::Hour, 1),
    ] {
        let from = end - days * 86_400_000;
        let mut loyal = 0;
        let mut took: Vec<Duration> = (0..queries)
            .map(|_| {
                let t = Instant::now();
                let f = pg::read::funnel(&mut c, "brand-1", by, from, end).expect("funnel");
                assert!(f.1.awareness > 0);
                loyal = f.1.loyalty;
                t.elapsed()
            })
            .collect();
        took.sort();
        let p = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "funnel {what}: p50 {:.1} ms, p99 {:.1} ms ({:.2}x the 50 ms target), {loyal} loyal",
            p(0.5),
            p(0.99),
            p(0.99) / 50.0
        );
    }
    Ok(())
}

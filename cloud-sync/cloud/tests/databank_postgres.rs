//! The data bank on PostgreSQL, against a private cluster each test starts (initdb on a
//! free port): the same exactly-once bookkeeping as SQLite with several ingesters on one
//! database, day partitions and retention, the funnel from rollups agreeing with the funnel
//! computed from raw events, and the whole data bank (MQTT in, HTTP out) on it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use caidan_cloud::databank::funnel::{self, GroupBy};
use caidan_cloud::databank::store::dead_letter::DeadLetter;
use caidan_cloud::databank::store::pg::{self, PgOptions, PgStore, schema};
use caidan_cloud::databank::store::{Outcome, Store, Work};
use caidan_cloud::databank::{Databank, StoreUrl};
use caidan_sync::clock::{Clock, ManualClock, SystemClock};
use caidan_sync::contract::{Event, Received};
use caidan_testkit::Postgres;
use common::{Mosquitto, TestClient};
use serde_json::{Value, json};
use uuid::Uuid;

const EPOCH: &str = "0195a0c4-0000-7000-8000-0000000000e1";

fn cluster() -> Postgres {
    // Durability is not under test here; the benchmark runs with fsync on.
    Postgres::start(&["fsync=off", "max_connections=50"])
}

fn options(url: &str) -> PgOptions {
    PgOptions {
        url: url.to_owned(),
        retention_days: None,
    }
}

fn open(url: &str) -> PgStore {
    PgStore::open(options(url), Arc::new(SystemClock::new())).unwrap()
}

fn received(v: Value) -> Received {
    let raw = v.to_string();
    Received {
        event: Event::parse(&raw).unwrap(),
        raw,
    }
}

fn batch(device: &str, seqs: std::ops::RangeInclusive<u64>) -> Work {
    Work::Batch(
        seqs.map(|s| received(common::event(device, EPOCH, s)))
            .collect(),
    )
}

fn ack(out: &[Outcome]) -> u64 {
    out.last().unwrap().acks[0].seq
}

#[test]
fn dedups_acks_the_contiguous_prefix_and_sets_conflicts_aside() {
    let pg = cluster();
    let url = pg.create_db("dedup");
    let (one, two, three) = (
        common::event("d1", EPOCH, 1),
        common::event("d1", EPOCH, 2),
        common::event("d1", EPOCH, 3),
    );
    {
        let mut store = open(&url);
        let out = store
            .apply(&[
                Work::Batch(vec![received(one.clone())]),
                Work::Batch(vec![received(three.clone())]),
            ])
            .unwrap();
        assert_eq!((out[0].acks[0].seq, out[1].acks[0].seq), (1, 1), "gap at 2");
    }
    let mut store = open(&url);
    let out = store
        .apply(&[Work::Batch(vec![received(one.clone()), received(two)])])
        .unwrap();
    assert_eq!((out[0].inserted, out[0].duplicates), (1, 1));
    assert_eq!(
        ack(&out),
        3,
        "3 remembered beyond the gap, across a reconnect"
    );

    // The same id at a new seq, and a new id at a stored seq: set aside, seqs not counted.
    let mut moved = one.clone();
    moved["seq"] = json!(4);
    let mut other = common::event("d1", EPOCH, 2);
    other["id"] = json!(Uuid::now_v7().to_string());
    let out = store
        .apply(&[Work::Batch(vec![received(moved), received(other)])])
        .unwrap();
    assert_eq!(out[0].conflicts, vec!["id_conflict", "seq_conflict"]);
    assert_eq!((out[0].inserted, ack(&out)), (0, 3));
    // Twice the same new event in one batch: stored once.
    let four = common::event("d1", EPOCH, 4);
    let out = store
        .apply(&[Work::Batch(vec![received(four.clone()), received(four)])])
        .unwrap();
    assert_eq!((out[0].inserted, out[0].duplicates, ack(&out)), (1, 1, 4));
    assert_eq!(store.event_count().unwrap(), 4);
    let mut c = pg::connect(&url).unwrap();
    let letters = pg::read::dead_letters(&mut c, 10).unwrap();
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(reasons, ["id_conflict", "seq_conflict"]);

    // A garbled payload with NUL bytes (PostgreSQL text cannot hold them) is still kept,
    // and counted once however often it comes.
    let garbled = DeadLetter::new(
        "caidan/v1/demo/d/d1/events",
        "garbled",
        "not JSON\0",
        b"\0\0{junk",
    );
    for _ in 0..3 {
        store.apply(&[Work::DeadLetter(garbled.clone())]).unwrap();
    }
    let letters = pg::read::dead_letters(&mut c, 10).unwrap();
    let kept = letters
        .iter()
        .find(|l| l.reason == "garbled")
        .expect("kept");
    assert_eq!((kept.count, kept.size), (3, 7));
    assert!(kept.head.ends_with("{junk") && !kept.head.contains('\0'));
}

/// Four ingesters on one database, batches of three devices dealt round-robin and every
/// batch delivered twice to different ingesters, all at once: each event stored once,
/// every ingester's acks per device never move backwards, and the progress ends complete.
#[test]
fn concurrent_ingesters_store_each_event_once() {
    const INGESTERS: usize = 4;
    const BATCHES: u64 = 60;
    const PER: u64 = 20;
    let pg = cluster();
    let url = pg.create_db("concurrent");
    drop(open(&url));
    let devices = ["c1", "c2", "c3"];
    let work: Vec<(usize, Work)> = (0..BATCHES)
        .flat_map(|i| {
            let seqs = i * PER + 1..=i * PER + PER;
            devices.iter().flat_map(move |d| {
                let w = batch(d, seqs.clone());
                [
                    (i as usize % INGESTERS, w.clone()),
                    ((i as usize + 1) % INGESTERS, w),
                ]
            })
        })
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(INGESTERS));
    let threads: Vec<_> = (0..INGESTERS)
        .map(|me| {
            let mine: Vec<Work> = work
                .iter()
                .filter(|(who, _)| *who == me)
                .map(|(_, w)| w.clone())
                .collect();
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut store = open(&url);
                barrier.wait();
                let mut acks: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
                for group in mine.chunks(3) {
                    let out = store.apply(group).unwrap();
                    for a in out.iter().flat_map(|o| &o.acks) {
                        acks.entry(a.device.clone()).or_default().push(a.seq);
                    }
                }
                acks
            })
        })
        .collect();
    for t in threads {
        for (device, seqs) in t.join().unwrap() {
            assert!(seqs.windows(2).all(|p| p[0] <= p[1]), "{device}: {seqs:?}");
        }
    }
    let total = BATCHES * PER;
    assert_eq!(
        pg.psql(
            "concurrent",
            "SELECT count(*), count(DISTINCT id) FROM events"
        ),
        format!("{}|{}", total * 3, total * 3)
    );
    assert_eq!(
        pg.psql(
            "concurrent",
            "SELECT string_agg(contiguous::text || beyond, ',' ORDER BY device) FROM seq_progress"
        ),
        format!("{total}[],{total}[],{total}[]")
    );
}

/// Three days of mixed events (impressions, scans, claims, redemptions; touchpoints,
/// hours and repeat shoppers varied) stored in SQLite and in PostgreSQL: the PostgreSQL
/// funnel, read from its rollups, equals the funnel aggregated from SQLite's raw events,
/// for every grouping and brand.
#[test]
fn funnel_from_rollups_equals_the_funnel_from_raw_events() {
    let pg = cluster();
    let url = pg.create_db("funnel");
    let dir = tempfile::tempdir().unwrap();
    let mut lite = Store::open(&dir.path().join("bank.db"), Arc::new(SystemClock::new())).unwrap();
    let mut store = open(&url);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let base = jiff::Timestamp::from_second(1_740_787_200).unwrap(); // 2025-03-01T00:00Z
    for d in 0..4 {
        let device = format!("f{d}");
        let events: Vec<Received> = (1..=1500)
            .map(|seq| {
                let mut e = common::event(&device, EPOCH, next(4) + 4 * seq);
                e["seq"] = json!(seq);
                let t = base
                    .checked_add(jiff::SignedDuration::from_secs(next(3 * 86_400) as i64))
                    .unwrap();
                e["time"] = json!(t.to_string());
                if e["data"].get("shopper").is_some() {
                    e["data"]["shopper"] = json!(common::shopper(next(15)));
                }
                if e["data"].get("count").is_some() {
                    e["data"]["count"] = json!(next(9));
                }
                e["data"]["scene"] = json!(["cinema", "campus", "transit"][next(3) as usize]);
                received(e)
            })
            .collect();
        for chunk in events.chunks(50) {
            let w = [Work::Batch(chunk.to_vec())];
            lite.apply(&w).unwrap();
            store.apply(&w).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(dir.path().join("bank.db")).unwrap();
    let mut c = pg::connect(&url).unwrap();
    let (from, to) = (base.as_millisecond(), base.as_millisecond() + 86_400_000);
    const H: i64 = 3_600_000;
    // A day, all three days, ranges with hours at both edges, and one hour.
    let ranges = [
        (from, to),
        (from, from + 72 * H),
        (from + 7 * H, from + 55 * H),
        (from + 30 * H, from + 31 * H),
    ];
    for (lo, hi) in ranges {
        for brand in ["lumi-cola", "dawn-coffee"] {
            for by in [
                GroupBy::Touchpoint,
                GroupBy::Scene,
                GroupBy::Offer,
                GroupBy::Hour,
            ] {
                let facts = funnel::load_facts(&conn, brand, lo, hi).unwrap();
                let want = funnel::aggregate(brand, by, facts);
                let got = pg::read::funnel(&mut c, brand, by, lo, hi).unwrap();
                assert_eq!(got, want, "{brand} by {by:?} over [{lo}, {hi})");
                assert!(want.1.interest > 0, "{brand}: {:?}", want.1);
            }
        }
    }
    let lumi = pg::read::funnel(&mut c, "lumi-cola", GroupBy::Hour, from, to).unwrap();
    assert!(
        lumi.1.awareness > 0 && lumi.1.purchase > 0 && lumi.1.loyalty > 0,
        "{:?}",
        lumi.1
    );
    assert_eq!(lumi.0.len(), 24);
}

fn event_on_day(device: &str, seq: u64, day: i64) -> Received {
    let mut e = common::event(device, EPOCH, seq);
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, (day * 86_400 + 3_600) as u64, 0);
    e["id"] = json!(Uuid::new_v7(ts).to_string());
    received(e)
}

fn partitions(pg: &Postgres, db: &str) -> String {
    pg.psql(
        db,
        "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass",
    )
}

/// Events go to the partition of the day in their id; days far from the bank's clock go
/// to the default partition; retention drops whole day partitions (and the default's old
/// rows) and leaves the funnel rollups alone.
#[test]
fn day_partitions_and_retention() {
    let pg = cluster();
    let url = pg.create_db("days");
    let today: i64 = 20_300;
    let clock = Arc::new(ManualClock::new(today * 86_400_000 + 12 * 3_600_000));
    let opts = PgOptions {
        url: url.clone(),
        retention_days: Some(10),
    };
    let mut store = PgStore::open(opts.clone(), clock.clone() as Arc<dyn Clock>).unwrap();
    let made = partitions(&pg, "days");
    assert_eq!(
        made,
        format!(
            "events_d{today},events_d{},events_d{},events_default",
            today + 1,
            today + 2
        )
    );
    let days = [today, today - 5, today - 20, today + 100];
    let events: Vec<Received> = days
        .iter()
        .enumerate()
        .map(|(i, d)| event_on_day("p1", i as u64 + 1, *d))
        .collect();
    let out = store.apply(&[Work::Batch(events.clone())]).unwrap();
    assert_eq!((out[0].inserted, ack(&out)), (4, 4));
    let per_table = pg.psql(
        "days",
        "SELECT string_agg(tableoid::regclass::text || ':' || id_day, ',' ORDER BY id_day) FROM events",
    );
    assert_eq!(
        per_table,
        format!(
            "events_default:{},events_d{}:{},events_d{today}:{today},events_default:{}",
            today - 20,
            today - 5,
            today - 5,
            today + 100
        )
    );
    let mut c = pg::connect(&url).unwrap();
    let all = (0, i64::MAX / 2);
    let before = pg::read::funnel(&mut c, "lumi-cola", GroupBy::Scene, all.0, all.1).unwrap();
    // A day whose events already sit in the default partition keeps them there.
    assert!(!schema::create_partition(&mut c, (today + 100) as i32).unwrap());

    // Eight days on, retention (10 days) drops today-5 and deletes today-20's rows.
    clock.advance_ms(8 * 86_400_000);
    store.maintain().unwrap();
    assert!(!partitions(&pg, "days").contains(&format!("events_d{}", today - 5)));
    assert_eq!(
        pg.psql(
            "days",
            "SELECT string_agg(id_day::text, ',' ORDER BY id_day) FROM events"
        ),
        format!("{today},{}", today + 100)
    );
    let after = pg::read::funnel(&mut c, "lumi-cola", GroupBy::Scene, all.0, all.1).unwrap();
    assert_eq!(after, before, "the rollups outlive the raw events");
    // Redelivering a dropped day's event is recognised by the kept progress.
    let again = store
        .apply(&[Work::Batch(vec![events[1].clone(), events[2].clone()])])
        .unwrap();
    assert_eq!((again[0].inserted, again[0].duplicates), (0, 2));
    assert!(again[0].conflicts.is_empty(), "{:?}", again[0].conflicts);
    // Another id at a recorded seq of a kept day is still a conflict.
    let out = store
        .apply(&[Work::Batch(vec![event_on_day("p1", 1, today)])])
        .unwrap();
    assert_eq!(out[0].conflicts, ["seq_conflict"]);
}

/// Two whole data banks on one PostgreSQL database behind one Mosquitto shared
/// subscription: every batch acknowledged, every event stored once, and the HTTP API
/// (funnel from rollups, devices, dead letters) served from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_data_banks_share_one_database() {
    let pg = cluster();
    let url = pg.create_db("shared");
    let m = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let start = |id: &str| {
        let mut cfg =
            common::databank_config(m.addr, &dir.path().join("unused.db"), Some("databank"), id);
        cfg.store = StoreUrl::Postgres(options(&url));
        Databank::start(cfg)
    };
    let a = start("caidan-databank-pg-a").await.expect("data bank a");
    let b = start("caidan-databank-pg-b").await.expect("data bank b");
    let tc = TestClient::connect(m.addr, "test-device-pg", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    const BATCHES: u64 = 100;
    for i in 0..BATCHES {
        let payload = common::batch("s1", EPOCH, i * 10 + 1..=i * 10 + 10);
        tc.publish("s1", payload).await;
    }
    tc.wait_ack("s1", EPOCH, BATCHES * 10).await;
    let stored = |db: &str| pg.psql(db, "SELECT count(*), count(DISTINCT id) FROM events");
    assert_eq!(stored("shared"), format!("{0}|{0}", BATCHES * 10));
    let (ma, mb) = (a.metrics(), b.metrics());
    let load = |m: &caidan_cloud::databank::metrics::Metrics| {
        m.events_stored.load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(load(ma) + load(mb), BATCHES * 10);
    assert!(
        load(ma) > 0 && load(mb) > 0,
        "the share group split the load"
    );

    // The funnel answers for whole hours, and says so.
    let url_of = |path: &str| format!("http://{}{path}", a.http_addr());
    let (status, body) = common::get(
        url_of("/api/v1/brands/lumi-cola/funnel?by=scene&from=2025-03-01T10:15:00Z&to=2025-03-01T10:45:00Z"),
        Some("demo-token-lumi"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let f: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(f["from"], "2025-03-01T10:00:00Z");
    assert_eq!(f["to"], "2025-03-01T11:00:00Z");
    // Of each 4 seqs: an impression (3 shown), a scan, a claim, a redemption.
    assert_eq!(f["totals"]["awareness"], 3 * BATCHES * 10 / 4);
    assert_eq!(f["totals"]["interest"], 2 * BATCHES * 10 / 4);
    assert_eq!(f["totals"]["purchase"], BATCHES * 10 / 4);
    for path in ["/api/v1/devices", "/api/v1/dead-letters"] {
        let (status, body) = common::get(url_of(path), Some("demo-operator-token")).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A shopper's purchases arriving newest first, in one batch and then merged with a later
/// batch, are kept as one sorted list per grouping row: the binary searches of the Loyalty
/// query depend on it.
#[test]
fn a_shoppers_purchase_hours_are_kept_sorted() {
    let pg = cluster();
    let url = pg.create_db("sorted");
    let mut store = open(&url);
    let at = |seq: u64, hour: u32| {
        // seq 3 mod 4 is a redemption of shopper(seq % 3).
        let mut e = common::event("s1", EPOCH, seq);
        e["time"] = json!(format!("2025-03-01T{hour:02}:30:00Z"));
        received(e)
    };
    // Seqs 3, 15, 27 are all shopper(0): hours 9, 5, 7 in that order, then 6.
    let base = 1_740_787_200_000i64; // 2025-03-01T00:00Z
    let stored = || {
        pg.psql(
            "sorted",
            "SELECT string_agg(DISTINCT array_to_string(hours, ','), ';') FROM funnel_shopper_hours",
        )
    };
    let hours = |hs: &[i64]| {
        hs.iter()
            .map(|h| (base + h * 3_600_000).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    store
        .apply(&[Work::Batch(vec![at(3, 9), at(15, 5), at(27, 7)])])
        .unwrap();
    assert_eq!(stored(), hours(&[5, 7, 9]), "a new list, sorted");
    store.apply(&[Work::Batch(vec![at(39, 6)])]).unwrap();
    assert_eq!(stored(), hours(&[5, 6, 7, 9]), "merged, still sorted");
}

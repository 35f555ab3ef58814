//! The store on real SQLite files: dedup, gaps, reopening, two ingesters on one file.

use caidan_sync::clock::SystemClock;
use caidan_sync::contract::{Event, Ident, ScanData, ShopperHash};

use super::*;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new())
}

/// Test epochs by name: `e1`, `e2` ... as UUIDs.
fn epoch_of(name: &str) -> Uuid {
    let n: u128 = name.trim_start_matches('e').parse().unwrap();
    Uuid::from_u128(0x0195a0c4_0000_7000_8000_000000000000 + n)
}

pub(crate) fn ev(device: &str, epoch: &str, seq: u64) -> Received {
    let event = Event {
        id: Uuid::now_v7(),
        time: jiff::Timestamp::from_millisecond(1_000).unwrap(),
        fleet: Name::new("demo").unwrap(),
        device: Name::new(device).unwrap(),
        epoch: epoch_of(epoch),
        seq,
        boot: None,
        subject: None,
        brand: None,
        data: EventData::Scan(ScanData {
            shopper: ShopperHash::new("0123456789abcdef0123456789abcdef").unwrap(),
            brands: vec![Ident::new("acme").unwrap()],
            scene: caidan_sync::contract::Scene::Cinema,
            uptime_ms: 0,
        }),
    };
    Received {
        raw: event.to_json(),
        event,
    }
}

#[test]
fn new_stores_use_the_larger_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    drop(Store::open(&path, clock()).unwrap());
    let conn = open_connection(&path, false).unwrap();
    let size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    assert_eq!(size, PAGE_SIZE);
}

#[test]
fn dedups_and_acks_contiguous_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let (a, b, c) = (ev("d1", "e1", 1), ev("d1", "e1", 2), ev("d1", "e1", 3));
    {
        let mut store = Store::open(&path, clock()).unwrap();
        let out = store
            .apply(&[Work::Batch(vec![a.clone()]), Work::Batch(vec![c.clone()])])
            .unwrap();
        assert_eq!(out[0].acks[0].seq, 1);
        assert_eq!(out[1].acks[0].seq, 1, "gap at 2");
    }
    let mut store = Store::open(&path, clock()).unwrap();
    let out = store.apply(&[Work::Batch(vec![a, b])]).unwrap();
    assert_eq!(out[0].inserted, 1);
    assert_eq!(out[0].duplicates, 1);
    assert_eq!(out[0].acks[0].seq, 3, "3 remembered beyond the gap");
    assert_eq!(store.event_count().unwrap(), 3);
}

fn batch(device: &str, epoch: &str, seqs: std::ops::RangeInclusive<u64>) -> Work {
    Work::Batch(seqs.map(|s| ev(device, epoch, s)).collect())
}

fn ack_of(out: &[Outcome]) -> u64 {
    out.last().unwrap().acks[0].seq
}

/// Two stores (two ingesters) on one file, batches of one device alternating between
/// them: each merges the other's committed progress instead of overwriting it.
#[test]
fn two_stores_on_one_file_merge_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let mut a = Store::open(&path, clock()).unwrap();
    let mut b = Store::open(&path, clock()).unwrap();
    assert_eq!(ack_of(&a.apply(&[batch("d1", "e1", 1..=10)]).unwrap()), 10);
    let second = batch("d1", "e1", 11..=20);
    assert_eq!(ack_of(&b.apply(std::slice::from_ref(&second)).unwrap()), 20);
    assert_eq!(
        ack_of(&a.apply(&[batch("d1", "e1", 21..=30)]).unwrap()),
        30,
        "a sees b's 11..=20"
    );
    // A gap left by one store is closed by the other, ranges beyond it included.
    assert_eq!(ack_of(&b.apply(&[batch("d1", "e1", 41..=50)]).unwrap()), 30);
    assert_eq!(ack_of(&a.apply(&[batch("d1", "e1", 51..=60)]).unwrap()), 30);
    assert_eq!(ack_of(&b.apply(&[batch("d1", "e1", 31..=40)]).unwrap()), 60);
    // A redelivered batch on the store that did not write it: acked at the true value.
    let out = a.apply(&[second]).unwrap();
    assert_eq!((out[0].inserted, out[0].duplicates), (0, 10));
    assert_eq!(ack_of(&out), 60);
    assert_eq!(a.event_count().unwrap(), 60);
    let row: (i64, String) = b
        .conn
        .query_row("SELECT contiguous, beyond FROM seq_progress", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(row, (60, "[]".to_owned()));
}

/// Two writer threads on one file commit concurrently: the immediate transactions
/// serialize (no SQLITE_BUSY), each store's acks never move backwards, and the last
/// commit acknowledges everything.
#[test]
fn concurrent_stores_serialize_and_ack_the_merged_prefix() {
    const BATCHES: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    drop(Store::open(&path, clock()).unwrap());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let writers: Vec<_> = (0..2u64)
        .map(|parity| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut store = Store::open(&path, clock()).unwrap();
                barrier.wait();
                let mut acks = Vec::new();
                for i in (parity..BATCHES).step_by(2) {
                    let out = store
                        .apply(&[batch("d1", "e1", i * 10 + 1..=i * 10 + 10)])
                        .unwrap();
                    acks.push(ack_of(&out));
                }
                acks
            })
        })
        .collect();
    let mut last = Vec::new();
    for w in writers {
        let acks = w.join().unwrap();
        assert!(acks.windows(2).all(|p| p[0] <= p[1]), "{acks:?}");
        last.push(*acks.last().unwrap());
    }
    assert!(last.contains(&(BATCHES * 10)), "last acks {last:?}");
    let mut store = Store::open(&path, clock()).unwrap();
    assert_eq!(store.event_count().unwrap(), BATCHES * 10);
    let out = store.apply(&[batch("d1", "e1", 1..=1)]).unwrap();
    assert_eq!(ack_of(&out), BATCHES * 10);
}

/// A writer that cannot get the lock in time fails as "busy", with nothing written, and
/// succeeds once the other writer is done.
#[test]
fn busy_when_another_writer_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let mut store = Store::open(&path, clock()).unwrap();
    store
        .conn
        .busy_timeout(std::time::Duration::from_millis(50))
        .unwrap();
    let other = open_connection(&path, true).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let work = [batch("d1", "e1", 1..=3)];
    let err = store.apply(&work).unwrap_err();
    assert!(err.is_busy(), "{err}");
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(store.event_count().unwrap(), 0);
    assert_eq!(ack_of(&store.apply(&work).unwrap()), 3);
}

#[test]
fn keeps_device_state_and_last_stock() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite"), clock()).unwrap();
    let state = |payload: serde_json::Value| Work::State {
        fleet: Name::new("demo").unwrap(),
        device: Name::new("d1").unwrap(),
        state: serde_json::from_value(payload).unwrap(),
    };
    store
        .apply(&[state(
            serde_json::json!({"online": true, "profile": "kiosk", "stock": {"sku1": 4}}),
        )])
        .unwrap();
    store
        .apply(&[state(
            serde_json::json!({"online": false, "profile": "kiosk"}),
        )])
        .unwrap();
    let (online, stock): (Option<bool>, Option<String>) = store
        .conn
        .query_row("SELECT online, stock FROM devices", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(online, Some(false));
    assert_eq!(stock.as_deref(), Some(r#"{"sku1":4}"#));
}

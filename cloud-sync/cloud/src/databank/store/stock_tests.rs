//! The latest-level rule on real SQLite files: seq within an epoch, the current epoch by
//! time, convergence whatever the arrival order, and the upgrade of a v2 store.

use std::sync::Arc;

use caidan_sync::clock::{Clock, SystemClock};
use caidan_sync::contract::{
    Event, EventData, Ident, Name, OrderData, OrderLine, OrderState, Received, Scene, StockData,
    StockLevel, StockReason,
};
use proptest::prelude::*;
use uuid::Uuid;

use super::super::{Store, Work, open_connection, schema};
use super::{available, current_level};

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new())
}

fn epoch(n: u128) -> Uuid {
    Uuid::from_u128(0x0195a0c4_0000_7000_8000_000000000000 + n)
}

fn event(device: &str, epoch_n: u128, seq: u64, time_ms: i64, data: EventData) -> Received {
    let event = Event {
        id: Uuid::now_v7(),
        time: jiff::Timestamp::from_millisecond(time_ms).unwrap(),
        fleet: Name::new("demo").unwrap(),
        device: Name::new(device).unwrap(),
        epoch: epoch(epoch_n),
        seq,
        boot: None,
        subject: None,
        brand: None,
        data,
    };
    Received {
        raw: event.to_json(),
        event,
    }
}

/// A stock event setting `sku` to `on_hand` / `reserved`.
fn stock(
    device: &str,
    epoch_n: u128,
    seq: u64,
    time_ms: i64,
    sku: &str,
    on_hand: u32,
    reserved: u32,
) -> Received {
    let data = EventData::Stock(StockData {
        sku: Ident::new(sku).unwrap(),
        on_hand,
        reserved,
        delta: 0,
        reason: StockReason::Count,
        note: None,
        scene: Scene::Vending,
        uptime_ms: 0,
    });
    event(device, epoch_n, seq, time_ms, data)
}

/// An order event whose `stock` array carries the given levels.
fn order(
    device: &str,
    epoch_n: u128,
    seq: u64,
    state: OrderState,
    levels: &[(&str, u32, u32)],
) -> Received {
    let data = EventData::Order(OrderData {
        order: Ident::new(format!("o-{seq}")).unwrap(),
        state,
        reason: None,
        fault: None,
        by: None,
        lines: levels
            .iter()
            .map(|(sku, _, _)| OrderLine {
                sku: Ident::new(*sku).unwrap(),
                qty: 1,
            })
            .collect(),
        stock: levels
            .iter()
            .map(|(sku, on_hand, reserved)| StockLevel {
                sku: Ident::new(*sku).unwrap(),
                on_hand: *on_hand,
                reserved: *reserved,
            })
            .collect(),
        shopper: None,
        brand: Some(Ident::new("lumi-cola").unwrap()),
        offer: None,
        scene: Scene::Vending,
        uptime_ms: 0,
    });
    event(device, epoch_n, seq, 5_000 + seq as i64, data)
}

fn level(store: &Store, device: &str, sku: &str) -> Option<(u32, u32)> {
    current_level(&store.conn, "demo", device, sku).unwrap()
}

#[test]
fn the_highest_seq_of_an_epoch_wins_whatever_the_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite"), clock()).unwrap();
    let old = stock("d1", 1, 2, 2_000, "cola", 7, 0);
    store
        .apply(&[Work::Batch(vec![stock("d1", 1, 1, 1_000, "cola", 5, 0)])])
        .unwrap();
    // Seq 3 overtakes seq 2 (another ingester, a redelivery); its clock even went back.
    store
        .apply(&[Work::Batch(vec![stock("d1", 1, 3, 500, "cola", 1, 0)])])
        .unwrap();
    store.apply(&[Work::Batch(vec![old.clone()])]).unwrap();
    assert_eq!(level(&store, "d1", "cola"), Some((1, 0)));
    // An order's levels count like a stock event's, each SKU of it.
    let reserve = order(
        "d1",
        1,
        4,
        OrderState::Reserved,
        &[("cola", 1, 1), ("tea", 4, 1)],
    );
    store.apply(&[Work::Batch(vec![reserve])]).unwrap();
    assert_eq!(level(&store, "d1", "cola"), Some((1, 1)));
    assert_eq!(level(&store, "d1", "tea"), Some((4, 1)));
    // Redelivered, seq 2 changes nothing; cola is now fully reserved, so not available.
    let out = store.apply(&[Work::Batch(vec![old])]).unwrap();
    assert_eq!(out[0].duplicates, 1);
    assert_eq!(level(&store, "d1", "cola"), Some((1, 1)));
    assert!(available(&store.conn, "demo", "cola").unwrap().is_empty());
    let tea = available(&store.conn, "demo", "tea").unwrap();
    assert_eq!((tea.len(), tea[0].on_hand, tea[0].reserved), (1, 4, 1));
    assert!(available(&store.conn, "other", "tea").unwrap().is_empty());
}

#[test]
fn the_epoch_with_the_latest_event_time_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db.sqlite"), clock()).unwrap();
    store
        .apply(&[Work::Batch(vec![
            stock("d1", 1, 1, 1_000, "cola", 5, 0),
            stock("d1", 1, 2, 2_000, "tea", 3, 0),
        ])])
        .unwrap();
    // The store was made anew: epoch 2 starts later and knows no tea.
    store
        .apply(&[Work::Batch(vec![stock("d1", 2, 1, 3_000, "cola", 9, 0)])])
        .unwrap();
    assert_eq!(level(&store, "d1", "cola"), Some((9, 0)));
    assert_eq!(
        level(&store, "d1", "tea"),
        None,
        "only the current epoch counts"
    );
    assert!(available(&store.conn, "demo", "tea").unwrap().is_empty());
    // A late event of the old epoch, older than the new one's: nothing changes.
    store
        .apply(&[Work::Batch(vec![stock("d1", 1, 3, 2_500, "cola", 1, 0)])])
        .unwrap();
    assert_eq!(level(&store, "d1", "cola"), Some((9, 0)));
    // Any event type moves the epoch's time, not only stock.
    store
        .apply(&[Work::Batch(vec![super::super::tests::ev("d1", "e1", 4)])])
        .unwrap();
    assert_eq!(level(&store, "d1", "cola"), Some((9, 0)), "e1 is epoch 1");
    let mut scan = super::super::tests::ev("d1", "e1", 5);
    scan.event.time = jiff::Timestamp::from_millisecond(4_000).unwrap();
    scan.raw = scan.event.to_json();
    store.apply(&[Work::Batch(vec![scan])]).unwrap();
    assert_eq!(
        level(&store, "d1", "cola"),
        Some((1, 0)),
        "epoch 1's latest event is now the latest: its levels count again"
    );
}

/// (device, SKU) and its level (on hand, reserved), if any.
type Levels = Vec<((String, String), Option<(u32, u32)>)>;

/// The current epoch and highest-seq level per (device, SKU) of `devices`, computed from
/// the events alone: what every arrival order must end at.
fn expected(events: &[Received], devices: &[String; 2]) -> Levels {
    use std::collections::BTreeMap;
    let mut epoch_time: BTreeMap<(String, Uuid), i64> = BTreeMap::new();
    for r in events {
        let e = &r.event;
        let t = epoch_time
            .entry((e.device.to_string(), e.epoch))
            .or_insert(i64::MIN);
        *t = (*t).max(e.time.as_millisecond());
    }
    let mut out = Vec::new();
    for device in devices {
        let current = epoch_time
            .iter()
            .filter(|((d, _), _)| d == device)
            .max_by_key(|((_, ep), t)| (**t, ep.as_hyphenated().to_string()))
            .map(|((_, ep), _)| *ep);
        for sku in ["a", "b", "c"] {
            let best = events
                .iter()
                .filter(|r| Some(r.event.epoch) == current && r.event.device.as_str() == device)
                .filter_map(|r| match &r.event.data {
                    EventData::Stock(d) if d.sku.as_str() == sku => {
                        Some((r.event.seq, (d.on_hand, d.reserved)))
                    }
                    _ => None,
                })
                .max_by_key(|(seq, _)| *seq)
                .map(|(_, l)| l);
            out.push(((device.clone(), sku.to_owned()), best));
        }
    }
    out
}

/// Two devices, two epochs each, stock events with clocks that jump: whatever order the
/// batches arrive in (split and shuffled twice, then each redelivered), the levels end the
/// same, and as the rule says.
#[test]
fn levels_converge_whatever_the_arrival_order() {
    // Two stores for all cases (opening one costs a checkpointer thread); each case has
    // devices of its own.
    let dir = tempfile::tempdir().unwrap();
    let open = |k: usize| Store::open(&dir.path().join(format!("db{k}.sqlite")), clock()).unwrap();
    let stores = std::cell::RefCell::new([open(0), open(1)]);
    let case = std::cell::Cell::new(0u64);
    let runs = prop::collection::vec(
        prop::collection::vec((0usize..3, 0u32..5, 0u32..3, 0i64..50), 1..8),
        4..=4,
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    let result = runner.run(
        &(runs, any::<u64>(), any::<u64>()),
        |(runs, seed_a, seed_b)| {
            case.set(case.get() + 1);
            let devices = [format!("c{}-d1", case.get()), format!("c{}-d2", case.get())];
            let mut events = Vec::new();
            for (i, run) in runs.iter().enumerate() {
                let device = &devices[i / 2];
                for (n, (sku, on_hand, reserved, time)) in run.iter().enumerate() {
                    let sku = ["a", "b", "c"][*sku];
                    let reserved = (*reserved).min(*on_hand);
                    let (epoch, seq) = ((i % 2) as u128, n as u64 + 1);
                    events.push(stock(
                        device,
                        epoch,
                        seq,
                        *time * 100,
                        sku,
                        *on_hand,
                        reserved,
                    ));
                }
            }
            let want = expected(&events, &devices);
            let mut stores = stores.borrow_mut();
            for (k, seed) in [seed_a, seed_b].into_iter().enumerate() {
                let mut shuffled = events.clone();
                shuffle(&mut shuffled, seed);
                let store = &mut stores[k];
                // Uneven batches; each redelivered once in a later transaction.
                let batches: Vec<Work> = shuffled
                    .chunks(1 + (seed % 3) as usize)
                    .map(|c| Work::Batch(c.to_vec()))
                    .collect();
                store.apply(&batches).unwrap();
                let mut again = batches.clone();
                again.reverse();
                store.apply(&again).unwrap();
                let got: Vec<_> = want
                    .iter()
                    .map(|((d, s), _)| ((d.clone(), s.clone()), level(store, d, s)))
                    .collect();
                prop_assert_eq!(&got, &want, "arrival order {}", k);
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A deterministic Fisher-Yates shuffle from `seed` (splitmix64).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    let mut next = || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// A store written by the previous build (schema v2) with order and stock events and a
/// located device: opening it migrates to v3 and fills the new tables from what it holds.
#[test]
fn a_v2_store_is_upgraded_with_its_stock_and_locations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        schema::create_v2(&conn).unwrap();
        let events = [
            stock("d1", 1, 1, 1_000, "cola", 5, 0),
            order("d1", 1, 3, OrderState::PickedUp, &[("cola", 3, 0)]),
            order("d1", 1, 2, OrderState::Reserved, &[("cola", 5, 2)]),
        ];
        for r in &events {
            let e = &r.event;
            conn.execute(
                "INSERT INTO events (id, fleet, device, epoch, seq, type, time_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    e.id.to_string(),
                    e.fleet.as_str(),
                    e.device.as_str(),
                    e.epoch.to_string(),
                    e.seq as i64,
                    e.event_type().as_str(),
                    e.time.as_millisecond(),
                    r.raw
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO devices (fleet, device, online, state, updated_ms) VALUES
             ('demo', 'd1', 1, ?1, 0)",
            [r#"{"online":true,"profile":"vending","location":{"lat":31.24,"lon":121.49}}"#],
        )
        .unwrap();
    }
    let store = Store::open(&path, clock()).unwrap();
    let version: i64 = store
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, super::super::SCHEMA_VERSION);
    assert_eq!(
        level(&store, "d1", "cola"),
        Some((3, 0)),
        "seq 3 is the latest"
    );
    let states: Vec<Option<String>> = store
        .conn
        .prepare("SELECT order_state FROM events ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        states,
        [None, Some("reserved".into()), Some("picked_up".into())]
    );
    let found = available(&store.conn, "demo", "cola").unwrap();
    assert_eq!(
        found[0].location.map(|l| (l.lat, l.lon)),
        Some((31.24, 121.49))
    );
    // Reopening a v3 store changes nothing.
    drop(store);
    let conn = open_connection(&path, true).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM stock_levels", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

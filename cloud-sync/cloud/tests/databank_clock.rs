//! Event times of devices whose clocks cannot be believed, placed on the data bank's clock
//! from each run's `boot` and `uptime_ms`; a believed backlog keeps its times.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use caidan_sync::topics;
use common::{FLEET, Mosquitto, TestClient, epoch, event, start_databank, store_in};
use rumqttc::QoS;
use serde_json::{Value, json};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Events 1..=n of `device` in run `boot`, with `time` as given and uptime `seq * 1000`.
fn run_batch(device: &str, e: &str, boot: &str, time: &str, n: u64) -> Vec<u8> {
    let events: Vec<Value> = (1..=n)
        .map(|s| {
            let mut v = event(device, e, s);
            v["boot"] = json!(boot);
            v["time"] = json!(time);
            v
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

async fn publish_clock(tc: &TestClient, device: &str, boot: &str, uptime_ms: u64, lower: bool) {
    let state = json!({
        "online": true, "profile": "kiosk",
        "clock": { "boot": boot, "uptime_ms": uptime_ms, "offset_ms": 0, "jumps": u32::from(lower), "lower_bound": lower }
    });
    tc.client
        .publish(
            topics::state(FLEET, device),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&state).unwrap(),
        )
        .await
        .unwrap();
}

/// Stored `time_ms` per seq of `device`.
fn stored_times(store: &std::path::Path, device: &str) -> Vec<i64> {
    let conn = rusqlite::Connection::open(store).unwrap();
    let mut stmt = conn
        .prepare("SELECT time_ms FROM events WHERE device = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([device], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbelieved_clocks_are_placed_on_the_banks_time_line() {
    let m = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let db = start_databank(m.addr, &store, None, "clock-1").await;
    let http = db.http_addr();
    let tc = TestClient::connect(m.addr, "clock-client", Some(store.clone())).await;
    // Each device's own run.
    let boot = "0195a0c4-0000-7000-8000-0000000000b1";
    let boot2 = "0195a0c4-0000-7000-8000-0000000000b2";
    let boot3 = "0195a0c4-0000-7000-8000-0000000000b3";

    // d1 booted 20 s ago with its clock behind its store: its times are a lower bound.
    publish_clock(&tc, "d1", boot, 20_000, true).await;
    common::wait_online(http, "d1").await;
    let sent = now_ms();
    let e1 = epoch(1);
    tc.publish(
        "d1",
        run_batch("d1", &e1, boot, "2025-03-01T10:00:00.000Z", 3),
    )
    .await;
    tc.wait_ack("d1", &e1, 3).await;
    // Run start ~ sent - 20 s; event s at uptime s * 1000.
    for (i, t) in stored_times(&store, "d1").iter().enumerate() {
        let expected = sent - 20_000 + (i as i64 + 1) * 1_000;
        assert!(
            (t - expected).abs() < 10_000,
            "seq {}: {t} vs {expected}",
            i + 1
        );
    }

    // d2 claims to write from the year 2099: a wrong clock, placed from its own uptimes.
    let e2 = epoch(2);
    let sent = now_ms();
    tc.publish(
        "d2",
        run_batch("d2", &e2, boot2, "2099-01-01T00:00:00.000Z", 2),
    )
    .await;
    tc.wait_ack("d2", &e2, 2).await;
    for t in stored_times(&store, "d2") {
        assert!((t - sent).abs() < 10_000, "{t} vs {sent}");
    }

    // d3's backlog from two years ago, clock believed: kept as it came.
    let e3 = epoch(3);
    publish_clock(&tc, "d3", boot3, 5_000, false).await;
    common::wait_online(http, "d3").await;
    tc.publish(
        "d3",
        run_batch("d3", &e3, boot3, "2025-03-01T10:00:00.000Z", 2),
    )
    .await;
    tc.wait_ack("d3", &e3, 2).await;
    let kept = "2025-03-01T10:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond();
    assert_eq!(stored_times(&store, "d3"), vec![kept, kept]);

    assert_eq!(
        db.metrics()
            .events_retimed
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    // The device's own reading stays in the stored record.
    let conn = rusqlite::Connection::open(&store).unwrap();
    let body: String = conn
        .query_row(
            "SELECT body FROM events WHERE device = 'd2' AND seq = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(body.contains("2099-01-01T00:00:00.000Z"), "{body}");
    db.shutdown().await;
}

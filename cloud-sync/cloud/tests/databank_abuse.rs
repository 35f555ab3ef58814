//! A hostile device against the data bank: a batch it cannot acknowledge, an event id
//! reused at another seq, a seq reused under another id. Each is set aside once with its
//! reason and confirmed to the broker; every other device keeps being stored and
//! acknowledged, and the bank never reconnects in a loop.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::{Mosquitto, OPERATOR, TestClient, batch, epoch, event, get, start_databank, store_in};
use serde_json::{Value, json};

/// Dead letters the data bank lists, through its operator endpoint.
async fn dead_letters(http: std::net::SocketAddr) -> Vec<Value> {
    let (status, body) = get(format!("http://{http}/api/v1/dead-letters"), Some(OPERATOR)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["dead_letters"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_epoch_from_one_device_never_stops_the_others() {
    let m = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let db = start_databank(m.addr, &store, Some("databank"), "abuse-1").await;
    let http = db.http_addr();
    let tc = TestClient::connect(m.addr, "abuse-client", Some(store.clone())).await;
    common::publish_state(&tc, "good-2").await;
    common::wait_online(http, "good-2").await;

    // A 70,000-character epoch, well under the 1 MiB batch limit: once, it made the
    // acknowledgement too big to publish and the bank reconnect forever.
    let mut bad = event("bad-1", &epoch(1), 1);
    bad["epoch"] = json!("e".repeat(70_000));
    let bad = serde_json::to_vec(&vec![bad]).unwrap();
    assert!(bad.len() < 1 << 20);
    tc.publish("bad-1", bad.clone()).await;
    // The others keep being stored and acknowledged, after it and while it is resent.
    let (e2, e3) = (epoch(2), epoch(3));
    tc.publish("good-2", batch("good-2", &e2, 1..=10)).await;
    tc.publish("bad-1", bad.clone()).await;
    tc.publish("good-3", batch("good-3", &e3, 1..=10)).await;
    tc.wait_ack("good-2", &e2, 10).await;
    tc.wait_ack("good-3", &e3, 10).await;
    assert!(
        tc.acks_for("bad-1").is_empty(),
        "nothing of bad-1 is acknowledged"
    );

    // Set aside once, the resend counted on the same row; confirmed, so never redelivered.
    let letters = dead_letters(http).await;
    let bad_rows: Vec<&Value> = letters
        .iter()
        .filter(|l| l["topic"].as_str().unwrap().contains("bad-1"))
        .collect();
    assert_eq!(bad_rows.len(), 1, "{letters:?}");
    assert_eq!(bad_rows[0]["reason"], "invalid_event");
    assert_eq!(bad_rows[0]["count"], 2);
    assert_eq!(bad_rows[0]["size"], bad.len());
    assert!(bad_rows[0]["head"].as_str().unwrap().len() <= 1024);
    assert!(bad_rows[0]["detail"].as_str().unwrap().len() <= 300);
    assert_eq!(db.metrics().dead_letters("invalid_event"), 2);
    assert_eq!(
        db.metrics().broker_connects.load(Relaxed),
        1,
        "the bank never reconnected"
    );

    // More good traffic flows after all of it: the broker holds nothing back for bad-1.
    tc.publish("good-2", batch("good-2", &e2, 11..=20)).await;
    tc.wait_ack("good-2", &e2, 20).await;
    assert_eq!(common::stored(&store, "good-2"), (20, 20));
    assert_eq!(common::stored(&store, "bad-1"), (0, 0));
    let (status, _) = get(format!("http://{http}/api/v1/dead-letters"), None).await;
    assert_eq!(status, 401, "dead letters are for operators");
    db.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_is_bound_to_its_seq() {
    let m = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let db = start_databank(m.addr, &store, Some("databank"), "abuse-2").await;
    let http = db.http_addr();
    let tc = TestClient::connect(m.addr, "abuse-client-2", Some(store.clone())).await;
    let e = epoch(4);
    let first: Vec<Value> = (1..=5).map(|s| event("d4", &e, s)).collect();
    tc.publish("d4", serde_json::to_vec(&first).unwrap()).await;
    let n = tc.wait_ack("d4", &e, 5).await;

    // The id of seq 2 sent again as seq 6: not progress, set aside.
    let mut reused_id = event("d4", &e, 6);
    reused_id["id"] = first[1]["id"].clone();
    tc.publish("d4", serde_json::to_vec(&vec![reused_id]).unwrap())
        .await;
    let ack = common::next_ack(&tc, "d4", n).await;
    assert_eq!(ack.seq, 5, "seq 6 is not counted");
    // A new id at the stored seq 3: not stored, set aside.
    let n = tc.acks_for("d4").len();
    tc.publish("d4", serde_json::to_vec(&vec![event("d4", &e, 3)]).unwrap())
        .await;
    let ack = common::next_ack(&tc, "d4", n).await;
    assert_eq!(ack.seq, 5);
    assert_eq!(common::stored(&store, "d4"), (5, 5));
    // The genuine seq 6 still moves it on.
    tc.publish("d4", batch("d4", &e, 6..=6)).await;
    tc.wait_ack("d4", &e, 6).await;

    let reasons: Vec<String> = dead_letters(http)
        .await
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(reasons.contains(&"id_conflict".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"seq_conflict".to_owned()), "{reasons:?}");
    assert_eq!(db.metrics().dead_letters("id_conflict"), 1);
    assert_eq!(db.metrics().dead_letters("seq_conflict"), 1);
    // A genuine redelivery is still a duplicate, not a conflict.
    let n = tc.acks_for("d4").len();
    tc.publish("d4", serde_json::to_vec(&first).unwrap()).await;
    assert_eq!(common::next_ack(&tc, "d4", n).await.seq, 6);
    assert_eq!(db.metrics().dead_letters("seq_conflict"), 1);
    assert!(
        common::wait_for_duplicates(&db, 5, Duration::from_secs(5)).await,
        "redelivered events counted as duplicates"
    );
    db.shutdown().await;
}

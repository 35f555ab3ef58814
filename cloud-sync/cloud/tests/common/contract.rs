//! The whole data bank contract, run against each broker.

use std::net::SocketAddr;
use std::time::Duration;

use caidan_testkit::DatabankProc;
use serde_json::{Value, json};

use super::*;

/// The whole event/ack contract against the broker at `mqtt`: dedup, out-of-order gaps,
/// bad batches dropped without crashing, acks only after storing, brand isolation.
pub async fn exercise_contract(mqtt: SocketAddr, group: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let db = start_databank(mqtt, &store, group, "caidan-databank-test").await;
    let http = db.http_addr();
    let tc = TestClient::connect(mqtt, "test-device-d1", Some(store.clone())).await;
    publish_state(&tc, "d1").await;
    wait_online(http, "d1").await;

    let epoch = &epoch(0xe1);
    let first = batch("d1", epoch, 1..=10);
    tc.publish("d1", first.clone()).await;
    let n = tc.wait_ack("d1", epoch, 10).await;
    assert_eq!(stored(&store, "d1"), (10, 10));

    // The same batch again: stored once, acknowledged again.
    tc.publish("d1", first).await;
    let ack = next_ack(&tc, "d1", n).await;
    assert_eq!(ack.seq, 10);
    assert_eq!(stored(&store, "d1"), (10, 10));

    // Out of order: 21..=30 leaves a gap, 11..=20 closes it.
    let n = tc.acks_for("d1").len();
    tc.publish("d1", batch("d1", epoch, 21..=30)).await;
    let ack = next_ack(&tc, "d1", n).await;
    assert_eq!(ack.seq, 10, "gap at 11 holds the ack");
    tc.publish("d1", batch("d1", epoch, 11..=20)).await;
    tc.wait_ack("d1", epoch, 30).await;
    assert_eq!(stored(&store, "d1"), (30, 30));

    // Garbled, foreign-source, mixed and oversized batches: dropped, never acknowledged.
    let n = tc.acks_for("d1").len();
    tc.publish("d1", b"{not json".to_vec()).await;
    tc.publish("d1", batch("d2", epoch, 1..=5)).await;
    let mut mixed: Vec<Value> = (31..=35).map(|s| event("d1", epoch, s)).collect();
    mixed.push(event("d2", epoch, 6));
    tc.publish("d1", serde_json::to_vec(&mixed).unwrap()).await;
    let mut big = event("d1", epoch, 31);
    big["data"]["pad"] = json!("x".repeat(1_200_000));
    tc.publish("d1", serde_json::to_vec(&vec![big]).unwrap())
        .await;
    // Still running: the next valid batch is stored and acknowledged.
    tc.publish("d1", batch("d1", epoch, 31..=35)).await;
    tc.wait_ack("d1", epoch, 35).await;
    assert!(db.is_running());
    assert_eq!(
        tc.acks_for("d1").len(),
        n + 1,
        "rejected batches got no ack"
    );
    assert_eq!(stored(&store, "d1"), (35, 35));
    assert_eq!(stored(&store, "d2"), (0, 0));
    assert!(tc.acks_for("d2").is_empty());
    let m = db.metrics();
    assert_eq!(m.rejected("garbled"), 1);
    assert_eq!(m.rejected("foreign_source"), 2);
    assert_eq!(m.rejected("oversized"), 1);

    // Every ack: published only after its events were stored, and never backwards.
    let acks = tc.acks.lock().unwrap().clone();
    let mut last = 0;
    for (_, ack, prefix_at_arrival) in &acks {
        assert!(
            *prefix_at_arrival >= ack.seq,
            "ack {ack:?} before store ({prefix_at_arrival})"
        );
        assert!(ack.seq >= last, "ack went backwards: {acks:?}");
        last = ack.seq;
    }

    // Funnel over real HTTP, with brand isolation.
    let url = |brand: &str, by: &str| {
        format!("http://{http}/api/v1/brands/{brand}/funnel?from={DAY_FROM}&to={DAY_TO}&by={by}")
    };
    let (status, body) = get(url("lumi-cola", "touchpoint"), Some("demo-token-lumi")).await;
    assert_eq!(status, 200, "{body}");
    let f: Value = serde_json::from_str(&body).unwrap();
    // Seqs 1..=35: 8 impressions x 3, 9 scans + 9 claims, 9 redemptions by 3 shoppers.
    assert_eq!(
        f["totals"],
        json!({"key": "total", "awareness": 24, "interest": 18, "purchase": 9, "loyalty": 3})
    );
    assert_eq!(f["rows"][0]["key"], "d1");
    let (status, _) = get(url("lumi-cola", "hour"), Some("demo-token-dawn")).await;
    assert_eq!(status, 403);
    let (status, _) = get(url("lumi-cola", "scene"), None).await;
    assert_eq!(status, 401);
    let (status, _) = get(url("lumi-cola", "offer"), Some("forged")).await;
    assert_eq!(status, 401);
    let (status, body) = get(url("dawn-coffee", "scene"), Some("demo-token-dawn")).await;
    assert_eq!(status, 200);
    let f: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        f["totals"]["interest"], 9,
        "dawn-coffee sees only scans naming dawn-coffee: {f}"
    );
    assert_eq!(f["totals"]["purchase"], 0);

    let dash = format!("http://{http}/brands/lumi-cola/dashboard");
    let browser = signed_in(http, "lumi-cola", "demo-token-lumi").await;
    let resp = browser
        .get(format!("{dash}?from={DAY_FROM}&to={DAY_TO}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("<svg") && body.contains(">24<"), "{body}");
    let (status, body) = get(dash.clone(), None).await;
    assert_eq!(status, 401);
    assert!(body.contains("<form"));
    let (status, _) = post_login(http, "lumi-cola", "demo-token-dawn").await;
    assert_eq!(status, 403);
    let (status, _) = get(format!("{dash}?token=demo-token-lumi"), None).await;
    assert_eq!(status, 400, "a token in the URL is refused, not used");

    let (status, body) = get(format!("http://{http}/healthz"), None).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (_, body) = get(format!("http://{http}/metrics"), Some(OPERATOR)).await;
    assert!(
        body.contains("caidan_databank_events_stored_total 35"),
        "{body}"
    );
    assert!(
        body.contains("caidan_databank_events_duplicate_total 10"),
        "{body}"
    );
    assert!(body.contains("reason=\"foreign_source\"} 2"), "{body}");
    let (_, body) = get(format!("http://{http}/api/v1/devices"), Some(OPERATOR)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let d1 = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "d1")
        .unwrap();
    assert_eq!(d1["epochs"], json!([{"epoch": epoch, "seq": 35}]));
    assert_eq!(d1["stock"], json!({"cola": 5}));

    db.shutdown().await;
}

/// Kills the data bank between store and ack, restarts it, and checks that the broker's
/// redelivery is stored once and acknowledged.
pub async fn kill_between_store_and_ack(mqtt: SocketAddr, share_group: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let tc = TestClient::connect(mqtt, "test-device-k1", Some(store.clone())).await;
    publish_state(&tc, "k1").await;
    let url = format!("mqtt://{mqtt}");
    let bank = |extra: &[&str]| {
        let mut args = vec!["--share-group", share_group];
        args.extend_from_slice(extra);
        DatabankProc::start_env(dir.path(), &url, &args, &[("RUST_LOG", "warn")])
    };
    let mut child = bank(&["--crash-after-commits", "1"]);
    let http: SocketAddr = child.http.trim_start_matches("http://").parse().unwrap();
    wait_online(http, "k1").await;

    let epoch = &epoch(0x4b1);
    tc.publish("k1", batch("k1", epoch, 1..=50)).await;
    let status = child
        .proc
        .wait_exit(Duration::from_secs(20))
        .expect("data bank crashed");
    assert!(!status.success());
    assert_eq!(stored(&store, "k1"), (50, 50), "stored before the crash");
    assert!(tc.acks_for("k1").is_empty(), "crashed before acknowledging");

    let child = bank(&[]);
    tc.wait_ack("k1", epoch, 50).await;
    assert_eq!(stored(&store, "k1"), (50, 50), "redelivery deduplicated");
    let (_, metrics) = get(format!("{}/metrics", child.http), Some(OPERATOR)).await;
    assert!(
        metrics.contains("caidan_databank_events_duplicate_total 50"),
        "{metrics}"
    );
    assert!(
        metrics.contains("caidan_databank_events_stored_total 0"),
        "{metrics}"
    );
    drop(child);
}

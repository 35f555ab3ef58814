//! Stock through a real Mosquitto into the data bank, and the nearby-stock endpoint over
//! HTTPS with a test CA as the client's only root: latest levels whatever the arrival
//! order, nearest first, fleet tokens, clear refusals, located devices, picked-up orders in
//! the funnel.

mod common;

use caidan_cloud::databank::auth::{Access, DEMO_BRANDS};
use caidan_cloud::databank::{Databank, HttpsConfig};
use caidan_sync::credentials::TokenHash;
use caidan_testkit::TestPki;
use common::inventory::{get_with, https_client, order, publish_batch, publish_located, stock};
use common::{DAY_FROM, DAY_TO, FLEET, Mosquitto, OPERATOR, TestClient, epoch, shopper};
use serde_json::{Value, json};

const FLEET_TOKEN: &str = "demo-fleet-token";
const NORTH_TOKEN: &str = "north-fleet-token";
const BUND: (f64, f64) = (31.2400, 121.4900);
const SQUARE: (f64, f64) = (31.2304, 121.4737);
const HONGQIAO: (f64, f64) = (31.1979, 121.3363);

/// The demo access file with a second fleet, `north`.
fn access() -> Access {
    let text = format!(
        "{DEMO_BRANDS}\n[[fleet]]\nname = \"north\"\ntoken_sha256 = \"{}\"\n",
        TokenHash::of(NORTH_TOKEN)
    );
    Access::parse("test access", &text).unwrap()
}

fn devices_of(v: &Value) -> Vec<&str> {
    v["touchpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no touchpoints: {v}"))
        .iter()
        .map(|t| t["device"].as_str().unwrap())
        .collect()
}

/// Five touchpoints, four of fleet `demo`, their states and events through Mosquitto
/// (shared subscription): every state is stored first (so the data bank's subscription is
/// live before a batch goes out), then each batch is acknowledged.
async fn stock_the_fleet(tc: &TestClient, db: &Databank) {
    for (fleet, device, at) in [
        (FLEET, "bund", Some(BUND)),
        (FLEET, "square", Some(SQUARE)),
        (FLEET, "hongqiao", Some(HONGQIAO)),
        (FLEET, "kiosk", None),
        ("north", "north-1", Some(BUND)),
    ] {
        publish_located(tc, fleet, device, at).await;
    }
    let stored = caidan_testkit::eventually(std::time::Duration::from_secs(20), || {
        db.metrics()
            .state_updates
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5
    })
    .await;
    assert!(stored, "the five state messages were stored");

    let lumi = |n| ("lumi-cola", shopper(n));
    let (b, s, h, k, n) = (
        epoch(0xb1),
        epoch(0x51),
        epoch(0x41),
        epoch(0x61),
        epoch(0x71),
    );
    // The Bund: 6 cola; shopper 1 reserves and picks up one, twice.
    let s1 = lumi(1);
    let bund = vec![
        stock(FLEET, "bund", &b, 1, ("cola", 6, 0)),
        order("bund", &b, 2, "reserved", (s1.0, &s1.1), ("cola", 6, 1)),
        order("bund", &b, 3, "picked_up", (s1.0, &s1.1), ("cola", 5, 0)),
        order("bund", &b, 4, "reserved", (s1.0, &s1.1), ("cola", 5, 1)),
        order("bund", &b, 5, "picked_up", (s1.0, &s1.1), ("cola", 4, 0)),
    ];
    publish_batch(tc, FLEET, "bund", &bund).await;
    tc.wait_ack("bund", &b, 5).await;
    // People's Square: all 3 reserved (and one order expired): nothing available.
    let s2 = lumi(2);
    let square = vec![
        stock(FLEET, "square", &s, 1, ("cola", 3, 0)),
        order("square", &s, 2, "reserved", (s2.0, &s2.1), ("cola", 3, 3)),
        order("square", &s, 3, "expired", (s2.0, &s2.1), ("cola", 3, 3)),
    ];
    publish_batch(tc, FLEET, "square", &square).await;
    tc.wait_ack("square", &s, 3).await;
    // Hongqiao: seq 3 (7 cola) arrives before seq 2 (1 cola); seq 2 must not win.
    publish_batch(
        tc,
        FLEET,
        "hongqiao",
        &[stock(FLEET, "hongqiao", &h, 1, ("cola", 2, 0))],
    )
    .await;
    tc.wait_ack("hongqiao", &h, 1).await;
    let newer = vec![
        stock(FLEET, "hongqiao", &h, 3, ("cola", 7, 0)),
        stock(FLEET, "hongqiao", &h, 4, ("tea", 5, 0)),
    ];
    publish_batch(tc, FLEET, "hongqiao", &newer).await;
    let older = [stock(FLEET, "hongqiao", &h, 2, ("cola", 1, 0))];
    publish_batch(tc, FLEET, "hongqiao", &older).await;
    tc.wait_ack("hongqiao", &h, 4).await;
    // The older one once more, redelivered after everything.
    let n_acks = tc.acks_for("hongqiao").len();
    publish_batch(tc, FLEET, "hongqiao", &older).await;
    common::next_ack(tc, "hongqiao", n_acks).await;
    // A kiosk whose config names no location.
    publish_batch(
        tc,
        FLEET,
        "kiosk",
        &[stock(FLEET, "kiosk", &k, 1, ("cola", 1, 0))],
    )
    .await;
    tc.wait_ack("kiosk", &k, 1).await;
    // Another fleet's touchpoint at the Bund.
    publish_batch(
        tc,
        "north",
        "north-1",
        &[stock("north", "north-1", &n, 1, ("cola", 9, 0))],
    )
    .await;
    tc.wait_ack_in("north", "north-1", &n, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearby_stock_over_https_from_events_through_mosquitto() {
    let m = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let server = pki.identity("server");
    let store = common::store_in(&dir);
    let mut cfg = common::databank_config(m.addr, &store, Some("databank"), "stock-1");
    cfg.access = access();
    cfg.https = Some(HttpsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: server.cert.clone(),
        key: server.key.clone(),
    });
    let db = Databank::start(cfg).await.expect("data bank starts");
    assert!(db.wait_subscribed(std::time::Duration::from_secs(20)).await);
    let https = db.https_addr().expect("an HTTPS listener");
    let tc = TestClient::connect(m.addr, "stock-client", Some(store.clone())).await;
    stock_the_fleet(&tc, &db).await;

    let client = https_client(&pki.ca());
    let base = format!("https://127.0.0.1:{}/api/v1/fleets", https.port());
    let url = |fleet: &str, sku: &str, query: &str| format!("{base}/{fleet}/stock/{sku}?{query}");
    let at_bund = format!("lat={}&lon={}", BUND.0, BUND.1);

    // Nearest first; nothing reserved away, no other fleet, the unlocated one last.
    let (status, v) = get_with(&client, &url(FLEET, "cola", &at_bund), Some(FLEET_TOKEN)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sku"], "cola");
    assert_eq!(devices_of(&v), ["bund", "hongqiao", "kiosk"]);
    let t = &v["touchpoints"];
    assert_eq!(
        (&t[0]["available"], &t[0]["on_hand"], &t[0]["reserved"]),
        (&json!(4), &json!(4), &json!(0)),
        "the Bund after two pickups: {v}"
    );
    assert_eq!(t[0]["distance_m"], 0.0);
    assert_eq!(t[0]["location"], json!({"lat": BUND.0, "lon": BUND.1}));
    assert_eq!(t[0]["online"], true);
    assert_eq!(t[0]["updated_at"], "2025-03-01T10:00:05.000Z");
    assert_eq!(t[1]["available"], 7, "seq 3 stays the latest: {v}");
    let d = t[1]["distance_m"].as_f64().unwrap();
    assert!((14_000.0..16_500.0).contains(&d), "Bund to Hongqiao: {d}");
    assert_eq!(
        (&t[2]["distance_m"], &t[2]["location"]),
        (&Value::Null, &Value::Null)
    );

    // The asking device left out; a limit; no location given (by name, no distances).
    let (_, v) = get_with(
        &client,
        &url(FLEET, "cola", &format!("{at_bund}&exclude=bund")),
        Some(FLEET_TOKEN),
    )
    .await;
    assert_eq!(devices_of(&v), ["hongqiao", "kiosk"]);
    let (_, v) = get_with(
        &client,
        &url(FLEET, "cola", &format!("{at_bund}&limit=1")),
        Some(FLEET_TOKEN),
    )
    .await;
    assert_eq!(devices_of(&v), ["bund"]);
    let (_, v) = get_with(&client, &url(FLEET, "cola", ""), Some(FLEET_TOKEN)).await;
    assert_eq!(devices_of(&v), ["bund", "hongqiao", "kiosk"]);
    assert!(
        v["touchpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["distance_m"].is_null())
    );
    let (_, v) = get_with(&client, &url(FLEET, "tea", &at_bund), Some(FLEET_TOKEN)).await;
    assert_eq!(devices_of(&v), ["hongqiao"]);
    let (status, v) = get_with(&client, &url(FLEET, "juice", ""), Some(FLEET_TOKEN)).await;
    assert_eq!(
        (status, v),
        (200, json!({"sku": "juice", "touchpoints": []}))
    );

    // Who may ask: the fleet's own token or an operator's.
    let (status, v) = get_with(&client, &url("north", "cola", &at_bund), Some(NORTH_TOKEN)).await;
    assert_eq!((status, devices_of(&v)), (200, vec!["north-1"]));
    let (status, v) = get_with(&client, &url(FLEET, "cola", &at_bund), Some(OPERATOR)).await;
    assert_eq!((status, devices_of(&v).len()), (200, 3));
    for (token, want) in [
        (None, 401),
        (Some("forged"), 401),
        (Some(NORTH_TOKEN), 403),
        (Some("demo-token-lumi"), 403),
    ] {
        let (status, v) = get_with(&client, &url(FLEET, "cola", &at_bund), token).await;
        assert_eq!(status, want, "{token:?}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }

    // Bad values: 400 with the data bank's JSON error, naming what is wrong.
    for (sku, query, says) in [
        ("co%20la", "", "sku"),
        ("cola", "lat=91&lon=0", "lat must be"),
        ("cola", "lat=31.2&lon=east", "lon must be"),
        ("cola", "lat=31.2", "give both"),
        ("cola", "limit=0", "limit must be"),
        ("cola", "limit=51", "limit must be"),
        ("cola", "exclude=Bad!", "exclude"),
        ("cola", "radius=5", "unknown field"),
        ("cola", "token=demo-fleet-token", "never taken from the URL"),
    ] {
        let (status, v) = get_with(&client, &url(FLEET, sku, query), Some(FLEET_TOKEN)).await;
        assert_eq!(status, 400, "{sku}?{query}: {v}");
        let error = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(error.contains(says), "{sku}?{query}: {error}");
    }

    // What is echoed back is cut short, however long the parameter sent.
    let long = format!("{}=1", "x".repeat(5_000));
    let (status, v) = get_with(&client, &url(FLEET, "cola", &long), Some(FLEET_TOKEN)).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().len() < 300, "{v}");

    // The plain listener serves the same API.
    let plain = format!(
        "http://{}/api/v1/fleets/demo/stock/cola?{at_bund}",
        db.http_addr()
    );
    let (status, v) = get_with(&reqwest::Client::new(), &plain, Some(FLEET_TOKEN)).await;
    assert_eq!(
        (status, devices_of(&v)),
        (200, vec!["bund", "hongqiao", "kiosk"])
    );

    // A client that trusts another CA does not get through.
    let stranger_dir = dir.path().join("stranger");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let stranger = TestPki::new(&stranger_dir);
    let refused = https_client(&stranger.ca())
        .get(url(FLEET, "cola", ""))
        .bearer_auth(FLEET_TOKEN)
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // Locations in the operator's device list.
    let (_, v) = get_with(
        &client,
        &format!("https://127.0.0.1:{}/api/v1/devices", https.port()),
        Some(OPERATOR),
    )
    .await;
    let located = |name: &str| {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device"] == name)
            .unwrap()["location"]
            .clone()
    };
    assert_eq!(located("square"), json!({"lat": SQUARE.0, "lon": SQUARE.1}));
    assert_eq!(located("kiosk"), Value::Null);

    // The funnel: two pickups by one shopper are two purchases and one loyal shopper of
    // lumi-cola; reserved and expired orders and stock changes count nowhere.
    let funnel = format!(
        "https://127.0.0.1:{}/api/v1/brands/lumi-cola/funnel?from={DAY_FROM}&to={DAY_TO}&by=touchpoint",
        https.port()
    );
    let (status, f) = get_with(&client, &funnel, Some("demo-token-lumi")).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(
        f["totals"],
        json!({"key": "total", "awareness": 0, "interest": 0, "purchase": 2, "loyalty": 1})
    );
    assert_eq!(
        f["rows"],
        json!([{"key": "bund", "awareness": 0, "interest": 0, "purchase": 2, "loyalty": 1}])
    );
    db.shutdown().await;
}

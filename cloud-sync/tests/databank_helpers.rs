//! Shared helpers of the data bank integration tests (included with `#[path]`).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caidan_cloud_sync::databank::brands::{Brands, DEMO_BRANDS};
use caidan_cloud_sync::databank::{Databank, DatabankConfig, IngestConfig};
use caidan_cloud_sync::wire::{Ack, Limits};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

pub const FLEET: &str = "demo";
pub const DAY_FROM: &str = "2025-03-01T00:00:00Z";
pub const DAY_TO: &str = "2025-03-02T00:00:00Z";

/// The uplink tests' broker process, shared rather than written twice.
#[path = "uplink_support/mod.rs"]
mod support;

/// One event of `device`; the type cycles through the AIPL stages by seq.
pub fn event(device: &str, epoch: &str, seq: u64) -> Value {
    let shopper = format!("shopper-{}", seq % 3);
    let (ty, data) = match seq % 4 {
        0 => (
            "impression",
            json!({"minute": "2025-03-01T10:00:00Z", "count": 3, "brands": ["lumi-cola"]}),
        ),
        1 => (
            "scan",
            json!({"shopper": shopper, "brands": ["lumi-cola", "dawn-coffee"]}),
        ),
        2 => (
            "claim",
            json!({"shopper": shopper, "offer": "lumi-cola-3off", "brand": "lumi-cola", "kind": "coupon",
                               "claim_code": "AB12", "fallback": false, "expires_at": "2025-03-02T00:00:00Z", "local_hour": 10}),
        ),
        _ => (
            "redemption",
            json!({"shopper": shopper, "offer": "lumi-cola-3off", "brand": "lumi-cola", "claim_code": "AB12"}),
        ),
    };
    let mut data = data;
    data["scene"] = json!("cinema");
    data["uptime_ms"] = json!(seq * 1000);
    let mut e = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": format!("/caidan/{FLEET}/d/{device}"),
        "type": format!("com.caidan.{ty}"),
        "time": format!("2025-03-01T10:{:02}:{:02}.000Z", (seq / 60) % 60, seq % 60),
        "datacontenttype": "application/json",
        "fleet": FLEET,
        "device": device,
        "epoch": epoch,
        "seq": seq,
        "data": data,
    });
    if let Some(b) = e["data"].get("brand").cloned() {
        e["brand"] = b;
        e["subject"] = json!("lumi-cola-3off");
    }
    e
}

pub fn batch(device: &str, epoch: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    let events: Vec<Value> = seqs.map(|s| event(device, epoch, s)).collect();
    serde_json::to_vec(&events).unwrap()
}

/// A QoS 1 client that publishes and records every ack it sees.
pub struct TestClient {
    pub client: AsyncClient,
    /// Each ack with the stored contiguous prefix read from the store when it arrived.
    pub acks: Arc<Mutex<Vec<(String, Ack, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestClient {
    /// Connects and subscribes to acks; with `store`, reads the stored prefix on each ack.
    pub async fn connect(addr: SocketAddr, id: &str, store: Option<PathBuf>) -> TestClient {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_max_packet_size(4 << 20, 4 << 20)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(o, 1000);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let sink = acks.clone();
        let store = store.clone();
        let c = client.clone();
        let task = tokio::spawn(async move {
            let mut subscribed = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.subscribe("caidan/v1/+/d/+/ack", QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let ack: Ack = serde_json::from_slice(&p.payload).expect("ack payload");
                        let device = caidan_cloud_sync::topics::parse_device_topic(&p.topic)
                            .map(|(_, d, _)| d.to_owned())
                            .unwrap_or_default();
                        let prefix = store
                            .as_deref()
                            .map_or(0, |s| stored_prefix(s, &device, &ack.epoch));
                        sink.lock().unwrap().push((p.topic.clone(), ack, prefix));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("test client subscribed")
            .unwrap();
        TestClient { client, acks, task }
    }

    pub async fn publish(&self, device: &str, payload: Vec<u8>) {
        let topic = caidan_cloud_sync::topics::events(FLEET, device);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// Acks seen for `device`.
    pub fn acks_for(&self, device: &str) -> Vec<Ack> {
        let topic = caidan_cloud_sync::topics::ack(FLEET, device);
        self.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| *t == topic)
            .map(|(_, a, _)| a.clone())
            .collect()
    }

    /// Waits until an ack of `device` for `epoch` reaches `seq`; returns the number of acks
    /// seen for that device by then.
    pub async fn wait_ack(&self, device: &str, epoch: &str, seq: u64) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let acks = self.acks_for(device);
            if acks.iter().any(|a| a.epoch == epoch && a.seq == seq) {
                return acks.len();
            }
            assert!(
                Instant::now() < deadline,
                "no ack {device}/{epoch}/{seq}; saw {acks:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An in-process data bank against `mqtt`, HTTP on a free port.
pub async fn start_databank(
    mqtt: SocketAddr,
    store: &Path,
    group: Option<&str>,
    id: &str,
) -> Databank {
    Databank::start(DatabankConfig {
        ingest: IngestConfig {
            host: mqtt.ip().to_string(),
            port: mqtt.port(),
            client_id: id.to_owned(),
            shared_group: group.map(str::to_owned),
            limits: Limits::default(),
            crash_after_commits: None,
        },
        store_path: store.to_path_buf(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        brands: Brands::parse("demo", DEMO_BRANDS).unwrap(),
    })
    .await
    .expect("data bank starts")
}

/// Rows stored for `device` (and how many distinct ids), read straight from the file.
pub fn stored(store: &Path, device: &str) -> (u64, u64) {
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT id) FROM events WHERE device = ?1",
        [device],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .unwrap()
}

/// Highest seq N such that seqs 1..=N of `device`/`epoch` are all stored.
pub fn stored_prefix(store: &Path, device: &str, epoch: &str) -> u64 {
    let conn = rusqlite::Connection::open(store).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq FROM events WHERE device = ?1 AND epoch = ?2 ORDER BY seq")
        .unwrap();
    let seqs: Vec<i64> = stmt
        .query_map([device, epoch], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    seqs.iter()
        .enumerate()
        .take_while(|(i, s)| **s == *i as i64 + 1)
        .count() as u64
}

/// A Mosquitto on a free loopback port with room for the data bank tests' bursts: a
/// [`support::Mosquitto`] with anonymous clients, a wide in-flight window and a deep queue.
pub struct Mosquitto {
    pub addr: SocketAddr,
    _broker: support::Mosquitto,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let broker = support::Mosquitto::start(
            dir.path(),
            "allow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 100000",
        );
        Mosquitto {
            addr: SocketAddr::from(([127, 0, 0, 1], broker.port)),
            _broker: broker,
            _dir: dir,
        }
    }
}

pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn store_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("databank.db")
}

/// Waits until the data bank lists `device` as online (its state subscription is live).
pub async fn wait_online(http: SocketAddr, device: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = reqwest::get(format!("http://{http}/api/v1/devices"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let online = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device"] == device && d["online"] == true);
        if online {
            return;
        }
        assert!(Instant::now() < deadline, "{device} never online: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes retained online state for `device`.
pub async fn publish_state(tc: &TestClient, device: &str) {
    let topic = caidan_cloud_sync::topics::state(FLEET, device);
    let payload = json!({"online": true, "profile": "kiosk", "stock": {"cola": 5}});
    tc.client
        .publish(
            topic,
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&payload).unwrap(),
        )
        .await
        .unwrap();
}

/// Waits until `device` has more than `n` acks and returns the newest.
pub async fn next_ack(tc: &TestClient, device: &str, n: usize) -> Ack {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let acks = tc.acks_for(device);
        if acks.len() > n {
            return acks.last().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "no new ack for {device}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(url: String, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

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

    let epoch = "0195a0c4-0000-7000-8000-0000000000e1";
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
    let (status, body) = get(
        format!("{dash}?token=demo-token-lumi&from={DAY_FROM}&to={DAY_TO}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("<svg") && body.contains(">24<"), "{body}");
    let (status, body) = get(dash.clone(), None).await;
    assert_eq!(status, 401);
    assert!(body.contains("<form"));
    let (status, _) = get(format!("{dash}?token=demo-token-dawn"), None).await;
    assert_eq!(status, 403);

    let (status, body) = get(format!("http://{http}/healthz"), None).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (_, body) = get(format!("http://{http}/metrics"), None).await;
    assert!(
        body.contains("caidan_databank_events_stored_total 35"),
        "{body}"
    );
    assert!(
        body.contains("caidan_databank_events_duplicate_total 10"),
        "{body}"
    );
    assert!(body.contains("reason=\"foreign_source\"} 2"), "{body}");
    let (_, body) = get(format!("http://{http}/api/v1/devices"), None).await;
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

/// The `caidan-cloud databank` binary as a child process; returns it and its HTTP address.
pub fn spawn_databank_bin(
    mqtt: SocketAddr,
    store: &Path,
    share_group: &str,
    crash_after_batches: Option<u64>,
) -> (ChildGuard, SocketAddr) {
    use std::io::BufRead;
    let brands = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/databank/brands.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_caidan-cloud"));
    cmd.args(["databank", "--mqtt", &format!("mqtt://{mqtt}")])
        .arg("--store")
        .arg(format!("sqlite:{}", store.display()))
        .arg("--brands")
        .arg(brands)
        .args([
            "--http",
            "127.0.0.1:0",
            "--client-id",
            "caidan-databank-crash",
        ])
        .args(["--share-group", share_group])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    if let Some(n) = crash_after_batches {
        cmd.args(["--crash-after-commits", &n.to_string()]);
    }
    let mut child = cmd.spawn().expect("caidan-cloud runs");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("data bank printed its address")
            .unwrap();
        if let Some(a) = line.strip_prefix("data bank http on ") {
            break a.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (ChildGuard(child), addr)
}

/// Kills (SIGKILL) the child when dropped, also when a test fails.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills the data bank between store and ack, restarts it, and checks that the broker's
/// redelivery is stored once and acknowledged.
pub async fn kill_between_store_and_ack(mqtt: SocketAddr, share_group: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let tc = TestClient::connect(mqtt, "test-device-k1", Some(store.clone())).await;
    publish_state(&tc, "k1").await;
    let (mut child, http) = spawn_databank_bin(mqtt, &store, share_group, Some(1));
    wait_online(http, "k1").await;

    let epoch = "0195a0c4-0000-7000-8000-0000000000k1";
    tc.publish("k1", batch("k1", epoch, 1..=50)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "data bank did not crash");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    assert_eq!(stored(&store, "k1"), (50, 50), "stored before the crash");
    assert!(tc.acks_for("k1").is_empty(), "crashed before acknowledging");

    let (child, http) = spawn_databank_bin(mqtt, &store, share_group, None);
    tc.wait_ack("k1", epoch, 50).await;
    assert_eq!(stored(&store, "k1"), (50, 50), "redelivery deduplicated");
    let (_, metrics) = get(format!("http://{http}/metrics"), None).await;
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

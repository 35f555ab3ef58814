//! Shared helpers of the data bank integration tests: events and batches that satisfy the
//! contract, a test device client that records acks, an in-process data bank, store queries.
#![allow(dead_code)]

pub mod contract;
pub mod inventory;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caidan_cloud::databank::auth::{Access, DEMO_BRANDS};
use caidan_cloud::databank::{Databank, DatabankConfig, IngestConfig};
use caidan_sync::clock::SystemClock;
use caidan_sync::contract::{Ack, Limits};
use caidan_sync::keys::{SecretKey, TrustedKeys};
use caidan_sync::tls::TlsFiles;
use caidan_sync::topics;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

pub const FLEET: &str = "demo";
pub const DAY_FROM: &str = "2025-03-01T00:00:00Z";
pub const DAY_TO: &str = "2025-03-02T00:00:00Z";
/// The demo operator's token (examples/databank/brands.toml).
pub const OPERATOR: &str = "demo-operator-token";

/// What a device trusts: the demo data bank key's public half.
pub fn demo_trust() -> TrustedKeys {
    let key = SecretKey::from_seed_hex(caidan_cloud::databank::auth::DEMO_ACK_KEY).unwrap();
    TrustedKeys::new(vec![key.public()])
}

/// A test epoch: a UUID ending in `tag` (hex digits).
pub fn epoch(tag: u16) -> String {
    format!("0195a0c4-0000-7000-8000-00000000{tag:04x}")
}

/// A valid hashed shopper id for test shopper `n`.
pub fn shopper(n: u64) -> String {
    format!("{n:032x}")
}

/// One event of `device`; the type cycles through the AIPL stages by seq.
pub fn event(device: &str, epoch: &str, seq: u64) -> Value {
    let shopper = shopper(seq % 3);
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
                               "claim_code": "AB12CD34", "fallback": false, "expires_at": "2025-03-02T00:00:00Z", "local_hour": 10}),
        ),
        _ => (
            "redemption",
            json!({"shopper": shopper, "offer": "lumi-cola-3off", "brand": "lumi-cola", "claim_code": "AB12CD34"}),
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
                        let (fleet, device) = topics::parse_device_topic(&p.topic)
                            .map(|(f, d, _)| (f.to_owned(), d.to_owned()))
                            .unwrap_or_default();
                        // As a device would: only an ack signed by the trusted bank key counts.
                        let ack = Ack::parse_verified(&p.payload, &fleet, &device, &demo_trust())
                            .expect("a signed acknowledgement");
                        let prefix = store
                            .as_deref()
                            .map_or(0, |s| stored_prefix(s, &device, &ack.epoch.to_string()));
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
        let topic = topics::events(FLEET, device);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// Acks seen for `device`.
    pub fn acks_for(&self, device: &str) -> Vec<Ack> {
        let topic = topics::ack(FLEET, device);
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
        self.wait_ack_in(FLEET, device, epoch, seq).await
    }

    /// [`TestClient::wait_ack`] for a device of `fleet`.
    pub async fn wait_ack_in(&self, fleet: &str, device: &str, epoch: &str, seq: u64) -> usize {
        let topic = topics::ack(fleet, device);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let acks: Vec<Ack> = self
                .acks
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, _, _)| *t == topic)
                .map(|(_, a, _)| a.clone())
                .collect();
            if acks
                .iter()
                .any(|a| a.epoch.to_string() == epoch && a.seq == seq)
            {
                return acks.len();
            }
            assert!(
                Instant::now() < deadline,
                "no ack {fleet}/{device}/{epoch}/{seq}; saw {acks:?}"
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

/// An in-process data bank against `mqtt`, HTTP on a free port, subscribed when it returns.
pub async fn start_databank(
    mqtt: SocketAddr,
    store: &Path,
    group: Option<&str>,
    id: &str,
) -> Databank {
    let db = Databank::start(databank_config(mqtt, store, group, id))
        .await
        .expect("data bank starts");
    // What a test publishes next must find the subscription in place.
    assert!(
        db.wait_subscribed(Duration::from_secs(20)).await,
        "data bank {id} never subscribed"
    );
    db
}

/// What [`start_databank`] starts: the demo access file and ack key, HTTP on a free port,
/// no HTTPS.
pub fn databank_config(
    mqtt: SocketAddr,
    store: &Path,
    group: Option<&str>,
    id: &str,
) -> DatabankConfig {
    DatabankConfig {
        ingest: IngestConfig {
            broker: format!("mqtt://{mqtt}").parse().unwrap(),
            tls: TlsFiles::default(),
            client_id: id.to_owned(),
            shared_group: group.map(str::to_owned),
            limits: Limits::default(),
            crash_after_commits: None,
            nats: None,
            ack_key: SecretKey::from_seed_hex(caidan_cloud::databank::auth::DEMO_ACK_KEY)
                .expect("the demo ack key"),
        },
        store: caidan_cloud::databank::StoreUrl::Sqlite(store.to_path_buf()),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        https: None,
        access: Access::parse("demo", DEMO_BRANDS).unwrap(),
        clock: Arc::new(SystemClock::new()),
    }
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

/// A Mosquitto on a free loopback port with room for the data bank tests' bursts:
/// anonymous clients, a wide in-flight window and a deep queue.
pub struct Mosquitto {
    pub addr: SocketAddr,
    _broker: caidan_testkit::Mosquitto,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let broker = caidan_testkit::Mosquitto::start(
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

pub fn store_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("databank.db")
}

/// Waits until the data bank lists `device` as online (its state subscription is live).
pub async fn wait_online(http: SocketAddr, device: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = format!("http://{http}/api/v1/devices");
        let v = caidan_testkit::get_json(&reqwest::Client::new(), &url, Some(OPERATOR)).await;
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
    let topic = topics::state(FLEET, device);
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

pub async fn get(url: String, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// An HTTP client that follows no redirects, keeping cookies when `cookies` says so.
pub fn browser(cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Posts `brand`'s sign-in form with `token` from `client`.
pub async fn login_with(
    client: &reqwest::Client,
    http: SocketAddr,
    brand: &str,
    token: &str,
) -> reqwest::Response {
    client
        .post(format!("http://{http}/brands/{brand}/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// A cookie-keeping HTTP client signed in to `brand`'s dashboard.
pub async fn signed_in(http: SocketAddr, brand: &str, token: &str) -> reqwest::Client {
    let client = browser(true);
    let resp = login_with(&client, http, brand, token).await;
    assert_eq!(resp.status(), 303, "sign-in redirects to the dashboard");
    client
}

/// Posts the sign-in form once; status and `Location` header.
pub async fn post_login(http: SocketAddr, brand: &str, token: &str) -> (u16, Option<String>) {
    let resp = login_with(&browser(false), http, brand, token).await;
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), location)
}

/// Waits until the data bank counted at least `n` duplicate events.
pub async fn wait_for_duplicates(db: &Databank, n: u64, within: Duration) -> bool {
    caidan_testkit::eventually(within, || {
        db.metrics()
            .events_duplicate
            .load(std::sync::atomic::Ordering::Relaxed)
            >= n
    })
    .await
}

//! Shared pieces of the uplink integration tests: a real Mosquitto process on a free port, an
//! in-memory outbox, a fake data bank that validates batches and acknowledges, and test
//! certificates.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caidan_cloud_sync::transport::{TlsFiles, mqtt_options};
use caidan_cloud_sync::uplink::{OutboxRecord, OutboxSource, UplinkConfig};
use caidan_cloud_sync::{topics, wire};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::task::JoinHandle;

pub const FLEET: &str = "demo";
const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A port nobody listens on right now (never a standard one: the OS picks from its range).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Mosquitto process with its own config; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts Mosquitto on a free port with `extra` config lines after the listener line.
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
        let port = free_port();
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        // `user root` only matters when the tests run as root: it keeps Mosquitto able to read
        // the files in this private temp dir instead of switching to the `mosquitto` user.
        let text = format!(
            "listener {port} 127.0.0.1\npersistence false\nuser root\n\
             log_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\n{extra}\n",
            log = dir.join(format!("mosquitto-{port}.log")).display()
        );
        std::fs::write(&conf, text).unwrap();
        let mut m = Mosquitto {
            port,
            conf,
            child: None,
        };
        m.spawn();
        m
    }

    /// Plaintext listener, anonymous clients allowed.
    pub fn plain(dir: &Path) -> Mosquitto {
        Mosquitto::start(dir, "allow_anonymous true")
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/mosquitto");
        self.child = Some(child);
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not listen on {}", self.port);
    }

    /// Kills the broker; everything it held is lost (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An in-memory outbox holding CloudEvents that pass the data bank's validation.
pub struct FakeOutbox {
    pub device: String,
    epoch: String,
    inner: Mutex<OutboxInner>,
}

#[derive(Default)]
struct OutboxInner {
    records: BTreeMap<i64, String>,
    last_seq: i64,
    trims: Vec<i64>,
}

impl FakeOutbox {
    pub fn new(device: &str) -> Arc<FakeOutbox> {
        Arc::new(FakeOutbox {
            device: device.to_owned(),
            epoch: uuid::Uuid::now_v7().to_string(),
            inner: Mutex::default(),
        })
    }

    pub fn append(&self, n: usize) {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..n {
            inner.last_seq += 1;
            let seq = inner.last_seq;
            let event = serde_json::json!({
                "specversion": "1.0",
                "id": uuid::Uuid::now_v7().to_string(),
                "source": format!("/caidan/{FLEET}/d/{}", self.device),
                "type": "com.caidan.scan",
                "time": "2025-03-01T10:15:00.123Z",
                "datacontenttype": "application/json",
                "fleet": FLEET,
                "device": self.device,
                "epoch": self.epoch,
                "seq": seq,
                "data": {"scene": "cinema", "uptime_ms": seq, "shopper": "ab12", "brands": ["acme"]}
            });
            inner.records.insert(seq, event.to_string());
        }
    }

    pub fn epoch_str(&self) -> &str {
        &self.epoch
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().records.len()
    }

    pub fn last_seq(&self) -> i64 {
        self.inner.lock().unwrap().last_seq
    }

    pub fn trims(&self) -> Vec<i64> {
        self.inner.lock().unwrap().trims.clone()
    }
}

impl OutboxSource for FakeOutbox {
    type Error = std::convert::Infallible;

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn read_after(&self, after: i64, max: usize) -> Result<Vec<OutboxRecord>, Self::Error> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .records
            .range(after + 1..)
            .take(max)
            .map(|(seq, json)| OutboxRecord {
                seq: *seq,
                json: json.clone(),
            })
            .collect())
    }

    fn trim_through(&self, through: i64) -> Result<u64, Self::Error> {
        let mut inner = self.inner.lock().unwrap();
        let keep = inner.records.split_off(&(through + 1));
        let deleted = inner.records.len() as u64;
        inner.records = keep;
        inner.trims.push(through);
        Ok(deleted)
    }

    fn depth(&self) -> Result<i64, Self::Error> {
        Ok(self.inner.lock().unwrap().records.len() as i64)
    }
}

/// What the fake data bank saw.
#[derive(Default)]
pub struct BankState {
    /// `(device, epoch)` → seqs stored.
    pub stored: HashMap<(String, String), BTreeSet<u64>>,
    pub deliveries: u64,
    /// Deliveries per device of the topic, before any validation.
    pub deliveries_by_device: HashMap<String, u64>,
    pub duplicates: u64,
    pub rejected: u64,
    /// Deliveries still to be ignored (neither stored nor acknowledged).
    pub ignore_next: u64,
    /// When false, batches are stored but never acknowledged.
    pub ack: bool,
    /// Time spent on each batch, to play a slow data bank.
    pub delay: Duration,
    /// Last `state` payload per device.
    pub states: HashMap<String, serde_json::Value>,
}

impl BankState {
    pub fn contiguous(&self, device: &str, epoch: &str) -> u64 {
        let Some(set) = self.stored.get(&(device.to_owned(), epoch.to_owned())) else {
            return 0;
        };
        let mut n = 0;
        while set.contains(&(n + 1)) {
            n += 1;
        }
        n
    }

    pub fn count(&self, device: &str, epoch: &str) -> usize {
        self.stored
            .get(&(device.to_owned(), epoch.to_owned()))
            .map_or(0, |s| s.len())
    }
}

/// A stand-in data bank: validates batches with [`wire::parse_batch`], stores seqs,
/// acknowledges the highest contiguous seq; also records device state messages.
pub struct FakeBank {
    pub state: Arc<Mutex<BankState>>,
    task: JoinHandle<()>,
}

impl FakeBank {
    pub fn start(url: &str, tls: &TlsFiles) -> FakeBank {
        let opts = mqtt_options(url, &format!("fake-bank-{}", free_port()), tls).unwrap();
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let state = Arc::new(Mutex::new(BankState {
            ack: true,
            ..BankState::default()
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(
                            format!("caidan/v1/{FLEET}/d/+/events"),
                            QoS::AtLeastOnce,
                        );
                        let _ = client.try_subscribe(
                            format!("caidan/v1/{FLEET}/d/+/state"),
                            QoS::AtLeastOnce,
                        );
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Some((fleet, device, leaf)) = topics::parse_device_topic(&p.topic)
                        else {
                            continue;
                        };
                        let (fleet, device) = (fleet.to_owned(), device.to_owned());
                        if leaf == "state" {
                            let v = serde_json::from_slice(&p.payload).unwrap_or_default();
                            st.lock().unwrap().states.insert(device, v);
                            continue;
                        }
                        let delay = st.lock().unwrap().delay;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let ack = {
                            let mut s = st.lock().unwrap();
                            s.deliveries += 1;
                            *s.deliveries_by_device.entry(device.clone()).or_default() += 1;
                            if s.ignore_next > 0 {
                                s.ignore_next -= 1;
                                continue;
                            }
                            let events = match wire::parse_batch(
                                &fleet,
                                &device,
                                &p.payload,
                                wire::Limits::default(),
                            ) {
                                Ok(e) => e,
                                Err(_) => {
                                    s.rejected += 1;
                                    continue;
                                }
                            };
                            let epoch = events[0].epoch.clone();
                            for e in &events {
                                let set = s
                                    .stored
                                    .entry((device.clone(), e.epoch.clone()))
                                    .or_default();
                                if !set.insert(e.seq) {
                                    s.duplicates += 1;
                                }
                            }
                            let seq = s.contiguous(&device, &epoch);
                            s.ack.then(|| {
                                serde_json::json!({"epoch": epoch, "seq": seq}).to_string()
                            })
                        };
                        if let Some(ack) = ack {
                            let _ = client.try_publish(
                                topics::ack(&fleet, &device),
                                QoS::AtLeastOnce,
                                false,
                                ack,
                            );
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        FakeBank { state, task }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut BankState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

impl Drop for FakeBank {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `cond` every 20 ms until it holds or `secs` pass.
pub async fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Uplink settings for tests: small batches, short linger and timeouts.
pub fn test_config(device: &str, url: &str) -> UplinkConfig {
    let mut cfg = UplinkConfig::new(FLEET, device, url);
    cfg.batch_max_events = 50;
    cfg.linger = Duration::from_millis(20);
    cfg.ack_timeout = Duration::from_millis(800);
    cfg.initial_backoff = Duration::from_millis(100);
    cfg.max_backoff = Duration::from_millis(500);
    cfg.profile = "kiosk-test".into();
    cfg
}

/// PEM files of a test PKI: a CA, a server certificate for 127.0.0.1/localhost, and client
/// certificates whose common name is the given identity.
pub struct TestPki {
    pub dir: PathBuf,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

impl TestPki {
    pub fn new(dir: &Path) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Caidan test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let pki = TestPki {
            dir: dir.to_owned(),
            ca_params,
            ca_key,
        };
        pki.issue("server", &["127.0.0.1", "localhost"]);
        pki
    }

    /// Writes `{name}.pem` and `{name}.key` with common name `name`.
    pub fn issue(&self, name: &str, sans: &[&str]) -> TlsFiles {
        use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        self.client(name)
    }

    /// TLS files of an identity issued earlier.
    pub fn client(&self, name: &str) -> TlsFiles {
        TlsFiles {
            ca: Some(self.ca()),
            client_cert: Some(self.dir.join(format!("{name}.pem"))),
            client_key: Some(self.dir.join(format!("{name}.key"))),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_only(&self) -> TlsFiles {
        TlsFiles {
            ca: Some(self.ca()),
            ..TlsFiles::default()
        }
    }

    /// Mosquitto TLS listener lines (after `listener`).
    pub fn mosquitto_tls(&self, require_certificate: bool) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
            self.ca().display(),
            self.dir.join("server.pem").display(),
            self.dir.join("server.key").display()
        )
    }
}

//! Shared pieces of the uplink integration tests: an in-memory outbox, a fake data bank that
//! checks batches with the real contract and acknowledges, and uplink settings. Brokers and
//! certificates come from `caidan-testkit`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::clock::{Clock, SystemClock};
use caidan_sync::contract::{self, Ack, Name};
use caidan_sync::keys::{SecretKey, TrustedKeys};
use caidan_sync::tls::TlsFiles;
use caidan_sync::topics;
use caidan_sync::uplink::{
    OutboxRecord, OutboxSource, ShopperSignal, UplinkConfig, UplinkHandle, UplinkLinks,
    spawn_uplink,
};
use caidan_testkit::{TlsPaths, free_port};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

#[allow(unused_imports)]
pub use caidan_testkit::{Mosquitto, TestPki};

pub const FLEET: &str = "demo";

/// The fake data bank's signing key; [`test_config`] trusts it.
pub fn bank_key() -> SecretKey {
    SecretKey::from_seed_hex(&"5a".repeat(32)).unwrap()
}
const SHOPPER: &str = "ab12ab12ab12ab12ab12ab12ab12ab12";

/// TLS files of a test identity.
pub fn tls(paths: &TlsPaths) -> TlsFiles {
    TlsFiles {
        ca: Some(paths.ca.clone()),
        client_cert: Some(paths.cert.clone()),
        client_key: Some(paths.key.clone()),
    }
}

/// Only the CA of a test PKI.
pub fn ca_only(pki: &TestPki) -> TlsFiles {
    TlsFiles {
        ca: Some(pki.ca()),
        ..TlsFiles::default()
    }
}

/// An in-memory outbox holding CloudEvents that pass the data bank's validation.
pub struct FakeOutbox {
    pub device: String,
    epoch: Uuid,
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
            epoch: Uuid::now_v7(),
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
                "id": Uuid::now_v7().to_string(),
                "source": format!("/caidan/{FLEET}/d/{}", self.device),
                "type": "com.caidan.scan",
                "time": "2025-03-01T10:15:00.123Z",
                "datacontenttype": "application/json",
                "fleet": FLEET,
                "device": self.device,
                "epoch": self.epoch,
                "seq": seq,
                "data": {"scene": "cinema", "uptime_ms": seq, "shopper": SHOPPER, "brands": ["acme"]}
            });
            inner.records.insert(seq, event.to_string());
        }
    }

    pub fn epoch_str(&self) -> String {
        self.epoch.to_string()
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

    fn epoch(&self) -> Uuid {
        self.epoch
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
    /// Deliveries ignored so far because of `ignore_next`.
    pub ignored: u64,
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

/// A stand-in data bank: checks batches with [`contract::parse_batch`], stores seqs,
/// acknowledges the highest contiguous seq; also records device state messages.
pub struct FakeBank {
    pub state: Arc<Mutex<BankState>>,
    task: JoinHandle<()>,
}

impl FakeBank {
    pub fn start(url: &str, tls: &TlsFiles) -> FakeBank {
        let url: BrokerUrl = url.parse().unwrap();
        let opts = url
            .mqtt_options(&format!("fake-bank-{}", free_port()), tls)
            .unwrap();
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
                                s.ignored += 1;
                                continue;
                            }
                            let events = match contract::parse_batch(
                                &fleet,
                                &device,
                                &p.payload,
                                contract::Limits::default(),
                            ) {
                                Ok(e) => e,
                                Err(_) => {
                                    s.rejected += 1;
                                    continue;
                                }
                            };
                            let epoch = events[0].event.epoch;
                            for e in &events {
                                let set = s
                                    .stored
                                    .entry((device.clone(), e.event.epoch.to_string()))
                                    .or_default();
                                if !set.insert(e.event.seq) {
                                    s.duplicates += 1;
                                }
                            }
                            let seq = s.contiguous(&device, &epoch.to_string());
                            s.ack.then(|| {
                                Ack::signed(&fleet, &device, epoch, seq, &bank_key()).to_json()
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
pub async fn wait_until(secs: u64, cond: impl FnMut() -> bool) -> bool {
    caidan_testkit::eventually(Duration::from_secs(secs), cond).await
}

/// Uplink settings for tests: small batches, short linger and timeouts.
pub fn test_config(device: &str, url: &str) -> UplinkConfig {
    let name = |s: &str| Name::new(s).unwrap();
    let mut cfg = UplinkConfig::new(
        name(FLEET),
        name(device),
        url.parse().unwrap(),
        TrustedKeys::new(vec![bank_key().public()]),
        name("kiosk-test"),
    );
    cfg.core.batch_max_events = 50;
    cfg.core.linger = Duration::from_millis(20);
    cfg.core.ack_timeout = Duration::from_millis(800);
    cfg.core.initial_backoff = Duration::from_millis(100);
    cfg.core.max_backoff = Duration::from_millis(500);
    cfg
}

/// A running uplink over a [`FakeOutbox`], with the handles a test pokes.
pub struct Running {
    pub handle: UplinkHandle,
    pub wake: Arc<Notify>,
    pub shoppers: Arc<ShopperSignal>,
    pub stop: watch::Sender<bool>,
}

impl Running {
    /// On the system clock.
    pub fn start(cfg: UplinkConfig, outbox: &Arc<FakeOutbox>) -> Running {
        Running::start_clocked(cfg, outbox, Arc::new(SystemClock::new()))
    }

    /// On `clock` (a `TokioClock` for tests on paused time).
    pub fn start_clocked(
        cfg: UplinkConfig,
        outbox: &Arc<FakeOutbox>,
        clock: Arc<dyn Clock>,
    ) -> Running {
        let wake = Arc::new(Notify::new());
        let shoppers = Arc::new(ShopperSignal::default());
        let (stop, stopped) = watch::channel(false);
        let links = UplinkLinks {
            source: outbox.clone(),
            wake: wake.clone(),
            shoppers: shoppers.clone(),
            shutdown: stopped,
            clock,
            inbound: None,
            config: None,
        };
        let handle = spawn_uplink(cfg, links).unwrap();
        Running {
            handle,
            wake,
            shoppers,
            stop,
        }
    }

    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), self.handle.join())
            .await
            .expect("uplink stops within 10 s")
            .expect("uplink ends cleanly");
    }
}

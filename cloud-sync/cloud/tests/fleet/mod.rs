//! What the fleet command tests share: fake devices that behave as the device contract says
//! (verify, check target and version, apply or reject by the test's rule, answer on
//! `config/ack`, republish their retained state), the real binary, and a retained reader.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caidan_sync::contract::{
    ConfigAck, ConfigDocument, ConfigReport, ConfigStatus, Envelope, Fill, Layer, LayerId, Name,
    RejectCode, Rejection, StateMessage, StorageReport,
};
use caidan_sync::keys::{PublicKey, TrustedKeys};
use caidan_sync::topics;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub const FLEET: &str = "demo";

/// Why a fake device refuses a document, if it does.
pub type Refusal = Arc<dyn Fn(&ConfigDocument) -> Option<Rejection> + Send + Sync>;

/// What a fake device does with a document it may apply.
#[derive(Clone)]
pub enum Rule {
    /// Applies everything valid.
    Apply,
    /// Rejects a document when the function says why.
    Reject(Refusal),
    /// Receives but never answers.
    Silent,
}

impl Rule {
    pub fn reject_if(f: impl Fn(&ConfigDocument) -> bool + Send + Sync + 'static) -> Rule {
        Rule::Reject(Arc::new(move |d| {
            f(d).then(|| Rejection::new(RejectCode::InvalidForProfile, "no printer for coupons"))
        }))
    }
}

/// One document as the device got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    /// `None` for an empty (clearing) payload or an envelope that did not verify.
    pub document: Option<ConfigDocument>,
}

#[derive(Debug, Default)]
struct Inner {
    applied: BTreeMap<LayerId, (u64, String)>,
    report: ConfigReport,
    received: Vec<Received>,
    answers: Vec<ConfigAck>,
    /// Settings applied, per layer.
    settings: BTreeMap<LayerId, serde_json::Map<String, serde_json::Value>>,
}

/// A device on the broker.
pub struct FakeDevice {
    pub id: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a fake device starts.
#[derive(Clone)]
pub struct Spec {
    pub id: String,
    pub groups: Vec<String>,
    pub rule: Rule,
    pub online: bool,
    /// Versions already applied when it starts.
    pub report: ConfigReport,
}

impl Spec {
    pub fn new(id: &str) -> Spec {
        Spec {
            id: id.to_owned(),
            groups: Vec::new(),
            rule: Rule::Apply,
            online: true,
            report: ConfigReport::default(),
        }
    }

    pub fn groups(mut self, groups: &[&str]) -> Spec {
        self.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }

    pub fn rule(mut self, rule: Rule) -> Spec {
        self.rule = rule;
        self
    }

    pub fn offline(mut self) -> Spec {
        self.online = false;
        self
    }

    pub fn fleet_version(mut self, v: u64) -> Spec {
        self.report.fleet = Some(v);
        self
    }
}

fn layer_of(doc: &ConfigDocument) -> LayerId {
    doc.layer_id()
}

struct Device {
    spec: Spec,
    trusted: TrustedKeys,
    client: AsyncClient,
    inner: Arc<Mutex<Inner>>,
}

impl Device {
    fn state(&self) -> StateMessage {
        let report = self.inner.lock().unwrap().report.clone();
        StateMessage {
            online: self.spec.online,
            profile: Name::new("kiosk").unwrap(),
            config_version: [report.fleet, report.device]
                .into_iter()
                .chain(report.groups.values().map(|v| Some(*v)))
                .flatten()
                .max(),
            outbox_depth: Some(3),
            last_error: None,
            storage: Some(StorageReport {
                used_bytes: 500,
                budget_bytes: 1000,
                fill: Fill::Normal,
            }),
            stock: None,
            location: None,
            groups: self
                .spec
                .groups
                .iter()
                .map(|g| Name::new(g.as_str()).unwrap())
                .collect(),
            scene: Some(Name::new("cinema").unwrap()),
            config: Some(report),
            at: Some(jiff::Timestamp::now()),
            clock: None,
        }
    }

    fn publish_state(&self) {
        let topic = topics::state(FLEET, &self.spec.id);
        self.client
            .try_publish(topic, QoS::AtLeastOnce, true, self.state().to_json())
            .unwrap();
    }

    fn applies(&self, doc: &ConfigDocument) -> bool {
        doc.fleet.as_str() == FLEET
            && match doc.layer {
                Layer::Fleet => doc.target.as_str() == FLEET,
                Layer::Group => self.spec.groups.iter().any(|g| g == doc.target.as_str()),
                Layer::Device => doc.target.as_str() == self.spec.id,
            }
    }

    /// As the agent does: verify, check the target and the version, apply or reject.
    fn handle(&self, topic: &str, payload: &[u8]) {
        if payload.is_empty() {
            self.inner.lock().unwrap().received.push(Received {
                topic: topic.to_owned(),
                document: None,
            });
            return;
        }
        let env = match Envelope::parse(payload) {
            Ok(e) => e,
            Err(r) => return self.answer(None, digest(payload), Err(r)),
        };
        let digest = env.digest();
        let verified = env.verify(&self.trusted);
        self.inner.lock().unwrap().received.push(Received {
            topic: topic.to_owned(),
            document: verified.as_ref().ok().map(|v| v.document.clone()),
        });
        if matches!(self.spec.rule, Rule::Silent) {
            return;
        }
        let doc = match verified {
            Ok(v) => v.document,
            Err(r) => return self.answer(None, digest, Err(r)),
        };
        if !self.applies(&doc) {
            let r = Rejection::new(RejectCode::WrongTarget, "not for this device");
            return self.answer(Some(&doc), digest, Err(r));
        }
        let layer = layer_of(&doc);
        let prior = self.inner.lock().unwrap().applied.get(&layer).cloned();
        match prior {
            Some((v, d)) if v == doc.version && d == digest => {
                return self.answer(Some(&doc), digest, Ok(false));
            }
            Some((v, _)) if v >= doc.version => {
                let r = Rejection::new(RejectCode::StaleVersion, format!("{} applied", v));
                return self.answer(Some(&doc), digest, Err(r));
            }
            _ => {}
        }
        if let Rule::Reject(f) = &self.spec.rule
            && let Some(r) = f(&doc)
        {
            return self.answer(Some(&doc), digest, Err(r));
        }
        self.answer(Some(&doc), digest, Ok(true));
    }

    /// Answers on `config/ack`; `Ok(true)` applies the document first.
    fn answer(
        &self,
        doc: Option<&ConfigDocument>,
        digest: String,
        outcome: Result<bool, Rejection>,
    ) {
        let ack = ConfigAck {
            layer: doc.map(|d| d.layer),
            target: doc.map(|d| d.target.clone()),
            version: doc.map(|d| d.version),
            status: if outcome.is_ok() {
                ConfigStatus::Applied
            } else {
                ConfigStatus::Rejected
            },
            reason: outcome.as_ref().err().cloned(),
            digest: digest.clone(),
        };
        let changed = {
            let mut inner = self.inner.lock().unwrap();
            inner.answers.push(ack.clone());
            match (&outcome, doc) {
                (Ok(true), Some(doc)) => {
                    let layer = layer_of(doc);
                    inner.applied.insert(layer.clone(), (doc.version, digest));
                    inner.settings.insert(layer, doc.settings.clone());
                    match doc.layer {
                        Layer::Fleet => inner.report.fleet = Some(doc.version),
                        Layer::Group => {
                            inner.report.groups.insert(doc.target.clone(), doc.version);
                        }
                        Layer::Device => inner.report.device = Some(doc.version),
                    }
                    true
                }
                (Err(_), _) => {
                    inner.report.last_rejection = Some(ack.clone());
                    true
                }
                _ => false,
            }
        };
        let topic = topics::config_ack(FLEET, &self.spec.id);
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, ack.to_json())
            .unwrap();
        if changed {
            self.publish_state();
        }
    }
}

fn digest(payload: &[u8]) -> String {
    caidan_sync::contract::config::digest(payload)
}

impl FakeDevice {
    /// Connects, subscribes to its four kinds of config topic, publishes its retained state
    /// and returns once the broker has it.
    pub async fn start(port: u16, spec: Spec, operator: PublicKey) -> FakeDevice {
        let mut o = MqttOptions::new(format!("fake-{}", spec.id), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 100);
        let inner = Arc::new(Mutex::new(Inner {
            report: spec.report.clone(),
            ..Inner::default()
        }));
        for (layer, version) in [(Layer::Fleet, spec.report.fleet)] {
            if let Some(v) = version {
                let id = LayerId {
                    layer,
                    target: Name::new(FLEET).unwrap(),
                };
                inner.lock().unwrap().applied.insert(id, (v, String::new()));
            }
        }
        let id = spec.id.clone();
        let mut filters = vec![
            topics::fleet_config(FLEET),
            topics::device_config(FLEET, &spec.id),
            topics::rollout_config(FLEET, &spec.id),
        ];
        filters.extend(spec.groups.iter().map(|g| topics::group_config(FLEET, g)));
        let device = Device {
            spec,
            trusted: TrustedKeys::new(vec![operator]),
            client: client.clone(),
            inner: inner.clone(),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let subs = filters
                            .iter()
                            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                        device.client.try_subscribe_many(subs).unwrap();
                        device.publish_state();
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => device.handle(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("fake device published its state")
            .unwrap();
        FakeDevice { id, inner, task }
    }

    /// The version applied for the fleet layer.
    pub fn fleet_version(&self) -> Option<u64> {
        self.inner.lock().unwrap().report.fleet
    }

    pub fn report(&self) -> ConfigReport {
        self.inner.lock().unwrap().report.clone()
    }

    /// The settings applied for the fleet layer.
    pub fn fleet_settings(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        let id = LayerId {
            layer: Layer::Fleet,
            target: Name::new(FLEET).unwrap(),
        };
        self.inner.lock().unwrap().settings.get(&id).cloned()
    }

    /// Everything that arrived on its config topics, in order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Versions of the documents that arrived on its rollout topic.
    pub fn rollout_versions(&self) -> Vec<u64> {
        let topic = topics::rollout_config(FLEET, &self.id);
        self.received()
            .into_iter()
            .filter(|r| r.topic == topic)
            .filter_map(|r| r.document.map(|d| d.version))
            .collect()
    }

    pub fn answers(&self) -> Vec<ConfigAck> {
        self.inner.lock().unwrap().answers.clone()
    }
}

/// Starts every device of `specs`.
pub async fn devices(port: u16, specs: Vec<Spec>, operator: PublicKey) -> Vec<FakeDevice> {
    let mut out = Vec::new();
    for s in specs {
        out.push(FakeDevice::start(port, s, operator).await);
    }
    out
}

/// Runs `caidan-cloud` with `args`.
pub async fn cli(args: &[&str]) -> Output {
    tokio::process::Command::new(caidan_testkit::bin::cloud())
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .await
        .expect("run caidan-cloud")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Makes an operator key in `dir/keys`; its secret key's path and its public key.
pub async fn operator_key(dir: &Path) -> (String, PublicKey) {
    let out = dir.join("keys");
    let o = cli(&["fleet", "keygen", "--out", out.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let public = std::fs::read_to_string(out.join("operator.pub")).unwrap();
    (
        out.join("operator.key").display().to_string(),
        public.trim().parse().unwrap(),
    )
}

/// What the broker retains under `filter`: (topic, payload), empty payloads left out.
pub async fn retained(port: u16, filter: &str) -> Vec<(String, Vec<u8>)> {
    let mut o = MqttOptions::new(
        format!("reader-{}", uuid::Uuid::new_v4().simple()),
        "127.0.0.1",
        port,
    );
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 10);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let mut out = Vec::new();
    let mut subscribed = false;
    loop {
        let wait = if subscribed { 500 } else { 10_000 };
        match tokio::time::timeout(Duration::from_millis(wait), eventloop.poll()).await {
            Err(_) => break,
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => subscribed = true,
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.retain && !p.payload.is_empty() => {
                out.push((p.topic.clone(), p.payload.to_vec()))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("reader: {e}"),
        }
    }
    let _ = client.disconnect().await;
    out
}

/// The document retained on `topic`, verified with `key`.
pub async fn retained_document(port: u16, topic: &str, key: &PublicKey) -> Option<ConfigDocument> {
    let found = retained(port, topic).await;
    let (_, payload) = found.into_iter().next()?;
    let env = Envelope::parse(&payload).expect("an envelope");
    Some(
        env.verify(&TrustedKeys::new(vec![*key]))
            .expect("signed by the operator key")
            .document,
    )
}

/// Writes a config file.
pub fn config_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Waits until `cond` holds, up to 15 s.
pub async fn until(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        caidan_testkit::eventually(Duration::from_secs(15), cond).await,
        "timed out waiting for {what}"
    );
}

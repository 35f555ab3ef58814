//! Fleet config over a real broker: every kind of bad document is refused with its own
//! reason while the old offers keep serving; layers take precedence; a device offline
//! during a push applies the retained document when it connects; key rotation needs the
//! old key; a catalogue by reference is fetched over HTTPS and checked.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use caidan_agent::config::{AgentConfig, DEMO_CONFIG};
use caidan_agent::store::read::Table;
use caidan_sync::contract::{ConfigAck, ConfigDocument, ConfigStatus, Envelope, Layer, Name};
use caidan_sync::keys::{SecretKey, TrustedKeys};
use caidan_testkit::files::FileServer;
use caidan_testkit::mosquitto::Mosquitto;
use caidan_testkit::pki::TestPki;
use caidan_testkit::wait::eventually;
use common::{TestAgent, unlimited};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

const DEVICE: &str = "demo-cinema-01";
const ROOT: &str = "caidan/v1/demo";

fn config(key: &SecretKey) -> AgentConfig {
    let mut c = unlimited(AgentConfig::from_toml(DEMO_CONFIG, "test.toml").unwrap());
    c.trust.config = TrustedKeys::new(vec![key.public()]);
    c
}

fn offer(id: &str) -> Value {
    json!({ "id": id, "brand": "lumi", "kind": "coupon", "title": { "en": id },
            "quota": { "per_device_per_day": 1000, "per_shopper": 1 } })
}

fn doc(layer: Layer, target: &str, version: u64, settings: Value) -> ConfigDocument {
    ConfigDocument {
        fleet: Name::new("demo").unwrap(),
        layer,
        target: Name::new(target).unwrap(),
        version,
        issued_at: "2026-12-01T10:00:00Z".parse().unwrap(),
        settings: settings.as_object().unwrap().clone(),
    }
}

fn topic(layer: Layer, target: &str) -> String {
    match layer {
        Layer::Fleet => format!("{ROOT}/config"),
        Layer::Group => format!("{ROOT}/g/{target}/config"),
        Layer::Device => format!("{ROOT}/d/{target}/config"),
    }
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// An operator's connection: publishes retained and collects the device's answers.
struct Operator {
    client: AsyncClient,
    acks: Arc<Mutex<Vec<ConfigAck>>>,
    states: Arc<Mutex<Vec<Value>>>,
}

impl Operator {
    async fn connect(url: &str) -> Operator {
        let mut opts = MqttOptions::new(
            format!("operator-{}", rand::random::<u32>()),
            "127.0.0.1",
            port(url),
        );
        opts.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let states = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (acks.clone(), states.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/config/ack") => {
                        a.lock()
                            .unwrap()
                            .push(ConfigAck::parse(&p.payload).expect("a well-formed answer"));
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/state") => {
                        if let Ok(v) = serde_json::from_slice(&p.payload) {
                            s.lock().unwrap().push(v);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        client
            .subscribe(format!("{ROOT}/d/{DEVICE}/config/ack"), QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe(format!("{ROOT}/d/{DEVICE}/state"), QoS::AtLeastOnce)
            .await
            .unwrap();
        Operator {
            client,
            acks,
            states,
        }
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }

    async fn push(&self, key: &SecretKey, d: &ConfigDocument) {
        self.publish(
            &topic(d.layer, d.target.as_str()),
            Envelope::sign(d, key).to_json(),
        )
        .await;
    }

    /// The next answer after `seen` answers, within 20 s.
    async fn answer(&self, seen: usize) -> ConfigAck {
        let got = eventually(Duration::from_secs(20), || {
            self.acks.lock().unwrap().len() > seen
        })
        .await;
        assert!(got, "no answer from the device after {seen}");
        self.acks.lock().unwrap()[seen].clone()
    }

    /// Whether an answer matching `want` comes within 20 s.
    async fn answered(&self, want: impl Fn(&ConfigAck) -> bool) -> bool {
        eventually(Duration::from_secs(20), || {
            self.acks.lock().unwrap().iter().any(&want)
        })
        .await
    }

    fn count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    fn last_state(&self) -> Value {
        self.states
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// Cracks an egg with the token in `qr`.
async fn crack(agent: &TestAgent, qr: &Value) -> reqwest::Response {
    agent
        .http
        .post(agent.url("/api/v1/eggs"))
        .json(&json!({ "token": qr["token"], "shopper": "s" }))
        .send()
        .await
        .unwrap()
}

fn code(a: &ConfigAck) -> &'static str {
    assert_eq!(a.status, ConfigStatus::Rejected, "{a:?}");
    a.reason.as_ref().unwrap().code.as_str()
}

/// The offer a new shopper gets now.
async fn claimed_offer(agent: &TestAgent, shopper: &str) -> String {
    let qr = agent.qr().await;
    let egg: Value = agent
        .http
        .post(agent.url("/api/v1/eggs"))
        .json(&json!({ "token": qr["token"], "shopper": shopper }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    egg["offer"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no offer in {egg}"))
        .to_owned()
}

/// A demo agent with `cfg` on `broker`, once connected.
async fn online(broker: &Mosquitto, cfg: AgentConfig) -> TestAgent {
    let agent = TestAgent::start_in(
        caidan_agent::config::DEMO_CATALOGUE.parse().unwrap(),
        cfg,
        tempfile::tempdir().unwrap(),
        Some(&broker.url()),
    )
    .await;
    connected(&agent).await;
    agent
}

async fn connected(agent: &TestAgent) {
    let up = agent.running.uplink.as_ref().unwrap();
    let ok = eventually(Duration::from_secs(20), || up.status().connected).await;
    assert!(ok, "agent never connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_document_is_refused_with_its_own_reason_and_the_old_offers_serve() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let key = SecretKey::generate();
    let agent = online(&broker, config(&key)).await;
    let op = Operator::connect(&broker.url()).await;
    let good = doc(
        Layer::Device,
        DEVICE,
        5,
        json!({ "offers": [offer("fleet-a")] }),
    );
    op.push(&key, &good).await;
    let a = op.answer(0).await;
    assert_eq!(
        (a.status, a.version),
        (ConfigStatus::Applied, Some(5)),
        "{a:?}"
    );
    assert_eq!(agent.count(Table::Offers), 1);
    assert_eq!(claimed_offer(&agent, "s-0").await, "fleet-a");

    let device_topic = topic(Layer::Device, DEVICE);
    let next = doc(
        Layer::Device,
        DEVICE,
        6,
        json!({ "offers": [offer("fleet-b")] }),
    );
    let signed = Envelope::sign(&next, &key);
    let mut unsigned = signed.clone();
    unsigned.signatures.clear();
    let stranger = Envelope::sign(&next, &SecretKey::generate());
    let mut payload = signed.clone();
    let mut other = next.clone();
    other.settings = json!({ "offers": [offer("evil")] })
        .as_object()
        .unwrap()
        .clone();
    payload.payload =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&other).unwrap());
    let mut sig = signed.clone();
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(&sig.signatures[0].sig)
        .unwrap();
    raw[0] ^= 0x40;
    sig.signatures[0].sig = base64::engine::general_purpose::STANDARD.encode(raw);
    let older = Envelope::sign(
        &doc(
            Layer::Device,
            DEVICE,
            4,
            json!({ "offers": [offer("old")] }),
        ),
        &key,
    );
    let sample = json!({ "id": "sample", "brand": "lumi", "kind": "free_sample", "sku": "cola",
        "title": { "en": "Free cola" }, "requires": ["dispenser"] });
    let for_vending = Envelope::sign(
        &doc(Layer::Device, DEVICE, 7, json!({ "offers": [sample] })),
        &key,
    );
    let fast_qr = Envelope::sign(
        &doc(
            Layer::Device,
            DEVICE,
            8,
            json!({ "qr": { "rotation_secs": 0 } }),
        ),
        &key,
    );
    let unknown = Envelope::sign(
        &doc(Layer::Device, DEVICE, 9, json!({ "colour": "red" })),
        &key,
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{not json".to_vec()),
        ("unsigned", unsigned.to_json()),
        ("untrusted_key", stranger.to_json()),
        ("bad_signature", payload.to_json()),
        ("bad_signature", sig.to_json()),
        ("stale_version", older.to_json()),
        ("invalid_for_profile", for_vending.to_json()),
        ("invalid_for_profile", fast_qr.to_json()),
        ("invalid", unknown.to_json()),
    ];
    for (i, (want, payload)) in cases.into_iter().enumerate() {
        let seen = op.count();
        op.publish(&device_topic, payload).await;
        let a = op.answer(seen).await;
        assert_eq!(code(&a), want, "case {i}: {a:?}");
        assert_eq!(agent.count(Table::Offers), 1, "case {i} changed the offers");
        assert_eq!(
            claimed_offer(&agent, &format!("s-{}", i + 1)).await,
            "fleet-a",
            "case {i}"
        );
    }
    // The refusal is in the retained state too, and applied versions stay.
    let state = eventually(Duration::from_secs(10), || {
        op.last_state()["config"]["last_rejection"]["reason"]["code"] == "invalid"
    })
    .await;
    assert!(state, "state: {}", op.last_state());
    assert_eq!(op.last_state()["config"]["device"], 5);
    // Every answer is an outbox event for the data bank.
    let events = agent
        .reader()
        .outbox_after(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|r| r.json.contains("\"com.caidan.config\""))
        .count();
    assert_eq!(events, 10, "one applied, nine refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_layers_apply_on_connect_with_device_over_group_over_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let key = SecretKey::generate();
    let op = Operator::connect(&broker.url()).await;
    // Pushed while the device is offline.
    op.push(
        &key,
        &doc(
            Layer::Fleet,
            "demo",
            1,
            json!({ "qr": { "rotation_secs": 40 }, "brand_line": { "en": "Fleet line" } }),
        ),
    )
    .await;
    op.push(
        &key,
        &doc(
            Layer::Group,
            "shanghai",
            1,
            json!({ "qr": { "rotation_secs": 20 }, "features": { "eggs": false } }),
        ),
    )
    .await;
    op.push(
        &key,
        &doc(
            Layer::Device,
            DEVICE,
            1,
            json!({ "qr": { "rotation_secs": 10 } }),
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let data = tempfile::tempdir().unwrap();
    let agent = TestAgent::start_in(
        caidan_agent::config::DEMO_CATALOGUE.parse().unwrap(),
        config(&key),
        data,
        Some(&broker.url()),
    )
    .await;
    let all = eventually(Duration::from_secs(20), || {
        op.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.status == ConfigStatus::Applied)
            .count()
            == 3
    })
    .await;
    assert!(all, "answers: {:?}", op.acks.lock().unwrap());
    let qr = agent.qr().await;
    assert_eq!(qr["rotation_secs"], 10, "the device layer wins");
    let egg = crack(&agent, &qr).await;
    assert_eq!(egg.status(), 503, "the group switched eggs off");
    // A newer fleet layer changes what only it sets, not what the device overrides.
    op.push(
        &key,
        &doc(
            Layer::Fleet,
            "demo",
            2,
            json!({ "qr": { "rotation_secs": 60 } }),
        ),
    )
    .await;
    let seen = op
        .answered(|a| a.version == Some(2) && a.status == ConfigStatus::Applied)
        .await;
    assert!(seen);
    let qr = agent.qr().await;
    assert_eq!(qr["rotation_secs"], 10);
    // Removing the group's switch (a new group layer without it) turns eggs back on, hot.
    op.push(&key, &doc(Layer::Group, "shanghai", 2, json!({})))
        .await;
    let on = op
        .answered(|a| a.layer == Some(Layer::Group) && a.version == Some(2))
        .await;
    assert!(on);
    let qr = agent.qr().await;
    let egg = crack(&agent, &qr).await;
    assert_eq!(egg.status(), 201);
    // After a restart with no broker the applied layers still run.
    let data = agent.stop().await;
    let agent = TestAgent::start_in(
        caidan_agent::config::DEMO_CATALOGUE.parse().unwrap(),
        config(&key),
        data,
        None,
    )
    .await;
    let qr = agent.qr().await;
    assert_eq!(
        qr["rotation_secs"], 10,
        "applied layers persist across a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trusted_keys_rotate_only_by_a_document_the_old_key_signed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let (old, new) = (SecretKey::generate(), SecretKey::generate());
    let _agent = online(&broker, config(&old)).await;
    let op = Operator::connect(&broker.url()).await;
    let rotate = |v| {
        doc(
            Layer::Fleet,
            "demo",
            v,
            json!({ "trust": { "config": [new.public().to_string()] } }),
        )
    };
    // The new key cannot name itself.
    op.push(&new, &rotate(1)).await;
    assert_eq!(code(&op.answer(0).await), "untrusted_key");
    // The old key names the new set.
    op.push(&old, &rotate(2)).await;
    assert_eq!(op.answer(1).await.status, ConfigStatus::Applied);
    // From now on only the new key signs.
    op.push(
        &old,
        &doc(
            Layer::Device,
            DEVICE,
            1,
            json!({ "qr": { "rotation_secs": 15 } }),
        ),
    )
    .await;
    assert_eq!(code(&op.answer(2).await), "untrusted_key");
    op.push(
        &new,
        &doc(
            Layer::Device,
            DEVICE,
            2,
            json!({ "qr": { "rotation_secs": 15 } }),
        ),
    )
    .await;
    let a = op.answer(3).await;
    assert_eq!(a.status, ConfigStatus::Applied, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_by_reference_is_fetched_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let pki = TestPki::new(dir.path());
    let catalogue = json!({ "version": 1, "offers": [offer("by-ref")] })
        .to_string()
        .into_bytes();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&catalogue));
    let files = FileServer::start(&pki, catalogue.clone(), Duration::ZERO).await;
    let slow = FileServer::start(&pki, catalogue.clone(), Duration::from_secs(5)).await;
    let key = SecretKey::generate();
    let mut cfg = config(&key);
    cfg.fleet.ca = Some(pki.ca());
    cfg.fleet.fetch_timeout_ms = 1_000;
    let agent = TestAgent::start_in(
        caidan_agent::config::DEMO_CATALOGUE.parse().unwrap(),
        cfg,
        tempfile::tempdir().unwrap(),
        Some(&broker.url()),
    )
    .await;
    connected(&agent).await;
    let offers_before = agent.count(Table::Offers);
    let op = Operator::connect(&broker.url()).await;
    let by_ref = |v, base: &str, sha: &str, bytes: usize| {
        doc(
            Layer::Device,
            DEVICE,
            v,
            json!({ "catalogue": { "url": format!("{base}/c.json"), "sha256": sha, "bytes": bytes } }),
        )
    };
    op.push(
        &key,
        &by_ref(1, &files.base, &"0".repeat(64), catalogue.len()),
    )
    .await;
    assert_eq!(code(&op.answer(0).await), "hash_mismatch");
    op.push(&key, &by_ref(2, &files.base, &sha, catalogue.len() - 1))
        .await;
    assert_eq!(code(&op.answer(1).await), "too_large");
    op.push(&key, &by_ref(3, &slow.base, &sha, catalogue.len()))
        .await;
    assert_eq!(code(&op.answer(2).await), "fetch_timeout");
    op.push(&key, &by_ref(4, &files.base, &sha, 1 << 40)).await;
    assert_eq!(
        code(&op.answer(3).await),
        "too_large",
        "over the storage budget"
    );
    assert_eq!(agent.count(Table::Offers), offers_before, "nothing changed");
    op.push(&key, &by_ref(5, &files.base, &sha, catalogue.len()))
        .await;
    let a = op.answer(4).await;
    assert_eq!(a.status, ConfigStatus::Applied, "{a:?}");
    assert_eq!(agent.count(Table::Offers), 1);
    assert_eq!(claimed_offer(&agent, "s").await, "by-ref");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_tokens_and_the_sync_policy_change_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let key = SecretKey::generate();
    let agent = online(&broker, config(&key)).await;
    let inventory = |token: &'static str| {
        agent
            .http
            .get(agent.url("/api/v1/inventory"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(inventory("demo-staff-token").await.unwrap().status(), 200);
    let op = Operator::connect(&broker.url()).await;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"night-shift-token"));
    op.push(
        &key,
        &doc(
            Layer::Device,
            DEVICE,
            1,
            json!({ "staff": { "tokens": [format!("sha256:{hash}")] },
                    "sync": { "linger_ms": 5, "batch_max_events": 7 } }),
        ),
    )
    .await;
    assert_eq!(op.answer(0).await.status, ConfigStatus::Applied);
    assert_eq!(inventory("demo-staff-token").await.unwrap().status(), 401);
    assert_eq!(inventory("night-shift-token").await.unwrap().status(), 200);
    // Batches sent from now on hold at most 7 events (the profile says 100).
    let mut opts = MqttOptions::new("batch-watcher", "127.0.0.1", port(&broker.url()));
    opts.set_max_packet_size(2 << 20, 2 << 20);
    let (watcher, mut ev) = AsyncClient::new(opts, 64);
    watcher
        .subscribe(format!("{ROOT}/d/{DEVICE}/events"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = e
                && let Ok(Value::Array(batch)) = serde_json::from_slice(&p.payload)
            {
                let seqs: Vec<i64> = batch.iter().filter_map(|e| e["seq"].as_i64()).collect();
                seen.lock().unwrap().push(seqs);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..20 {
        claimed_offer(&agent, &format!("batch-{i}")).await;
    }
    // Only batches made after the apply: their events all come after the config event.
    let applied_at = agent
        .reader()
        .outbox_after(0, 10_000)
        .unwrap()
        .into_iter()
        .find(|r| r.json.contains("\"com.caidan.config\""))
        .map(|r| r.seq)
        .expect("the config event");
    let after = |all: &[Vec<i64>]| -> Vec<usize> {
        all.iter()
            .filter(|b| b.iter().all(|s| *s > applied_at))
            .map(Vec::len)
            .collect()
    };
    let enough = eventually(Duration::from_secs(20), || {
        after(&sizes.lock().unwrap()).iter().sum::<usize>() >= 20
    })
    .await;
    let later = after(&sizes.lock().unwrap());
    assert!(enough, "batches after the apply: {later:?}");
    assert!(later.iter().all(|n| *n <= 7), "batches: {later:?}");
}

/// As a stranger with publish rights would try it: an oversized document, then a flood of
/// one refused document from one client. The agent stays connected and serving, answers,
/// and records the repeated refusal once, so the flood cannot fill its outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_document_and_a_flood_of_one_are_refused_without_filling_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let key = SecretKey::generate();
    let agent = online(&broker, config(&key)).await;
    let op = Operator::connect(&broker.url()).await;
    let device_topic = topic(Layer::Device, DEVICE);
    op.publish(&device_topic, vec![b' '; 1_200_000]).await;
    let a = op.answer(0).await;
    assert_eq!(code(&a), "malformed");
    assert!(a.reason.unwrap().message.contains("limit"), "says why");
    let junk = Envelope::sign(
        &doc(Layer::Device, DEVICE, 1, json!({ "colour": "red" })),
        &key,
    );
    for _ in 0..200 {
        op.publish(&device_topic, junk.to_json()).await;
    }
    assert!(
        op.answered(|a| a.version == Some(1)).await,
        "the flood is answered"
    );
    let up = agent.running.uplink.as_ref().unwrap();
    assert!(up.status().connected, "still connected");
    assert!(!claimed_offer(&agent, "after-flood").await.is_empty());
    let recorded = agent
        .reader()
        .outbox_after(0, 100_000)
        .unwrap()
        .into_iter()
        .filter(|r| r.json.contains("\"com.caidan.config\""))
        .count();
    assert_eq!(
        recorded, 2,
        "the oversized one and the flooded one, each once"
    );
}

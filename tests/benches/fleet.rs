//! Fleet config at scale, on one machine, in one run:
//! 1. time from a push (a signed fleet layer published retained) to the last device's
//!    "applied" answer, for `AGENTS` agents (200) running in this process on one broker;
//! 2. on one agent, the apply time of a 10,000-offer catalogue by HTTPS reference, and the
//!    claim p99 while it applies beside the claim p99 at rest, measured back to back.
//!
//! `cargo bench -p caidan-e2e --bench fleet`. Agents run the demo config (cinema profile)
//! with the per-client limits lifted (the claims come from one address).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caidan_agent::config::{AgentConfig, DEMO_CATALOGUE, DEMO_CONFIG};
use caidan_agent::runtime::{self, MqttTarget, RunOptions, Running};
use caidan_sync::clock::SystemClock;
use caidan_sync::contract::{ConfigAck, ConfigDocument, ConfigStatus, Envelope, Layer, Name};
use caidan_sync::keys::{SecretKey, TrustedKeys};
use caidan_testkit::files::FileServer;
use caidan_testkit::pki::TestPki;
use common::{Result, connect, env_usize, figure, scratch, start_broker_with};
use rumqttc::{Event, Packet, QoS};
use serde_json::{Value, json};

const PUSHES: u64 = 3;

fn agent_config(i: usize, key: &SecretKey, ca: &std::path::Path) -> AgentConfig {
    let text = DEMO_CONFIG.replace("demo-cinema-01", &format!("bench-{i:03}"));
    let mut c = AgentConfig::from_toml(&text, "bench.toml").expect("demo config");
    c.trust.config = TrustedKeys::new(vec![key.public()]);
    c.fleet.ca = Some(ca.to_owned());
    c.limits.eggs_per_client.per_minute = 1_000_000;
    c.limits.eggs_per_client.burst = 100_000;
    c.limits.eggs_per_shopper.per_minute = 1_000_000;
    c.limits.eggs_per_shopper.burst = 100_000;
    c.limits.claims_per_minute = Some(1_000_000);
    c.limits.max_connections_per_client = Some(1024);
    c
}

async fn start_agent(cfg: AgentConfig, dir: &std::path::Path, port: u16) -> Running {
    let opts = RunOptions {
        config: cfg,
        catalogue: Some(caidan_agent::catalogue::CatalogueFile {
            text: DEMO_CATALOGUE.to_owned(),
            origin: "demo".into(),
        }),
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        screen_listen: "127.0.0.1:0".parse().unwrap(),
        display: None,
        mqtt: Some(MqttTarget {
            url: format!("mqtt://127.0.0.1:{port}").parse().unwrap(),
            tls: Default::default(),
        }),
    };
    runtime::start(opts, SystemClock::shared())
        .await
        .expect("agent starts")
}

fn fleet_doc(version: u64, settings: Value) -> ConfigDocument {
    ConfigDocument {
        fleet: Name::new("demo").unwrap(),
        layer: Layer::Fleet,
        target: Name::new("demo").unwrap(),
        version,
        issued_at: jiff::Timestamp::now(),
        settings: settings.as_object().unwrap().clone(),
    }
}

/// Claims from `workers` shoppers at once until `stop` says so; latencies in ms.
async fn claim_load(
    base: String,
    screen: String,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<f64> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (base, screen, stop) = (base.clone(), screen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(qr) = http.get(format!("{screen}/api/v1/qr")).send().await else { continue };
                let Ok(qr) = qr.json::<Value>().await else { continue };
                n += 1;
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/api/v1/eggs"))
                    .json(&json!({ "token": qr["token"], "shopper": format!("w{w}-{n}-{}", rand_u32()) }))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().as_u16() == 201) {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_by(f64::total_cmp);
    all
}

fn rand_u32() -> u32 {
    uuid::Uuid::now_v7().as_u128() as u32
}

/// 10,000 coupon offers as a catalogue file.
fn big_catalogue() -> Vec<u8> {
    let offers: Vec<Value> = (0..10_000)
        .map(|i| json!({ "id": format!("c-{i:05}"), "brand": format!("brand-{}", i % 50), "kind": "coupon",
            "title": { "zh": format!("优惠券 {i}"), "en": format!("Coupon number {i}") },
            "description": { "zh": "在柜台出示券码", "en": "Show the code at the counter" },
            "quota": { "per_device_per_day": 100000, "per_shopper": 1 }, "weight": 1 + i % 7 }))
        .collect();
    json!({ "version": 1, "offers": offers })
        .to_string()
        .into_bytes()
}

async fn run() -> Result<()> {
    let agents = env_usize("AGENTS", 200);
    let dir = scratch("fleet")?;
    let broker = start_broker_with(dir.path(), "max_queued_messages 10000");
    let port = broker.port;
    let pki = TestPki::new(dir.path());
    let key = SecretKey::generate();

    // Acknowledgements and states of the whole fleet.
    let (op, mut ev) = connect("bench-operator", port, 4096).await?;
    let acks: Arc<Mutex<Vec<(Instant, ConfigAck)>>> = Arc::default();
    let online: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    {
        let (acks, online) = (acks.clone(), online.clone());
        tokio::spawn(async move {
            while let Ok(e) = ev.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = e {
                    if p.topic.ends_with("/config/ack") {
                        if let Ok(a) = ConfigAck::parse(&p.payload) {
                            acks.lock().unwrap().push((Instant::now(), a));
                        }
                    } else if let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
                        && v["online"] == true
                    {
                        online.lock().unwrap().insert(p.topic.clone());
                    }
                }
            }
        });
    }
    op.subscribe("caidan/v1/demo/d/+/config/ack", QoS::AtLeastOnce)
        .await?;
    op.subscribe("caidan/v1/demo/d/+/state", QoS::AtLeastOnce)
        .await?;

    let mut running = Vec::new();
    let started = Instant::now();
    for i in 0..agents {
        let d = dir.path().join(format!("agent-{i:03}"));
        running.push(start_agent(agent_config(i, &key, &pki.ca()), &d, port).await);
    }
    let all_up = common::wait_for(Duration::from_secs(120), || {
        online.lock().unwrap().len() >= agents
    })
    .await;
    assert!(
        all_up,
        "only {} of {agents} agents online",
        online.lock().unwrap().len()
    );
    println!(
        "# {agents} agents started and online in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 1. Push to the last acknowledgement.
    let mut spans = Vec::new();
    for v in 1..=PUSHES {
        let doc = fleet_doc(
            v,
            json!({ "qr": { "rotation_secs": 20 + v as u32 }, "brand_line": { "en": format!("push {v}") } }),
        );
        let env = Envelope::sign(&doc, &key);
        let t0 = Instant::now();
        op.publish(
            "caidan/v1/demo/config",
            QoS::AtLeastOnce,
            true,
            env.to_json(),
        )
        .await?;
        let done = common::wait_for(Duration::from_secs(120), || {
            acks.lock()
                .unwrap()
                .iter()
                .filter(|(_, a)| a.version == Some(v) && a.status == ConfigStatus::Applied)
                .count()
                >= agents
        })
        .await;
        let a = acks.lock().unwrap();
        let applied: Vec<Instant> = a
            .iter()
            .filter(|(_, a)| a.version == Some(v) && a.status == ConfigStatus::Applied)
            .map(|(t, _)| *t)
            .collect();
        assert!(done, "push {v}: {} of {agents} applied", applied.len());
        let last = applied.iter().max().copied().unwrap_or(t0);
        let span = last.duration_since(t0).as_secs_f64() * 1000.0;
        println!("push {v}: {agents} devices applied, last answer {span:.0} ms after the push");
        spans.push(span);
    }
    spans.sort_by(f64::total_cmp);
    figure(
        &format!("push to last acknowledgement, {agents} agents, median of {PUSHES}"),
        spans[spans.len() / 2],
        "ms",
    );

    // 2. A 10,000-offer catalogue on the first agent, claims at rest and while it applies.
    let body = big_catalogue();
    let sha = hex_sha256(&body);
    let files = FileServer::start(&pki, body.clone(), Duration::ZERO).await;
    let first = &running[0];
    let (base, screen) = (first.base_url.clone(), first.screen_url.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(claim_load(base.clone(), screen.clone(), 16, stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rest = load.await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(claim_load(base, screen, 16, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let doc = ConfigDocument {
        layer: Layer::Device,
        target: Name::new("bench-000").unwrap(),
        ..fleet_doc(
            1,
            json!({ "catalogue": { "url": format!("{}/c.json", files.base), "sha256": sha, "bytes": body.len() } }),
        )
    };
    let t0 = Instant::now();
    op.publish(
        "caidan/v1/demo/d/bench-000/config",
        QoS::AtLeastOnce,
        true,
        Envelope::sign(&doc, &key).to_json(),
    )
    .await?;
    let applied = common::wait_for(Duration::from_secs(120), || {
        acks.lock()
            .unwrap()
            .iter()
            .any(|(_, a)| a.layer == Some(Layer::Device) && a.status == ConfigStatus::Applied)
    })
    .await;
    let apply_ms = t0.elapsed().as_secs_f64() * 1000.0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = load.await?;
    assert!(
        applied,
        "the catalogue was not applied: {:?}",
        acks.lock().unwrap().last()
    );
    println!(
        "10,000-offer catalogue by reference: applied {apply_ms:.0} ms after the push ({} KiB fetched)",
        body.len() / 1024
    );
    let (p_rest, p_during) = (
        common::percentile(&rest, 0.99),
        common::percentile(&during, 0.99),
    );
    println!(
        "claims at rest: {} claims, p50 {:.2} ms, p99 {p_rest:.2} ms",
        rest.len(),
        common::percentile(&rest, 0.5)
    );
    println!(
        "claims while applying: {} claims, p50 {:.2} ms, p99 {p_during:.2} ms",
        during.len(),
        common::percentile(&during, 0.5)
    );
    figure(
        "claim p99 while applying / at rest",
        p_during / p_rest,
        "ratio",
    );
    for r in running {
        let _ = r.shutdown().await;
    }
    Ok(())
}

fn hex_sha256(b: &[u8]) -> String {
    use std::fmt::Write;
    let d = <sha2::Sha256 as sha2::Digest>::digest(b);
    d.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn main() -> Result<()> {
    common::runtime().block_on(run())
}

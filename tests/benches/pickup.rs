//! Pickup throughput of the real agent binary (release), in one run: orders reserved per
//! second arriving over MQTT (through Mosquitto, QoS 1), pickups per second over HTTP
//! (staff API, 64 at a time), and the claim path measured the same way beside them; then
//! the agent's idle RSS with 10,000 offers and 5,000 SKUs.
//!
//! `cargo bench -p caidan-e2e --bench pickup` (ORDERS=20000). The agent runs the demo
//! config with the per-client limits lifted (all load comes from one address).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use caidan_testkit::agent::{AgentOptions, AgentProc, LOAD_LIMITS};
use common::{Result, env_usize, figure, rate, scratch, start_broker_with};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

const TOPIC: &str = "caidan/v1/demo/d/demo-cinema-01/orders";
const PARALLEL: usize = 64;
const SKUS: usize = 5_000;
const OFFERS: usize = 10_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// 10,000 offers (one content egg, the rest coupons) and 5,000 SKUs with stock.
fn catalogue(units_per_sku: u32) -> String {
    let mut offers = vec![json!({ "id": "story", "brand": "lumi", "kind": "content",
        "title": { "zh": "故事", "en": "Story" } })];
    offers.extend((1..OFFERS).map(|i| {
        json!({ "id": format!("offer-{i:05}"), "brand": format!("brand-{}", i % 50), "kind": "coupon",
            "title": { "zh": format!("优惠券 {i}"), "en": format!("Coupon number {i}") },
            "description": { "zh": "在柜台出示券码", "en": "Show the code at the counter" },
            "quota": { "per_device_per_day": 100000, "per_shopper": 1 }, "weight": 1 + i % 7 })
    }));
    let stock: serde_json::Map<String, Value> = (0..SKUS)
        .map(|i| (format!("sku-{i:05}"), json!(units_per_sku)))
        .collect();
    json!({ "version": 1, "offers": offers, "stock": stock }).to_string()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn latency_line(what: &str, n: usize, elapsed: Duration, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let r = rate(n as u64, elapsed);
    println!(
        "{what}: {r:.0}/s, p50 {:.2} ms, p99 {:.2} ms ({n} in {:.2} s)",
        common::percentile(&ms, 0.50),
        common::percentile(&ms, 0.99),
        elapsed.as_secs_f64()
    );
    r
}

/// Order events in the agent's outbox: (order id, event time in ms).
fn order_events(data: &std::path::Path) -> Vec<(String, i64)> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        data.join("agent.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return Vec::new();
    };
    let mut stmt = conn
        .prepare("SELECT json FROM outbox WHERE type = 'com.caidan.order'")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .filter_map(|j| {
            let v: Value = serde_json::from_str(&j.ok()?).ok()?;
            let t = jiff::Timestamp::from_str_opt(v["time"].as_str()?)?;
            Some((v["data"]["order"].as_str()?.to_owned(), t))
        })
        .collect()
}

trait FromStrOpt {
    fn from_str_opt(s: &str) -> Option<i64>;
}

impl FromStrOpt for jiff::Timestamp {
    fn from_str_opt(s: &str) -> Option<i64> {
        s.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond())
    }
}

/// The order system: publishes `n` one-line orders at QoS 1 as fast as the broker takes
/// them. Order ids carry the publish time, so the agent's event time gives each latency.
async fn publish_orders(port: u16, n: usize) -> Result<Vec<String>> {
    let mut opts = MqttOptions::new("bench-order-system", "127.0.0.1", port);
    opts.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let acked = Arc::new(AtomicUsize::new(0));
    let counter = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    println!("# order system: {e}; reconnecting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let expires = jiff::Timestamp::from_millisecond(now_ms() + 6 * 3_600_000)?.to_string();
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let code = format!("{:08}", 10_000_000 + i);
        let payload = json!({ "type": "order", "order_id": format!("b{i}-{}", now_ms()),
            "lines": [{ "sku": format!("sku-{:05}", i % SKUS), "qty": 1 }],
            "pickup_code": code, "expires_at": expires, "brand": "lumi" });
        client
            .publish(TOPIC, QoS::AtLeastOnce, false, payload.to_string())
            .await?;
        codes.push(code);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    poller.abort();
    Ok(codes)
}

/// `PARALLEL` workers sending one request each from `jobs` until none is left; returns
/// the latencies in ms of the answers with status `ok` and how long it all took.
async fn drive<F, Fut>(jobs: Vec<String>, ok: u16, send: F) -> (Vec<f64>, Duration, usize)
where
    F: Fn(reqwest::Client, String) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Option<u16>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(jobs));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..PARALLEL {
        let (queue, send) = (queue.clone(), send.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut lat, mut other) = (Vec::new(), 0usize);
            loop {
                let Some(job) = queue.lock().unwrap().pop() else {
                    break;
                };
                let t = Instant::now();
                match send(http.clone(), job).await {
                    Some(s) if s == ok => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => other += 1,
                }
            }
            (lat, other)
        }));
    }
    let (mut all, mut other) = (Vec::new(), 0);
    for t in tasks {
        let (lat, o) = t.await.expect("worker");
        all.extend(lat);
        other += o;
    }
    (all, started.elapsed(), other)
}

async fn run() -> Result<()> {
    let n = env_usize("ORDERS", 20_000);
    let dir = scratch("pickup")?;
    // An order system publishes faster than one device reserves: the broker must queue
    // them all for the device's session (Mosquitto's default keeps 1,000), as the shipped
    // config does (10,000).
    let broker = start_broker_with(dir.path(), &format!("max_queued_messages {}", n + 1000));
    let data = dir.path().join("agent");
    let mut opts = AgentOptions {
        // No data bank here: the order events stay in the outbox, where their times are read;
        // a long ack timeout keeps the uplink from resending them meanwhile.
        config_extra: Some(format!(
            "[sync]\nlinger_ms = 200\nack_timeout_ms = 3600000\n\n{LOAD_LIMITS}"
        )),
        catalogue: Some(catalogue(1_000)),
        ..AgentOptions::default()
    };
    // Idle RSS as the claim path's figure was taken (no broker): first start imports the
    // catalogue, a restart loads it from the store.
    let agent = AgentProc::start_with(&data, opts.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first = rss_kib(agent.proc.child.id());
    drop(agent);
    let agent = AgentProc::start_with(&data, opts.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart = rss_kib(agent.proc.child.id());
    drop(agent);
    println!(
        "agent RSS idle, {OFFERS} offers and {SKUS} SKUs: first start {first} KiB, restart {restart} KiB; first start / 14.1 MB = {:.2}",
        first as f64 / (14.1 * 1000.0)
    );
    opts.mqtt = Some(broker.url());
    let agent = AgentProc::start_with(&data, opts);
    // Wait for the orders subscription: a probe order comes back as an event.
    let port = broker.port;
    let probe_deadline = Instant::now() + Duration::from_secs(30);
    while order_events(&data).is_empty() {
        assert!(
            Instant::now() < probe_deadline,
            "the agent never took an order"
        );
        publish_orders(port, 1).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = order_events(&data).len();

    // Orders over MQTT.
    let started_ms = now_ms();
    let codes = publish_orders(port, n).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while order_events(&data).len() < before + n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = order_events(&data);
    // (latency, event time) of this run's orders.
    let mine: Vec<(i64, i64)> = events
        .into_iter()
        .filter(|(id, _)| id.starts_with('b'))
        .filter_map(|(id, t)| {
            let sent: i64 = id.rsplit('-').next()?.parse().ok()?;
            (sent >= started_ms).then_some((t - sent, t))
        })
        .collect();
    let last = mine.iter().map(|(_, t)| *t).max().unwrap_or(started_ms);
    let elapsed = Duration::from_millis((last - started_ms).max(1) as u64);
    let lat: Vec<f64> = mine.iter().map(|(l, _)| *l as f64).collect();
    let orders_rate = latency_line("orders reserved over MQTT", mine.len(), elapsed, lat);

    // Pickups over HTTP, the codes in random order.
    let base = agent.base.clone();
    let mut jobs = codes;
    jobs.reverse();
    let b = base.clone();
    let (lat, took, other) = drive(jobs, 200, move |http, code| {
        let b = b.clone();
        async move {
            http.post(format!("{b}/api/v1/pickups"))
                .bearer_auth("demo-staff-token")
                .json(&json!({ "code": code }))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    })
    .await;
    let picked = lat.len();
    let pickups_rate = latency_line(
        "pickups over HTTP (staff API, 64 at a time)",
        picked,
        took,
        lat,
    );
    if other > 0 {
        println!("# {other} pickups not answered 200");
    }

    // The claim path, the same way, in the same run.
    let qr: Value = reqwest::get(format!("{}/api/v1/qr", agent.screen))
        .await?
        .json()
        .await?;
    let token = qr["token"].as_str().unwrap_or_default().to_owned();
    let shoppers: Vec<String> = (0..n).map(|i| format!("bench-shopper-{i}")).collect();
    let (lat, took, other) = drive(shoppers, 201, move |http, shopper| {
        let (b, token) = (base.clone(), token.clone());
        async move {
            http.post(format!("{b}/api/v1/eggs"))
                .json(&json!({ "token": token, "shopper": shopper }))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    })
    .await;
    let claims_rate = latency_line(
        "claims over HTTP (64 at a time), same agent",
        lat.len(),
        took,
        lat,
    );
    if other > 0 {
        println!(
            "# {other} claims not answered 201 (a stale token is retried by phones, not here)"
        );
    }
    figure("orders / claims", orders_rate / claims_rate, "ratio");
    figure("pickups / claims", pickups_rate / claims_rate, "ratio");
    drop(agent);
    Ok(())
}

fn main() -> Result<()> {
    common::runtime().block_on(run())
}

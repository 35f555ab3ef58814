//! A device whose wall clock steps: back a day, forward a year, or behind its own store at a
//! restart. The agent goes by its guarded time, so quotas, dayparts, QR windows, hold
//! expiries and the outbox order keep their sense; the step shows in `/metrics`, and every
//! event carries both clocks.

mod common;

use caidan_agent::pickup::PickupHasher;
use caidan_agent::store::OrderOutcome;
use caidan_sync::clock::Clock as _;
use caidan_sync::contract::{Ident, OrderLine, PickupCode, PickupOrder};
use common::{DAY_MS, MORNING_MS, TestAgent, unlimited};
use serde_json::{Value, json};

const YEAR_MS: i64 = 365 * DAY_MS;

/// A morning coupon (09:00-12:00 in the device's zone), two a day, and a content fallback;
/// three units of stock for orders.
fn catalogue() -> Value {
    json!({
        "version": 1,
        "stock": { "cola": 3 },
        "offers": [
            { "id": "morning", "brand": "lumi", "kind": "coupon", "title": { "en": "Morning" },
              "quota": { "per_device_per_day": 2 }, "dayparts": [{ "start": "09:00", "end": "12:00" }] },
            { "id": "story", "brand": "lumi", "kind": "content", "title": { "en": "Story" } }
        ]
    })
}

async fn start() -> TestAgent {
    TestAgent::start_with(
        catalogue(),
        unlimited(caidan_agent::config::AgentConfig::demo()),
    )
    .await
}

/// The offer a shopper gets with the QR the screen shows now.
async fn offer_for(agent: &TestAgent, shopper: &str) -> String {
    let qr = agent.qr().await;
    let (status, body) = agent
        .crack_with(qr["token"].as_str().unwrap(), shopper)
        .await;
    assert!(status == 201 || status == 200, "{status} {body}");
    body["offer"]["id"].as_str().unwrap().to_owned()
}

/// A metric's value from `/metrics`.
async fn metric(agent: &TestAgent, name: &str) -> i64 {
    let text = agent.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// (seq, time, boot, uptime_ms) of every outbox event but config answers.
fn outbox(agent: &TestAgent) -> Vec<(i64, i64, String, u64)> {
    agent
        .outbox_events()
        .into_iter()
        .filter_map(|v| {
            let time = v["time"]
                .as_str()?
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond();
            Some((
                v["seq"].as_i64()?,
                time,
                v["boot"]
                    .as_str()
                    .expect("every event names its run")
                    .to_owned(),
                v["data"]["uptime_ms"].as_u64()?,
            ))
        })
        .collect()
}

/// Orders the outbox says expired.
fn expired_orders(agent: &TestAgent) -> usize {
    agent
        .outbox_events()
        .iter()
        .filter(|v| v["type"] == "com.caidan.order" && v["data"]["state"] == "expired")
        .count()
}

/// Times never go backwards along the outbox, every event is of one run, uptimes grow.
fn assert_outbox_in_order(agent: &TestAgent) {
    let events = outbox(agent);
    assert!(!events.is_empty());
    for w in events.windows(2) {
        assert!(w[0].1 <= w[1].1, "time went backwards: {w:?}");
        assert!(w[0].3 <= w[1].3, "uptime went backwards: {w:?}");
        assert_eq!(w[0].2, w[1].2);
    }
}

#[tokio::test]
async fn a_wall_clock_set_back_a_day_hands_out_nothing_twice() {
    let agent = start().await;
    assert_eq!(offer_for(&agent, "alice").await, "morning");
    assert_eq!(offer_for(&agent, "bob").await, "morning");
    assert_eq!(offer_for(&agent, "carol").await, "story", "two a day");
    let before = agent.now_ms();
    let yesterdays_token = agent.running.tokens.issue(before - DAY_MS);

    agent.clock.advance_ms(1_000);
    agent.clock.set_wall_ms(agent.clock.now_ms() - DAY_MS);
    assert_eq!(agent.now_ms(), before + 1_000, "the agent's time goes on");
    // Yesterday's quota would be fresh; today's is spent and stays spent.
    assert_eq!(offer_for(&agent, "dave").await, "story");
    // Yesterday's QR is not valid again because the wall clock reads yesterday.
    let (status, _) = agent.crack_with(&yesterdays_token, "erin").await;
    assert_eq!(status, 410);
    // Rescans still find today's claim.
    assert_eq!(offer_for(&agent, "alice").await, "morning");

    assert_eq!(metric(&agent, "caidan_clock_jumps").await, 1);
    let offset = metric(&agent, "caidan_clock_offset_ms").await;
    assert!((offset + DAY_MS).abs() < 2_000, "offset {offset}");
    assert_outbox_in_order(&agent);
    // Set right again: followed again, with no step left to report.
    agent.clock.set_wall_ms(before + 2_000);
    agent.clock.advance_ms(1_000);
    assert_eq!(agent.now_ms(), before + 3_000);
    assert_eq!(metric(&agent, "caidan_clock_offset_ms").await, 0);
}

#[tokio::test]
async fn a_wall_clock_a_year_ahead_expires_no_hold_and_opens_no_new_day() {
    let agent = start().await;
    assert_eq!(offer_for(&agent, "alice").await, "morning");
    assert_eq!(offer_for(&agent, "bob").await, "morning");
    let now = agent.now_ms();
    let order = PickupOrder {
        order_id: Ident::new("o-1").unwrap(),
        lines: vec![OrderLine {
            sku: Ident::new("cola").unwrap(),
            qty: 1,
        }],
        pickup_code: PickupCode::typed("123456").unwrap(),
        expires_at: jiff::Timestamp::from_millisecond(now + 2 * 3_600_000).unwrap(),
        shopper: None,
        brand: Some(Ident::new("lumi").unwrap()),
    };
    let code =
        PickupHasher::new(agent.config.secrets.fleet_secret.clone()).hash(&order.pickup_code);
    assert!(matches!(
        agent.running.writer.order(order, code).await.unwrap(),
        OrderOutcome::Reserved
    ));

    agent.clock.set_wall_ms(now + YEAR_MS);
    agent.clock.advance_ms(60_000);
    agent.running.writer.expire().await.unwrap();
    assert_eq!(expired_orders(&agent), 0, "hold kept");
    assert_eq!(
        offer_for(&agent, "carol").await,
        "story",
        "no new day's quota"
    );
    // The hold ends when its two hours have really passed (the agent's own sweep may get
    // there first; either way, once).
    agent.clock.advance_ms(2 * 3_600_000);
    agent.running.writer.expire().await.unwrap();
    assert_eq!(expired_orders(&agent), 1);
    assert_eq!(metric(&agent, "caidan_clock_jumps").await, 1);
    let offset = metric(&agent, "caidan_clock_offset_ms").await;
    assert!((offset - YEAR_MS).abs() < 2_000, "offset {offset}");
    assert_outbox_in_order(&agent);
}

#[tokio::test]
async fn a_restart_with_the_clock_behind_the_store_starts_from_the_store() {
    let first = start().await;
    assert_eq!(offer_for(&first, "alice").await, "morning");
    assert_eq!(offer_for(&first, "bob").await, "morning");
    let config = first.config.clone();
    let dir = first.stop().await;

    // A board without a real-time clock: it boots reading a day earlier.
    let agent = TestAgent::start_dated(catalogue(), config, dir, MORNING_MS - DAY_MS).await;
    assert!(
        agent.now_ms() >= MORNING_MS,
        "not before the store's last time"
    );
    assert_eq!(metric(&agent, "caidan_clock_lower_bound").await, 1);
    assert_eq!(
        offer_for(&agent, "carol").await,
        "story",
        "today's quota spent"
    );
    // NTP sets it an hour later than the store's time: taken at once.
    agent.clock.set_wall_ms(MORNING_MS + 3_600_000);
    assert_eq!(agent.now_ms(), MORNING_MS + 3_600_000);
    assert_eq!(metric(&agent, "caidan_clock_lower_bound").await, 0);
    assert_eq!(metric(&agent, "caidan_clock_offset_ms").await, 0);
    assert_eq!(offer_for(&agent, "dave").await, "story");
}

/// The retained state the agent publishes, as a broker subscriber sees it.
async fn states(url: &str) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let opts = rumqttc::MqttOptions::new("state-watcher", "127.0.0.1", port);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 64);
    client
        .subscribe("caidan/v1/demo/d/+/state", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        let _ = tx.send(v);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    });
    rx
}

/// The next state message that satisfies `pred`, within 30 s.
async fn next_state(
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    pred: fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .expect("a state message in time")
            .unwrap();
        if pred(&v) {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_message_tells_the_fleet_of_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let broker = caidan_testkit::mosquitto::Mosquitto::plain(dir.path());
    let mut seen = states(&broker.url()).await;
    let agent = TestAgent::start_in(
        catalogue(),
        unlimited(caidan_agent::config::AgentConfig::demo()),
        tempfile::tempdir().unwrap(),
        Some(&broker.url()),
    )
    .await;
    let first = next_state(&mut seen, |v| v["online"] == true && v["clock"].is_object()).await;
    assert_eq!(first["clock"]["jumps"], 0);
    let boot = first["clock"]["boot"].clone();

    agent
        .wall_shift
        .store(-DAY_MS, std::sync::atomic::Ordering::SeqCst);
    // A shopper's claim makes the agent read its clock.
    let (status, _) = agent.crack("alice").await;
    assert_eq!(status, 201);
    let stepped = next_state(&mut seen, |v| v["clock"]["jumps"] == 1).await;
    let offset = stepped["clock"]["offset_ms"].as_i64().unwrap();
    assert!((offset + DAY_MS).abs() < 5_000, "{stepped}");
    assert_eq!(stepped["clock"]["boot"], boot, "one run");
    assert_eq!(stepped["clock"]["lower_bound"], false);
    drop(agent);
}

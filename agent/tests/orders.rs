//! Orders arriving over a real broker: many at once for few units, the same order twice,
//! an order published while the agent is down, and junk on the orders topic.

mod common;

use std::time::Duration;

use caidan_agent::config::{AgentConfig, DEMO_CONFIG};
use caidan_testkit::mosquitto::Mosquitto;
use caidan_testkit::wait::eventually;
use common::{TestAgent, unlimited};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

const TOPIC: &str = "caidan/v1/demo/d/demo-cinema-01/orders";

fn kiosk() -> AgentConfig {
    let text = DEMO_CONFIG
        .replace("scene = \"cinema\"", "scene = \"transit\"")
        .replace("profile = \"cinema-screen\"", "profile = \"transit-kiosk\"");
    unlimited(AgentConfig::from_toml(&text, "test.toml").unwrap())
}

fn catalogue(units: u32) -> Value {
    json!({
        "version": 1,
        "stock": { "cola": units },
        "offers": [ { "id": "story", "brand": "lumi", "kind": "content", "title": { "en": "Story" } } ]
    })
}

/// The order system: a plain MQTT client publishing at QoS 1.
async fn order_system(url: &str) -> AsyncClient {
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let mut opts = MqttOptions::new(format!("orders-{}", rand_id()), "127.0.0.1", port);
    opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn order(id: &str, qty: u32, code: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let expires = jiff::Timestamp::from_millisecond(now + 3_600_000).unwrap();
    serde_json::to_vec(&json!({
        "type": "order", "order_id": id, "lines": [{ "sku": "cola", "qty": qty }],
        "pickup_code": code, "expires_at": expires.to_string(), "brand": "lumi"
    }))
    .unwrap()
}

/// Order events in the outbox: (order, state, reason).
fn order_events(agent: &TestAgent) -> Vec<(String, String, Option<String>)> {
    agent
        .outbox_events()
        .into_iter()
        .filter_map(|v| {
            (v["type"] == "com.caidan.order").then(|| {
                (
                    v["data"]["order"].as_str().unwrap().to_owned(),
                    v["data"]["state"].as_str().unwrap().to_owned(),
                    v["data"]["reason"].as_str().map(str::to_owned),
                )
            })
        })
        .collect()
}

/// Waits until the agent has subscribed to its orders topic (a probe order comes back).
async fn wait_subscribed(agent: &TestAgent, orders: &AsyncClient) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("probe-{n}");
        orders
            .publish(
                TOPIC,
                QoS::AtLeastOnce,
                false,
                order(&id, 1, &format!("9{n:07}")),
            )
            .await
            .unwrap();
        let seen = eventually(Duration::from_secs(1), || {
            order_events(agent).iter().any(|(o, _, _)| *o == id)
        })
        .await;
        if seen {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent never took an order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_orders_for_ten_units_reserve_exactly_ten() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    // 10 units for the orders, 1 for the probe that proves the subscription.
    let agent = TestAgent::start_in(
        catalogue(11),
        kiosk(),
        tempfile::tempdir().unwrap(),
        Some(&broker.url()),
    )
    .await;
    let orders = order_system(&broker.url()).await;
    wait_subscribed(&agent, &orders).await;
    for i in 0..100 {
        orders
            .publish(
                TOPIC,
                QoS::AtLeastOnce,
                false,
                order(&format!("o-{i}"), 1, &format!("{:08}", 10_000 + i)),
            )
            .await
            .unwrap();
    }
    let all_in = eventually(Duration::from_secs(30), || {
        order_events(&agent)
            .iter()
            .filter(|(o, _, _)| o.starts_with("o-"))
            .count()
            == 100
    })
    .await;
    let events: Vec<_> = order_events(&agent)
        .into_iter()
        .filter(|(o, _, _)| o.starts_with("o-"))
        .collect();
    assert!(all_in, "{} of 100 orders handled", events.len());
    let reserved = events.iter().filter(|(_, s, _)| s == "reserved").count();
    let out = events
        .iter()
        .filter(|(_, s, r)| s == "rejected" && r.as_deref() == Some("out_of_stock"))
        .count();
    assert_eq!((reserved, out), (10, 90));
    let stock: Value = agent
        .http
        .get(agent.url("/api/v1/inventory/cola"))
        .bearer_auth("demo-staff-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stock["here"],
        json!({ "available": 0, "on_hand": 11, "reserved": 11 })
    );
}

/// A burst far larger than the uplink's queues: every delivery must be acknowledged to the
/// broker (a lost PUBACK keeps the message in the broker's in-flight window, and a full
/// window stops delivery), and every order handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_five_thousand_orders_is_all_handled() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(
        dir.path(),
        "allow_anonymous true\nmax_queued_messages 10000",
    );
    let agent = TestAgent::start_in(
        catalogue(N as u32 + 1),
        kiosk(),
        tempfile::tempdir().unwrap(),
        Some(&broker.url()),
    )
    .await;
    let orders = order_system(&broker.url()).await;
    wait_subscribed(&agent, &orders).await;
    for i in 0..N {
        orders
            .publish(
                TOPIC,
                QoS::AtLeastOnce,
                false,
                order(&format!("burst-{i}"), 1, &format!("{:08}", 20_000_000 + i)),
            )
            .await
            .unwrap();
    }
    let burst = |agent: &TestAgent| {
        order_events(agent)
            .into_iter()
            .filter(|(o, s, _)| o.starts_with("burst-") && s == "reserved")
            .count()
    };
    let all_in = eventually(Duration::from_secs(60), || burst(&agent) == N).await;
    assert!(all_in, "{} of {N} orders reserved", burst(&agent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_delivered_twice_is_reserved_once_and_junk_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let agent = TestAgent::start_in(
        catalogue(5),
        kiosk(),
        tempfile::tempdir().unwrap(),
        Some(&broker.url()),
    )
    .await;
    let orders = order_system(&broker.url()).await;
    wait_subscribed(&agent, &orders).await;
    for junk in [
        b"\xff\xfe not json".to_vec(),
        vec![b'{'; 100 * 1024],
        br#"{"type":"order","order_id":"bad-1","lines":[{"sku":"cola","qty":0}],"pickup_code":"12345678","expires_at":"2030-01-01T00:00:00Z"}"#.to_vec(),
    ] {
        orders.publish(TOPIC, QoS::AtLeastOnce, false, junk).await.unwrap();
    }
    let twice = order("o-twice", 2, "55554444");
    orders
        .publish(TOPIC, QoS::AtLeastOnce, false, twice.clone())
        .await
        .unwrap();
    orders
        .publish(TOPIC, QoS::AtLeastOnce, false, twice)
        .await
        .unwrap();
    let cancel = br#"{"type":"cancel","order_id":"o-twice"}"#.to_vec();
    orders
        .publish(TOPIC, QoS::AtLeastOnce, false, cancel)
        .await
        .unwrap();
    let done = eventually(Duration::from_secs(20), || {
        order_events(&agent)
            .iter()
            .any(|(o, s, _)| o == "o-twice" && s == "cancelled")
    })
    .await;
    let events: Vec<_> = order_events(&agent)
        .into_iter()
        .filter(|(o, _, _)| !o.starts_with("probe-"))
        .map(|(o, s, r)| format!("{o}:{s}:{}", r.unwrap_or_default()))
        .collect();
    assert!(done, "{events:?}");
    assert_eq!(
        events,
        [
            "bad-1:rejected:invalid",
            "o-twice:reserved:",
            "o-twice:cancelled:"
        ],
        "junk dropped, the bad order rejected by id, the repeat ignored"
    );
    let status = agent.running.uplink.as_ref().unwrap().status();
    assert_eq!(
        status.connects, 1,
        "junk never cost the connection: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_published_while_the_agent_is_down_is_reserved_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let agent = TestAgent::start_in(
        catalogue(5),
        kiosk(),
        tempfile::tempdir().unwrap(),
        Some(&broker.url()),
    )
    .await;
    let orders = order_system(&broker.url()).await;
    wait_subscribed(&agent, &orders).await;
    let data = agent.stop().await;
    drop(orders);
    // The broker holds it for the agent's persistent session.
    caidan_testkit::mqtt::publish_confirmed(
        broker.port,
        TOPIC,
        order("o-offline", 1, "31415926"),
        false,
    )
    .await;
    let agent = TestAgent::start_in(catalogue(5), kiosk(), data, Some(&broker.url())).await;
    let reserved = eventually(Duration::from_secs(20), || {
        order_events(&agent)
            .iter()
            .any(|(o, s, _)| o == "o-offline" && s == "reserved")
    })
    .await;
    assert!(reserved, "{:?}", order_events(&agent));
}

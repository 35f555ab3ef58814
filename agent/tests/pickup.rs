//! Pickup at the touchpoint, from outside: orders reserved against local stock, staff hand
//! over with the pickup code exactly once, wrong codes lock out, the vending keypad
//! dispenses (and a jam leaves the order retryable), holds expire once, product eggs hold a
//! unit, and every answer names the brand's nearest store.

mod common;

use std::time::Duration;

use caidan_agent::config::{AgentConfig, DEMO_CONFIG};
use caidan_agent::pickup::PickupHasher;
use caidan_agent::store::OrderOutcome;
use caidan_sync::clock::Clock as _;
use caidan_sync::contract::{Ident, OrderLine, OrderRejection, PickupCode, PickupOrder};
use common::{TestAgent, unlimited};
use serde_json::{Value, json};

const STAFF: &str = "demo-staff-token";

/// The demo config as another kind of touchpoint, standing in People's Square, Shanghai,
/// with two stores of the brand nearby and `extra` TOML appended.
fn config(scene: &str, profile: &str, extra: &str) -> AgentConfig {
    let text = DEMO_CONFIG
        .replace("scene = \"cinema\"", &format!("scene = \"{scene}\""))
        .replace(
            "profile = \"cinema-screen\"",
            &format!("profile = \"{profile}\"\nlocation = {{ lat = 31.2304, lon = 121.4737 }}"),
        );
    let stores = r#"
[[stores]]
brand = "lumi"
name = { zh = "人民广场店", en = "People's Square" }
address = { zh = "南京西路 1 号", en = "1 West Nanjing Rd" }
lat = 31.2350
lon = 121.4800
hours = { mon = "09:00-21:00", tue = "09:00-21:00", wed = "09:00-21:00", thu = "09:00-21:00", fri = "09:00-22:00", sat = "10:00-22:00", sun = "10:00-20:00" }

[[stores]]
brand = "lumi"
name = { zh = "外滩店", en = "The Bund" }
lat = 31.2400
lon = 121.4900
"#;
    let cfg = AgentConfig::from_toml(&format!("{text}\n{stores}\n{extra}"), "test.toml")
        .expect("test config is valid");
    unlimited(cfg)
}

fn kiosk() -> AgentConfig {
    config("transit", "transit-kiosk", "")
}

fn vending(extra: &str) -> AgentConfig {
    config("vending", "vending-machine", extra)
}

fn catalogue(stock: Value) -> Value {
    json!({
        "version": 1,
        "stock": stock,
        "offers": [
            { "id": "story", "brand": "lumi", "kind": "content", "title": { "zh": "故事", "en": "Story" } }
        ]
    })
}

fn order(
    id: &str,
    lines: &[(&str, u32)],
    code: &str,
    expires_in: Duration,
    now_ms: i64,
) -> PickupOrder {
    PickupOrder {
        order_id: Ident::new(id).unwrap(),
        lines: lines
            .iter()
            .map(|(sku, qty)| OrderLine {
                sku: Ident::new(*sku).unwrap(),
                qty: *qty,
            })
            .collect(),
        pickup_code: PickupCode::typed(code).unwrap(),
        expires_at: jiff::Timestamp::from_millisecond(now_ms + expires_in.as_millis() as i64)
            .unwrap(),
        shopper: None,
        brand: Some(Ident::new("lumi").unwrap()),
    }
}

async fn place(agent: &TestAgent, o: PickupOrder) -> OrderOutcome {
    let hasher = PickupHasher::new(agent.config.secrets.fleet_secret.clone());
    let code = hasher.hash(&o.pickup_code);
    agent.running.writer.order(o, code).await.unwrap()
}

async fn post(agent: &TestAgent, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = agent.http.post(agent.url(path)).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn stock(agent: &TestAgent, sku: &str) -> Value {
    let r = agent
        .http
        .get(agent.url(&format!("/api/v1/inventory/{sku}")))
        .bearer_auth(STAFF)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["here"].clone()
}

/// Order events in the outbox, as (order, state, reason).
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

#[tokio::test]
async fn orders_reserve_all_lines_or_none_and_say_why_not() {
    let agent = TestAgent::start_with(catalogue(json!({ "cola": 3, "chips": 1 })), kiosk()).await;
    let now = agent.clock.now_ms();
    let hour = Duration::from_secs(3600);
    let whole = order("o-1", &[("cola", 2), ("chips", 1)], "11112222", hour, now);
    assert_eq!(place(&agent, whole.clone()).await, OrderOutcome::Reserved);
    assert_eq!(
        place(&agent, whole).await,
        OrderOutcome::Duplicate,
        "delivered twice"
    );
    let too_much = order("o-2", &[("cola", 1), ("chips", 1)], "33334444", hour, now);
    assert_eq!(
        place(&agent, too_much).await,
        OrderOutcome::Rejected(OrderRejection::OutOfStock)
    );
    assert_eq!(
        stock(&agent, "cola").await["available"],
        1,
        "all or nothing"
    );
    let unknown = order("o-3", &[("tea", 1)], "55556666", hour, now);
    assert_eq!(
        place(&agent, unknown).await,
        OrderOutcome::Rejected(OrderRejection::UnknownSku)
    );
    let late = order("o-4", &[("cola", 1)], "77778888", Duration::ZERO, now);
    assert_eq!(
        place(&agent, late).await,
        OrderOutcome::Rejected(OrderRejection::Expired)
    );
    let same_code = order("o-5", &[("cola", 1)], "11112222", hour, now);
    assert_eq!(
        place(&agent, same_code).await,
        OrderOutcome::Rejected(OrderRejection::Invalid),
        "a pickup code held by another open order"
    );
    let reused = order("o-1", &[("cola", 1)], "99990000", hour, now);
    assert_eq!(place(&agent, reused).await, OrderOutcome::Conflict);
    let events = order_events(&agent);
    let states: Vec<_> = events
        .iter()
        .map(|(o, s, r)| format!("{o}:{s}:{}", r.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        states,
        [
            "o-1:reserved:",
            "o-2:rejected:out_of_stock",
            "o-3:rejected:unknown_sku",
            "o-4:rejected:expired",
            "o-5:rejected:invalid"
        ]
    );
}

#[tokio::test]
async fn fifty_concurrent_pickups_of_one_code_hand_over_once() {
    let agent = TestAgent::start_with(catalogue(json!({ "cola": 5 })), kiosk()).await;
    let now = agent.clock.now_ms();
    let o = order(
        "o-1",
        &[("cola", 2)],
        "4821-9930",
        Duration::from_secs(3600),
        now,
    );
    assert_eq!(place(&agent, o).await, OrderOutcome::Reserved);
    assert_eq!(
        stock(&agent, "cola").await,
        json!({"available": 3, "on_hand": 5, "reserved": 2})
    );
    let (status, _) = post(
        &agent,
        "/api/v1/pickups",
        None,
        json!({ "code": "48219930" }),
    )
    .await;
    assert_eq!(status, 401, "staff only");
    let (http, url) = (agent.http.clone(), agent.url("/api/v1/pickups"));
    let attempts = (0..50).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(url)
                .bearer_auth(STAFF)
                .json(&json!({ "code": "4821 9930" }))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    let answers = join_all(attempts).await;
    let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == 200 || (*s == 409 && b["error"] == "already_picked_up")),
        "{answers:?}"
    );
    let (_, body) = ok[0];
    assert_eq!(body["order"]["id"], "o-1");
    assert_eq!(body["nearest_store"]["name"]["en"], "People's Square");
    assert_eq!(
        stock(&agent, "cola").await,
        json!({"available": 3, "on_hand": 3, "reserved": 0})
    );
    let picked: Vec<_> = order_events(&agent)
        .into_iter()
        .filter(|(_, s, _)| s == "picked_up")
        .collect();
    assert_eq!(picked.len(), 1);
}

/// The futures run concurrently as tasks; their outputs in order.
async fn join_all<F: std::future::Future<Output = (u16, Value)> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<(u16, Value)> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn pickup_answers_say_what_became_of_the_order() {
    let agent = TestAgent::start_with(catalogue(json!({ "cola": 5 })), kiosk()).await;
    let now = agent.clock.now_ms();
    let o = order(
        "o-1",
        &[("cola", 1)],
        "12345678",
        Duration::from_secs(600),
        now,
    );
    assert_eq!(place(&agent, o).await, OrderOutcome::Reserved);
    let (s, b) = post(
        &agent,
        "/api/v1/pickups",
        Some(STAFF),
        json!({ "code": "00000000" }),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (404, Some("unknown_code")));
    let (s, b) = post(
        &agent,
        "/api/v1/pickups",
        Some(STAFF),
        json!({ "code": "no!" }),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("code_malformed")));
    agent.clock.advance_ms((601) * 1000);
    let (s, b) = post(
        &agent,
        "/api/v1/pickups",
        Some(STAFF),
        json!({ "code": "12345678" }),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (410, Some("expired")), "{b}");
    assert_eq!(
        stock(&agent, "cola").await["reserved"],
        0,
        "released when it expired"
    );
    let o = order(
        "o-2",
        &[("cola", 1)],
        "87654321",
        Duration::from_secs(600),
        agent.clock.now_ms(),
    );
    assert_eq!(place(&agent, o).await, OrderOutcome::Reserved);
    let listed = |view: &'static str| {
        let r = agent
            .http
            .get(agent.url(&format!("/api/v1/orders{view}")))
            .bearer_auth(STAFF)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = listed("?view=open").await;
    assert_eq!(s, 200, "{b}");
    let ids: Vec<&str> = b["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(ids, ["o-2"], "the open order, not the expired one");
    let (s, b) = listed("?view=").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("bad_request")), "{b}");
    let message = b["message"].as_str().unwrap();
    assert!(
        message.contains("open") && message.contains("handovers"),
        "{message}"
    );
    let (s, _) = post(&agent, "/api/v1/orders/o-2/release", Some(STAFF), json!({})).await;
    assert_eq!(s, 200);
    let (s, b) = post(
        &agent,
        "/api/v1/pickups",
        Some(STAFF),
        json!({ "code": "87654321" }),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (410, Some("released")));
}

#[tokio::test]
async fn wrong_pickup_codes_lock_out_and_unlock() {
    let mut cfg = kiosk();
    cfg.limits.wrong_codes_per_staff_token = 5;
    cfg.limits.wrong_codes_per_device = 1000;
    cfg.limits.lockout_minutes = 10;
    let agent = TestAgent::start_with(catalogue(json!({ "cola": 5 })), cfg).await;
    let now = agent.clock.now_ms();
    let o = order(
        "o-1",
        &[("cola", 1)],
        "12345678",
        Duration::from_secs(7200),
        now,
    );
    assert_eq!(place(&agent, o).await, OrderOutcome::Reserved);
    for i in 0..5 {
        let (s, _) = post(
            &agent,
            "/api/v1/pickups",
            Some(STAFF),
            json!({ "code": format!("9999000{i}") }),
        )
        .await;
        assert_eq!(s, 404);
    }
    // Locked: even the right code is refused, and the answer says until when.
    let r = agent
        .http
        .post(agent.url("/api/v1/pickups"))
        .bearer_auth(STAFF)
        .json(&json!({ "code": "12345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "wrong_codes_lockout");
    assert_eq!(
        stock(&agent, "cola").await["reserved"],
        1,
        "nothing handed over"
    );
    agent.clock.advance_ms((601) * 1000);
    let (s, _) = post(
        &agent,
        "/api/v1/pickups",
        Some(STAFF),
        json!({ "code": "12345678" }),
    )
    .await;
    assert_eq!(s, 200, "unlocked after the lockout");
}

#[tokio::test]
async fn a_jam_then_a_retry_dispenses_once() {
    let agent = TestAgent::start_with(
        catalogue(json!({ "cola": 4 })),
        vending("[dispenser]\nslots = [\"cola\"]\njam_attempts = [1]\n"),
    )
    .await;
    let now = agent.clock.now_ms();
    let o = order(
        "o-1",
        &[("cola", 2)],
        "24681357",
        Duration::from_secs(3600),
        now,
    );
    assert_eq!(place(&agent, o).await, OrderOutcome::Reserved);
    let (s, b) = post(
        &agent,
        "/api/v1/vending/pickups",
        None,
        json!({ "code": "24681357" }),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (503, Some("dispense_failed")),
        "{b}"
    );
    assert_eq!(
        stock(&agent, "cola").await,
        json!({"available": 2, "on_hand": 4, "reserved": 2}),
        "a jam hands nothing over and keeps the order"
    );
    let (s, b) = post(
        &agent,
        "/api/v1/vending/pickups",
        None,
        json!({ "code": "24681357" }),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["order"]["handed_by"], "dispenser");
    let (s, b) = post(
        &agent,
        "/api/v1/vending/pickups",
        None,
        json!({ "code": "24681357" }),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (409, Some("already_picked_up")));
    assert_eq!(
        stock(&agent, "cola").await,
        json!({"available": 2, "on_hand": 2, "reserved": 0})
    );
    let states: Vec<_> = order_events(&agent)
        .into_iter()
        .map(|(_, s, _)| s)
        .collect();
    assert_eq!(states, ["reserved", "dispense_failed", "picked_up"]);
    // An order for a SKU no slot holds cannot be dispensed here.
    let gum = order(
        "o-2",
        &[("gum", 1)],
        "11223344",
        Duration::from_secs(3600),
        now,
    );
    let _ = agent
        .http
        .post(agent.url("/api/v1/inventory/gum"))
        .bearer_auth(STAFF)
        .json(&json!({ "delta": 5, "reason": "restock" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        place(&agent, gum).await,
        OrderOutcome::Rejected(OrderRejection::CannotDispense)
    );
}

#[tokio::test]
async fn wrong_codes_at_the_keypad_lock_that_address_out() {
    let mut cfg = vending("");
    cfg.limits.wrong_codes_per_staff_token = 3;
    let agent = TestAgent::start_with(catalogue(json!({ "cola": 4 })), cfg).await;
    for _ in 0..3 {
        let (s, _) = post(
            &agent,
            "/api/v1/vending/pickups",
            None,
            json!({ "code": "00001111" }),
        )
        .await;
        assert_eq!(s, 404);
    }
    let (s, b) = post(
        &agent,
        "/api/v1/vending/pickups",
        None,
        json!({ "code": "00001111" }),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (429, Some("wrong_codes_lockout")));
    // Staff at the counter are not locked out by strangers at the keypad.
    let (s, _) = post(
        &agent,
        "/api/v1/pickups",
        Some(STAFF),
        json!({ "code": "00001111" }),
    )
    .await;
    assert_eq!(s, 404);
    // A kiosk without a dispenser has no keypad path.
    let kiosk = TestAgent::start_with(catalogue(json!({ "cola": 4 })), kiosk()).await;
    let (s, b) = post(
        &kiosk,
        "/api/v1/vending/pickups",
        None,
        json!({ "code": "00001111" }),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (404, Some("no_dispenser")));
}

#[tokio::test]
async fn staff_correct_stock_and_never_below_what_is_reserved() {
    let agent = TestAgent::start_with(catalogue(json!({ "cola": 2 })), kiosk()).await;
    let now = agent.clock.now_ms();
    assert_eq!(
        place(
            &agent,
            order(
                "o-1",
                &[("cola", 2)],
                "12121212",
                Duration::from_secs(60),
                now
            )
        )
        .await,
        OrderOutcome::Reserved
    );
    let change = |body: Value| post(&agent, "/api/v1/inventory/cola", Some(STAFF), body);
    let (s, b) = change(json!({ "delta": -1, "reason": "damage", "note": "dropped" })).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("stock_refused")),
        "{b}"
    );
    let (s, b) = change(json!({ "delta": 10, "reason": "restock" })).await;
    assert_eq!(
        (s, &b["stock"]),
        (200, &json!({"on_hand": 12, "reserved": 2, "available": 10}))
    );
    let (s, b) = change(json!({ "set": 7, "reason": "count" })).await;
    assert_eq!((s, b["stock"]["on_hand"].as_u64()), (200, Some(7)));
    let (s, _) = change(json!({ "delta": 3, "reason": "damage" })).await;
    assert_eq!(s, 400, "damage removes units");
    let (s, _) = post(
        &agent,
        "/api/v1/inventory/cola",
        None,
        json!({ "delta": 1, "reason": "restock" }),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &agent,
        "/api/v1/inventory/tea",
        Some(STAFF),
        json!({ "delta": -1, "reason": "damage" }),
    )
    .await;
    assert_eq!(s, 404, "a SKU never stocked");
    // Every change is an event.
    let stock_events: Vec<i64> = agent
        .reader()
        .outbox_after(0, 1000)
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            let v: Value = serde_json::from_str(&r.json).unwrap();
            (v["type"] == "com.caidan.stock").then(|| v["data"]["delta"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(stock_events, [2, 10, -5], "catalogue stock, restock, count");
    // Shoppers see what is available, not the counts.
    let r: Value = agent
        .http
        .get(agent.url("/api/v1/inventory/cola"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["here"], json!({ "available": 5 }));
    assert_eq!(r["elsewhere"]["status"], "not_configured");
    let r = agent
        .http
        .get(agent.url("/api/v1/inventory/tea"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

fn product_catalogue(stock: u32) -> Value {
    json!({
        "version": 1,
        "stock": { "cola-can": stock },
        "offers": [
            { "id": "surprise", "brand": "lumi", "kind": "product", "title": { "zh": "惊喜可乐", "en": "Surprise cola" },
              "sku": "cola-can", "price": { "cents": 190, "currency": "CNY", "list_cents": 350 }, "hold_minutes": 20,
              "weight": 1000 },
            { "id": "story", "brand": "lumi", "kind": "content", "title": { "zh": "故事", "en": "Story" } }
        ]
    })
}

#[tokio::test]
async fn a_product_egg_holds_a_unit_with_a_pickup_code_and_points_to_the_nearest_store() {
    let agent = TestAgent::start_with(product_catalogue(1), kiosk()).await;
    let (s, egg) = agent.crack("alice").await;
    assert_eq!(s, 201, "{egg}");
    assert_eq!(egg["offer"]["kind"], "product");
    assert_eq!(egg["price"]["text"], "¥1.90");
    let code = egg["pickup"]["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8);
    assert_eq!(egg["pickup"]["how"], "counter");
    // 2026-11-23 10:00 Shanghai is a Monday: the nearer store is open.
    assert_eq!(egg["nearest_store"]["name"]["en"], "People's Square");
    assert_eq!(egg["nearest_store"]["open_now"], true);
    assert!(egg["nearest_store"]["distance_m"].as_u64().unwrap() < 1000);
    assert_eq!(stock(&agent, "cola-can").await["reserved"], 1);
    // The one unit is held: the next shopper falls through to another egg.
    let (_, bob) = agent.crack("bob").await;
    assert_eq!(bob["offer"]["kind"], "content");
    // A rescan shows the same code again.
    let (s, again) = agent.crack("alice").await;
    assert_eq!(
        (s, again["pickup"]["code"].as_str()),
        (200, Some(code.as_str()))
    );
    let (s, b) = post(
        &agent,
        "/api/v1/pickups",
        Some(STAFF),
        json!({ "code": code }),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["order"]["offer"], "surprise");
    assert_eq!(
        stock(&agent, "cola-can").await,
        json!({"available": 0, "on_hand": 0, "reserved": 0})
    );
    let (_, again) = agent.crack("alice").await;
    assert_eq!(again["pickup"]["state"], "picked_up");
}

#[tokio::test]
async fn an_unpicked_product_egg_goes_back_to_the_shelf_when_its_hold_ends() {
    let agent = TestAgent::start_with(product_catalogue(1), kiosk()).await;
    let (_, egg) = agent.crack("alice").await;
    assert_eq!(egg["offer"]["kind"], "product");
    agent.clock.advance_ms((20 * 60 + 1) * 1000);
    // The agent's own once-a-second sweep may get there first; either way, once.
    agent.running.writer.expire().await.unwrap();
    assert_eq!(agent.running.writer.expire().await.unwrap(), 0);
    let expired = order_events(&agent)
        .into_iter()
        .filter(|(_, s, _)| s == "expired")
        .count();
    assert_eq!(expired, 1, "released once");
    assert_eq!(stock(&agent, "cola-can").await["available"], 1);
    let (_, bob) = agent.crack("bob").await;
    assert_eq!(
        bob["offer"]["kind"], "product",
        "the unit is back for the next shopper"
    );
}

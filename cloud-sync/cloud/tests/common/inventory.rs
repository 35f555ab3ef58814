//! Order and stock events, located devices and an HTTPS client, for the stock tests.

use std::path::Path;

use caidan_sync::tls::TlsFiles;
use caidan_sync::topics;
use rumqttc::QoS;
use serde_json::{Value, json};

use super::TestClient;

/// One event of `fleet`/`device` with `data`, timed `seq` seconds after 10:00 on the test day.
fn envelope(fleet: &str, device: &str, epoch: &str, seq: u64, ty: &str, data: Value) -> Value {
    let mut data = data;
    data["scene"] = json!("vending");
    data["uptime_ms"] = json!(seq * 1000);
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": format!("/caidan/{fleet}/d/{device}"),
        "type": format!("com.caidan.{ty}"),
        "time": format!("2025-03-01T10:{:02}:{:02}.000Z", (seq / 60) % 60, seq % 60),
        "datacontenttype": "application/json",
        "fleet": fleet,
        "device": device,
        "epoch": epoch,
        "seq": seq,
        "data": data,
    })
}

/// A `com.caidan.stock` event: `sku` now has `on_hand` units, `reserved` of them held.
pub fn stock(
    fleet: &str,
    device: &str,
    epoch: &str,
    seq: u64,
    (sku, on_hand, reserved): (&str, u32, u32),
) -> Value {
    let data = json!({"sku": sku, "on_hand": on_hand, "reserved": reserved, "delta": 0,
                      "reason": "count"});
    envelope(fleet, device, epoch, seq, "stock", data)
}

/// A `com.caidan.order` event of `brand` for `shopper` in `state`, one unit of `sku` with
/// the level after the change.
pub fn order(
    device: &str,
    epoch: &str,
    seq: u64,
    state: &str,
    (brand, shopper): (&str, &str),
    (sku, on_hand, reserved): (&str, u32, u32),
) -> Value {
    let mut data = json!({
        "order": format!("o-{device}-{seq}"), "state": state, "lines": [{"sku": sku, "qty": 1}],
        "stock": [{"sku": sku, "on_hand": on_hand, "reserved": reserved}],
        "shopper": shopper, "brand": brand,
    });
    if state == "picked_up" {
        data["by"] = json!("dispenser");
    }
    envelope(super::FLEET, device, epoch, seq, "order", data)
}

/// Publishes `events` as one batch on `fleet`/`device`'s events topic.
pub async fn publish_batch(tc: &TestClient, fleet: &str, device: &str, events: &[Value]) {
    tc.client
        .publish(
            topics::events(fleet, device),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(events).unwrap(),
        )
        .await
        .unwrap();
}

/// Publishes retained online state for `fleet`/`device`, located at `at` when given.
pub async fn publish_located(tc: &TestClient, fleet: &str, device: &str, at: Option<(f64, f64)>) {
    let mut state = json!({"online": true, "profile": "vending"});
    if let Some((lat, lon)) = at {
        state["location"] = json!({"lat": lat, "lon": lon});
    }
    tc.client
        .publish(
            topics::state(fleet, device),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&state).unwrap(),
        )
        .await
        .unwrap();
}

/// An HTTPS client (rustls, ring) whose only trusted root is the CA in `ca`.
pub fn https_client(ca: &Path) -> reqwest::Client {
    let tls = caidan_sync::tls::client_config(&TlsFiles {
        ca: Some(ca.to_owned()),
        ..TlsFiles::default()
    })
    .expect("client TLS config from the test CA");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("HTTPS client")
}

/// `GET url` with `client`, with a bearer token when given: status and JSON body.
pub async fn get_with(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({"not_json": text}));
    (status, body)
}

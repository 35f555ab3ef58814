//! Writes the seed corpus of every fuzz target: real inputs, made by the code that makes
//! them in production (a token the demo screen shows, a batch like the agent sends, an
//! envelope signed with the demo operator key, an order like the store system sends).
//!
//! `cargo run -p caidan-fuzz-harness --example seeds` (run from anywhere; files land in
//! `fuzz/corpus/{target}/seed-*`, replacing the seeds written before).

use std::path::PathBuf;

use caidan_fuzz_harness::{DEVICE, FLEET, NOW_MS, signer};
use caidan_sync::contract::{ConfigAck, ConfigDocument, ConfigStatus, Envelope, Layer, Name};
use caidan_sync::keys::SecretKey;
use serde_json::json;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };

    let token = signer().issue(NOW_MS);
    let previous = signer().issue(NOW_MS - i64::from(signer().rotation_secs()) * 1000);
    write("qr_token", "current", token.as_bytes());
    write("qr_token", "previous", previous.as_bytes());
    write(
        "qr_token",
        "other-device",
        b"cinema-02.59666666.AAAAAAAAAAAAAAAAAAAAAA",
    );

    let event = |seq: u64, kind: &str, data: serde_json::Value| {
        json!({
            "specversion": "1.0",
            "id": format!("0195a0c4-0000-7000-8000-{seq:012}"),
            "source": format!("/caidan/{FLEET}/d/{DEVICE}"),
            "type": kind,
            "time": "2026-12-01T10:15:00.123Z",
            "datacontenttype": "application/json",
            "fleet": FLEET,
            "device": DEVICE,
            "epoch": "0195a0c4-0000-7000-8000-000000000001",
            "seq": seq,
            "data": data,
        })
    };
    let shopper = "0123456789abcdef0123456789abcdef";
    let scan = json!({"scene": "cinema", "uptime_ms": 5, "shopper": shopper, "brands": ["acme"]});
    let batch = json!([
        event(1, "com.caidan.scan", scan.clone()),
        event(2, "com.caidan.scan", scan)
    ]);
    write(
        "event_batch",
        "two-scans",
        &serde_json::to_vec(&batch).unwrap(),
    );

    let key = SecretKey::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../cloud-sync/cloud/examples/fleet/operator.key"),
    )
    .unwrap();
    let doc = ConfigDocument {
        fleet: Name::new(FLEET).unwrap(),
        layer: Layer::Fleet,
        target: Name::new(FLEET).unwrap(),
        version: 3,
        issued_at: "2026-12-01T10:00:00Z".parse().unwrap(),
        settings: json!({"qr.rotation_secs": 45}).as_object().unwrap().clone(),
    };
    let env = Envelope::sign(&doc, &key);
    write("config_envelope", "signed", &env.to_json());
    let ack = ConfigAck {
        layer: Some(Layer::Fleet),
        target: Some(Name::new(FLEET).unwrap()),
        version: Some(3),
        status: ConfigStatus::Applied,
        reason: None,
        digest: env.digest(),
    };
    write("config_envelope", "ack", &ack.to_json());

    let order = json!({
        "type": "order", "order_id": "ord-1001", "lines": [{ "sku": "popcorn-l", "qty": 3 }],
        "pickup_code": "7K4Q9P", "expires_at": "2026-12-01T12:00:00Z",
        "brand": "acme", "shopper": shopper,
    });
    write("order_message", "order", order.to_string().as_bytes());
    write(
        "order_message",
        "cancel",
        br#"{"type":"cancel","order_id":"ord-1001"}"#,
    );
    write(
        "order_message",
        "set-stock",
        br#"{"type":"set_stock","sku":"popcorn-l","on_hand":40}"#,
    );

    let mut egg = vec![0u8];
    egg.extend_from_slice(
        json!({ "token": token, "shopper": shopper })
            .to_string()
            .as_bytes(),
    );
    write("http_bodies", "egg", &egg);
    write("http_bodies", "redeem", b"\x01{\"code\":\"ABCD2345\"}");
    write("http_bodies", "pickup", b"\x02{\"code\":\"7K4Q9P\"}");
    write(
        "http_bodies",
        "stock",
        b"\x03popcorn-l\n{\"delta\":12,\"reason\":\"restock\",\"note\":\"delivery\"}",
    );
    write(
        "http_bodies",
        "count",
        b"\x03popcorn-l\n{\"set\":40,\"reason\":\"count\"}",
    );
}

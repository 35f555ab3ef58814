//! The staff console in a real headless browser (Debian's chromium through playwright-core,
//! both installed by `.ci/test`): sign in, see the waiting order, enter the pickup code,
//! see the hand-over and the stock on hand go down.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use caidan_testkit::agent::{AgentOptions, AgentProc};
use caidan_testkit::mosquitto::Mosquitto;
use caidan_testkit::wait::wait_until;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

const TOPIC: &str = "caidan/v1/demo/d/demo-cinema-01/orders";
const SKU: &str = "orbit-crisps-25g";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Publishes an order and waits until the agent has reserved it; retries while the agent's
/// subscription is still being set up.
fn place_order(broker: &str, data: &Path, id: &str, code: &str, qty: u32) {
    let port: u16 = broker.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = now_ms() + 20_000;
    for attempt in 0.. {
        assert!(now_ms() < deadline, "the agent never reserved {id}");
        let opts = MqttOptions::new(format!("orders-{attempt}-{}", now_ms()), "127.0.0.1", port);
        let (client, mut conn) = Client::new(opts, 8);
        let expires = jiff::Timestamp::from_millisecond(now_ms() + 3_600_000).unwrap();
        let payload = json!({
            "type": "order", "order_id": id, "lines": [{ "sku": SKU, "qty": qty }],
            "pickup_code": code, "expires_at": expires.to_string(), "brand": "orbit"
        });
        client
            .publish(TOPIC, QoS::AtLeastOnce, false, payload.to_string())
            .unwrap();
        for ev in conn.iter() {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = ev {
                break;
            }
            ev.expect("broker reachable");
        }
        if wait_until(Duration::from_secs(2), || reserved(data, id)) {
            return;
        }
    }
}

fn reserved(data: &Path, id: &str) -> bool {
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        data.join("agent.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return false;
    };
    conn.query_row(
        "SELECT count(*) FROM holds WHERE id = ?1 AND state = 'reserved'",
        [id],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n == 1)
}

#[test]
fn staff_hand_over_an_order_in_a_real_browser() {
    let root = caidan_testkit::repo::root();
    let script = root.join("tests/browser/staff_console.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is missing: run .ci/test (it installs chromium, Node.js and playwright-core)"
    );
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let data = dir.path().join("agent");
    let agent = AgentProc::start_with(&data, AgentOptions::fast_sync(Some(&broker.url())));
    place_order(&broker.url(), &data, "web-1", "13572468", 2);
    let out = Command::new("node")
        .arg(&script)
        .args([
            &agent.base,
            "demo-staff-token",
            "web-1",
            "1357-2468",
            SKU,
            "2",
        ])
        .output()
        .expect("node runs (installed by .ci/test)");
    assert!(
        out.status.success(),
        "browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("the script's JSON line"),
    )
    .unwrap();
    assert!(seen["result"].as_str().unwrap().contains("web-1"), "{seen}");
    assert_eq!(
        seen["after"],
        seen["before"].as_i64().unwrap() - 2,
        "{seen}"
    );
    assert_eq!(seen["stillWaiting"], 0, "{seen}");
    assert!(
        seen["again"]
            .as_str()
            .unwrap()
            .contains("already picked up"),
        "{seen}"
    );
}

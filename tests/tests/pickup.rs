//! Pickup orders with the real agent binary, a real broker and `kill -9`: a reservation
//! whose window ends while the agent is dead is released exactly once when it is back, and
//! the inventory CLI sees the same stock as the running agent.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use caidan_testkit::agent::{AgentOptions, AgentProc};
use caidan_testkit::mosquitto::Mosquitto;
use caidan_testkit::wait::wait_until;
use serde_json::{Value, json};

const TOPIC: &str = "caidan/v1/demo/d/demo-cinema-01/orders";
const SKU: &str = "orbit-crisps-25g";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Publishes one message on the orders topic and waits for the broker's PUBACK.
fn publish(url: &str, payload: Value) {
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(caidan_testkit::mqtt::publish_confirmed(
            port,
            TOPIC,
            payload.to_string().into_bytes(),
            false,
        ));
}

fn order(id: &str, code: &str, expires_ms: i64) -> Value {
    json!({
        "type": "order", "order_id": id, "lines": [{ "sku": SKU, "qty": 3 }], "pickup_code": code,
        "expires_at": jiff::Timestamp::from_millisecond(expires_ms).unwrap().to_string(),
    })
}

/// Order events of `order` in the agent's outbox, read from outside the process.
fn states(data: &Path, order: &str) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        data.join("agent.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return Vec::new();
    };
    let mut stmt = conn
        .prepare("SELECT json FROM outbox WHERE type = 'com.caidan.order' ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|j| serde_json::from_str::<Value>(&j.unwrap()).unwrap())
        .filter(|v| v["data"]["order"] == order)
        .map(|v| v["data"]["state"].as_str().unwrap().to_owned())
        .collect()
}

/// `caidan-agent inventory list --json` on the agent's store: SKU -> (on hand, reserved).
fn inventory(agent: &AgentProc) -> Value {
    let out = Command::new(caidan_testkit::bin::agent())
        .args(["inventory", "list", "--json", "--config"])
        .arg(agent.data.with_extension("toml"))
        .arg("--data")
        .arg(&agent.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["sku"] == SKU)
        .unwrap_or(Value::Null)
}

#[test]
fn a_hold_that_ends_while_the_agent_is_killed_is_released_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let data = dir.path().join("agent");
    let opts = AgentOptions::fast_sync(Some(&broker.url()));
    let mut agent = AgentProc::start_with(&data, opts.clone());
    // The agent subscribes with a persistent session; an order it has reserved proves it.
    let probe_deadline = now_ms() + 20_000;
    let mut n = 0;
    while !states(&data, &format!("probe-{n}")).contains(&"reserved".to_string()) {
        assert!(now_ms() < probe_deadline, "the agent never took an order");
        n += 1;
        publish(
            &broker.url(),
            order(
                &format!("probe-{n}"),
                &format!("7{n:07}"),
                now_ms() + 3_600_000,
            ),
        );
        wait_until(Duration::from_secs(1), || {
            states(&data, &format!("probe-{n}")).contains(&"reserved".to_string())
        });
    }
    let before = inventory(&agent);
    let expires = now_ms() + 4_000;
    publish(&broker.url(), order("o-exp", "24682468", expires));
    assert!(
        wait_until(Duration::from_secs(10), || states(&data, "o-exp")
            == ["reserved"]),
        "{:?}",
        states(&data, "o-exp")
    );
    let held = inventory(&agent);
    assert_eq!(held["reserved"], before["reserved"].as_u64().unwrap() + 3);
    agent.kill9();
    // Dead while the window ends.
    assert!(wait_until(Duration::from_secs(10), || now_ms() > expires + 500));
    assert_eq!(
        states(&data, "o-exp"),
        ["reserved"],
        "nobody released it while dead"
    );
    let agent = AgentProc::start_with(&data, opts.clone());
    assert!(
        wait_until(Duration::from_secs(10), || states(&data, "o-exp")
            == ["reserved", "expired"]),
        "{:?}",
        states(&data, "o-exp")
    );
    assert_eq!(inventory(&agent), before, "the units are back");
    // A staff pickup of the expired order is refused.
    assert_eq!(pickup(&agent.base, "24682468"), 410);
    drop(agent);
    // Restarted once more: the answer to a pickup comes after the writer's expiry pass at
    // start, and it is still released exactly once.
    let agent = AgentProc::start_with(&data, opts);
    assert_eq!(pickup(&agent.base, "24682468"), 410);
    assert_eq!(states(&data, "o-exp"), ["reserved", "expired"]);
    assert_eq!(inventory(&agent), before);
}

/// POST /api/v1/pickups with the demo staff token; the status.
fn pickup(base: &str, code: &str) -> u16 {
    {
        let token = "demo-staff-token";
        let body = json!({ "code": code });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            reqwest::Client::new()
                .post(format!("{base}/api/v1/pickups"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    }
}

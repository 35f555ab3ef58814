//! `kill -9` in the middle of applying a 10,000-offer catalogue from a signed config
//! document: after a restart the agent runs either the old config whole or the new one
//! whole (offers, the applied layer and its version agree), never a mix.

use std::path::Path;
use std::time::{Duration, Instant};

use caidan_sync::contract::{ConfigDocument, Envelope, Layer, Name};
use caidan_sync::keys::SecretKey;
use caidan_testkit::agent::{AgentOptions, AgentProc};
use caidan_testkit::files::FileServer;
use caidan_testkit::mosquitto::Mosquitto;
use caidan_testkit::pki::TestPki;
use caidan_testkit::repo;
use serde_json::{Value, json};

const TOPIC: &str = "caidan/v1/demo/d/demo-cinema-01/config";

fn catalogue() -> Vec<u8> {
    let offers: Vec<Value> = (0..10_000)
        .map(|i| {
            json!({ "id": format!("c-{i:05}"), "brand": "lumi", "kind": "coupon",
            "title": { "en": format!("Coupon {i}") } })
        })
        .collect();
    json!({ "version": 1, "offers": offers })
        .to_string()
        .into_bytes()
}

/// `(offers, version of the applied device layer)` in the store at `data`.
fn store_view(data: &Path) -> (i64, Option<i64>) {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("agent.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let offers = conn
        .query_row("SELECT count(*) FROM offers", [], |r| r.get(0))
        .unwrap();
    let layer = conn
        .query_row(
            "SELECT version FROM config_layers WHERE layer = 'device'",
            [],
            |r| r.get(0),
        )
        .ok();
    (offers, layer)
}

async fn publish(port: u16, payload: Vec<u8>) {
    caidan_testkit::mqtt::publish_confirmed(port, TOPIC, payload, true).await;
}

async fn wait_log(agent: &AgentProc, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if agent.proc.log_text().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_10000_offer_apply_leaves_old_or_new_whole() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let pki = TestPki::new(dir.path());
    let body = catalogue();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let files = FileServer::start(&pki, body.clone(), Duration::ZERO).await;
    let key = SecretKey::load(&repo::root().join("cloud-sync/cloud/examples/fleet/operator.key"))
        .unwrap();
    let demo_offers = {
        let v: Value = serde_json::from_str(&repo::demo_catalogue()).unwrap();
        v["offers"].as_array().unwrap().len() as i64
    };
    let mut outcomes = Vec::new();
    // Killed at once after the apply begins, and a little later each time, so the kill
    // lands before, inside and after the transaction across the attempts.
    for (attempt, delay_ms) in [0u64, 20, 80, 200, 500, 3000].into_iter().enumerate() {
        let data = dir.path().join(format!("agent-{attempt}"));
        let opts = AgentOptions {
            mqtt: Some(broker.url()),
            config_extra: Some(format!(
                "[fleet]\nca = {:?}\n",
                pki.ca().display().to_string()
            )),
            ..AgentOptions::default()
        };
        let mut agent = AgentProc::start_with(&data, opts.clone());
        assert!(wait_log(&agent, "connected to broker", Duration::from_secs(20)).await);
        let doc = ConfigDocument {
            fleet: Name::new("demo").unwrap(),
            layer: Layer::Device,
            target: Name::new("demo-cinema-01").unwrap(),
            version: attempt as u64 + 1,
            issued_at: jiff::Timestamp::now(),
            settings: json!({ "catalogue": { "url": format!("{}/c.json", files.base), "sha256": sha, "bytes": body.len() } })
                .as_object()
                .unwrap()
                .clone(),
        };
        publish(broker.port, Envelope::sign(&doc, &key).to_json()).await;
        assert!(
            wait_log(&agent, "applying config", Duration::from_secs(30)).await,
            "the apply never began:\n{}",
            agent.proc.log_text()
        );
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        agent.kill9();
        // Cleared, so the next attempt's agent does not apply this one on connect.
        publish(broker.port, Vec::new()).await;
        let view = store_view(&data);
        let whole = view == (10_000, Some(attempt as i64 + 1)) || view == (demo_offers, None);
        assert!(whole, "attempt {attempt}: {view:?} is a mix");
        // It starts again on what it has, offline, and serves.
        let again = AgentProc::start_with(&data, AgentOptions { mqtt: None, ..opts });
        let health = reqwest::get(format!("{}/healthz", again.base))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(
            store_view(&data),
            view,
            "attempt {attempt}: the restart changed the config"
        );
        drop(again);
        outcomes.push(if view.1.is_some() { "new" } else { "old" });
    }
    println!("outcomes by kill delay: {outcomes:?}");
    assert!(
        outcomes.contains(&"new"),
        "no attempt got to commit: {outcomes:?}"
    );
}

/// The data bank keeps every config answer and says which versions served a claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_bank_knows_which_config_served_a_claim() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let bank =
        caidan_testkit::databank::DatabankProc::start(&dir.path().join("bank"), &broker.url(), &[]);
    let key = SecretKey::load(&repo::root().join("cloud-sync/cloud/examples/fleet/operator.key"))
        .unwrap();
    let data = dir.path().join("agent");
    let agent = AgentProc::start_with(
        &data,
        AgentOptions {
            mqtt: Some(broker.url()),
            ..AgentOptions::fast_sync(Some(&broker.url()))
        },
    );
    assert!(wait_log(&agent, "connected to broker", Duration::from_secs(20)).await);
    let doc = |version| ConfigDocument {
        fleet: Name::new("demo").unwrap(),
        layer: Layer::Device,
        target: Name::new("demo-cinema-01").unwrap(),
        version,
        issued_at: jiff::Timestamp::now(),
        settings: json!({ "qr": { "rotation_secs": 20 + version } })
            .as_object()
            .unwrap()
            .clone(),
    };
    publish(broker.port, Envelope::sign(&doc(1), &key).to_json()).await;
    assert!(wait_log(&agent, "config applied", Duration::from_secs(20)).await);
    let http = reqwest::Client::new();
    let qr: Value = http
        .get(format!("{}/api/v1/qr", agent.screen))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claim = http
        .post(format!("{}/api/v1/eggs", agent.base))
        .json(&json!({ "token": qr["token"], "shopper": "served-by-v1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), 201);
    publish(broker.port, Envelope::sign(&doc(2), &key).to_json()).await;
    // The claim's seq, from the agent's outbox before it is trimmed, or the bank's events.
    let url = format!(
        "{}/api/v1/fleets/demo/devices/demo-cinema-01/config",
        bank.http
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let history = loop {
        let v: Value = http
            .get(&url)
            .bearer_auth("demo-operator-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["history"].as_array().is_some_and(|h| h.len() >= 2) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the bank never got both answers: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let h = history["history"].as_array().unwrap();
    let (epoch, v1_seq, v2_seq) = (
        h[0]["epoch"].as_str().unwrap().to_owned(),
        h[0]["seq"].as_i64().unwrap(),
        h[1]["seq"].as_i64().unwrap(),
    );
    assert_eq!(h[0]["answer"]["version"], 1);
    assert_eq!(h[1]["answer"]["version"], 2);
    // Any seq between the two answers (the claim's among them) was served by version 1.
    assert!(
        v2_seq > v1_seq + 1,
        "the claim lies between the two answers"
    );
    let at: Value = http
        .get(format!("{url}?epoch={epoch}&before_seq={}", v1_seq + 1))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(at["in_force"]["device:demo-cinema-01"], 1, "{at}");
    let unauth = http.get(&url).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    let brand = http
        .get(&url)
        .bearer_auth("demo-token-lumi")
        .send()
        .await
        .unwrap();
    assert_eq!(brand.status(), 403);
}

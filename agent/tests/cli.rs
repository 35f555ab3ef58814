//! The real `caidan-agent` binary: catalogue import is all or nothing, and a claim whose
//! answer was sent survives `kill -9`.

use std::path::Path;
use std::process::Command;

use caidan_agent::store::Reader;
use caidan_agent::store::read::Table;
use caidan_testkit::AgentProc;
use caidan_testkit::agent::AgentOptions;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_caidan-agent");

fn agent(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

#[test]
fn a_catalogue_with_one_bad_offer_is_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, caidan_agent::config::DEMO_CATALOGUE).unwrap();
    let out = agent(&["offers", "import", good.to_str().unwrap()], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = dir.path().join("agent.db");
    let offers = Reader::open(&store).unwrap().count(Table::Offers).unwrap();

    let mut bad: Value = serde_json::from_str(caidan_agent::config::DEMO_CATALOGUE).unwrap();
    bad["offers"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "id": "new-one", "brand": "x", "kind": "coupon", "title": { "en": "New" } }));
    bad["offers"][1]["kind"] = json!("free_sample");
    let bad_path = dir.path().join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let out = agent(
        &["offers", "import", bad_path.to_str().unwrap()],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("offers[1]") && err.contains("sku"),
        "{err}"
    );
    let reader = Reader::open(&store).unwrap();
    assert_eq!(
        reader.count(Table::Offers).unwrap(),
        offers,
        "nothing of the bad file was stored"
    );

    let listed = agent(&["claims", "list"], dir.path());
    assert!(listed.status.success());
    let stats = agent(&["outbox", "stats", "--json"], dir.path());
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["store_fill"], "normal", "{stats}");
    assert_eq!(stats["store_budget_bytes"], 1024 * 1024 * 1024, "{stats}");
    assert!(stats["store_used_bytes"].as_u64().unwrap() > 0, "{stats}");
}

#[test]
fn check_config_names_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        caidan_agent::config::DEMO_CONFIG.replace("rotation_secs = 30", "rotation_secs = 0"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("catalogue.json"),
        caidan_agent::config::DEMO_CATALOGUE,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.toml") && err.contains("qr.rotation_secs") && err.contains("1..=3600"),
        "{err}"
    );
}

/// The demo agent, store in `data`, on free ports; per-client limits lifted so one test
/// process can play many phones.
fn start(data: &Path) -> AgentProc {
    AgentProc::start_with(
        data,
        AgentOptions {
            config_extra: Some(caidan_testkit::agent::LOAD_LIMITS.into()),
            ..AgentOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_whose_answer_was_sent_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut answered = Vec::new();
    for round in 0..5 {
        let mut agent = start(dir.path());
        let qr =
            caidan_testkit::get_json(&http, &format!("{}/api/v1/qr", agent.screen), None).await;
        let token = qr["token"].as_str().unwrap().to_owned();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for worker in 0..16 {
            let (http, base, token, tx) =
                (http.clone(), agent.base.clone(), token.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let r = http
                        .post(format!("{base}/api/v1/eggs"))
                        .json(&json!({ "token": token, "shopper": format!("r{round}-w{worker}-n{n}") }))
                        .send()
                        .await;
                    let Ok(r) = r else { break };
                    let Ok(body) = r.json::<Value>().await else { break };
                    if tx.send(body["claim_code"].as_str().unwrap().to_owned()).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(tx);
        // Kill -9 the moment the 40th answer has arrived, with requests still in flight.
        for _ in 0..40 {
            answered.push(rx.recv().await.unwrap());
        }
        agent.kill9();
        while let Some(code) = rx.recv().await {
            answered.push(code);
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let reader = Reader::open(&dir.path().join("agent.db")).unwrap();
    let stored: std::collections::HashSet<String> = reader
        .claims(1_000_000)
        .unwrap()
        .into_iter()
        .map(|c| c.claim_code)
        .collect();
    for code in &answered {
        assert!(stored.contains(code), "claim {code} was answered but lost");
    }
    assert!(answered.len() >= 200);
    // The outbox holds one claim event per stored claim, gapless.
    let rows = reader.outbox_after(0, 1_000_000).unwrap();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
    }
}

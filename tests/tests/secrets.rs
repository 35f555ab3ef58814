//! No secret in any log line, banner or error message: a full run of the agent and the data
//! bank, with passwords in the broker URLs and the environment, staff tokens right and
//! wrong, a refused TLS connection, with the log at `debug`; then every output is searched.

use std::time::Duration;

use caidan_e2e::{Agent, Databank, Mosquitto, claim_many, wait_until};
use caidan_testkit::agent::AgentOptions;

const URL_PASSWORD: &str = "url-pw-4f9c1e";
const ENV_PASSWORD: &str = "env-pw-7d2a90";

/// Every secret of the demo config and of this run, as it would appear in text.
fn secrets() -> Vec<String> {
    let config = caidan_testkit::repo::demo_agent_config();
    let hex_of = |key: &str| {
        config
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split('"').nth(1))
            .unwrap()
            .to_owned()
    };
    vec![
        URL_PASSWORD.into(),
        ENV_PASSWORD.into(),
        "demo-staff-token".into(),
        "wrong-staff-token".into(),
        hex_of("secret ="),
        hex_of("fleet_secret"),
        hex_of("claim_key"),
        std::fs::read_to_string(caidan_testkit::repo::demo_ack_key())
            .unwrap()
            .trim()
            .to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let debug = vec![("RUST_LOG".to_owned(), "debug".to_owned())];
    let bank = Databank::start_env(
        dir.path(),
        &format!("mqtt://bank@127.0.0.1:{}", broker.port),
        &[],
        &[
            ("CAIDAN_MQTT_PASSWORD", ENV_PASSWORD),
            ("RUST_LOG", "debug"),
        ],
    );
    let mut opts = AgentOptions::fast_sync(Some(&format!(
        "mqtt://kiosk:{URL_PASSWORD}@127.0.0.1:{}",
        broker.port
    )));
    opts.env = debug.clone();
    let data = dir.path().join("agent");
    let agent = Agent::start_with(&data, opts);
    assert_eq!(claim_many(&agent, "secret", 50, 4).await, 50);
    assert!(
        wait_until(Duration::from_secs(30), || bank.counts().claims == 50),
        "synced"
    );
    let http = reqwest::Client::new();
    for token in ["demo-staff-token", "wrong-staff-token"] {
        let _ = http
            .post(format!("{}/api/v1/redemptions", agent.base))
            .bearer_auth(token)
            .json(&serde_json::json!({ "code": "ZZZZZZZZ" }))
            .send()
            .await
            .unwrap();
    }
    // An agent refused by a TLS broker URL it cannot use: its error message, too.
    let refused = std::process::Command::new(caidan_testkit::bin::agent())
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--screen-listen",
            "127.0.0.1:0",
        ])
        .args(["--data"])
        .arg(dir.path().join("refused"))
        .args([
            "--mqtt",
            &format!("mqtts://kiosk:{URL_PASSWORD}@127.0.0.1:1/?ca=/no/such/ca.pem"),
        ])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(!refused.status.success());

    let mut outputs = vec![
        ("agent banner", agent.stdout_text()),
        ("agent log", agent.proc.log_text()),
        ("data bank log", bank.proc.log_text()),
        (
            "refused agent",
            format!(
                "{}{}",
                String::from_utf8_lossy(&refused.stdout),
                String::from_utf8_lossy(&refused.stderr)
            ),
        ),
    ];
    outputs.push(("broker log", broker.log()));
    assert!(outputs[1].1.contains("DEBUG"), "the log ran at debug");
    assert!(outputs[0].1.contains("uplink:"), "{}", outputs[0].1);
    for (what, text) in &outputs {
        for secret in secrets() {
            assert!(
                !text.contains(&secret),
                "{what} contains the secret {secret:?}:\n{text}"
            );
        }
    }
}

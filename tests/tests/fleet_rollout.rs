//! `caidan-cloud fleet rollout` against real agents (in this process, on one broker): a
//! rollout whose canary refuses the document halts and puts back the devices that took it;
//! a clean rollout reaches every device and ends retained on the fleet topic.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use caidan_agent::config::{AgentConfig, DEMO_CATALOGUE, DEMO_CONFIG};
use caidan_agent::runtime::{self, MqttTarget, RunOptions, Running};
use caidan_sync::clock::SystemClock;
use caidan_testkit::mosquitto::Mosquitto;
use caidan_testkit::repo;
use caidan_testkit::wait::eventually;

/// `(device id, profile, scene)`: sorted by id, the first (the canary) is a locker.
const FLEET: [(&str, &str, &str); 4] = [
    ("a-locker", "community-locker", "community"),
    ("b-cinema", "cinema-screen", "cinema"),
    ("c-cinema", "cinema-screen", "cinema"),
    ("d-cinema", "cinema-screen", "cinema"),
];

async fn start(dir: &Path, port: u16, (id, profile, scene): (&str, &str, &str)) -> Running {
    let text = DEMO_CONFIG
        .replace("demo-cinema-01", id)
        .replace(
            "profile = \"cinema-screen\"",
            &format!("profile = \"{profile}\""),
        )
        .replace("scene = \"cinema\"", &format!("scene = \"{scene}\""))
        .replace("rotation_secs = 30", "rotation_secs = 60");
    let cfg = AgentConfig::from_toml(&text, "test.toml").expect("config");
    runtime::start(
        RunOptions {
            config: cfg,
            catalogue: Some(caidan_agent::catalogue::CatalogueFile {
                text: DEMO_CATALOGUE.to_owned(),
                origin: "demo".into(),
            }),
            data_dir: dir.join(id),
            listen: "127.0.0.1:0".parse().unwrap(),
            screen_listen: "127.0.0.1:0".parse().unwrap(),
            display: None,
            mqtt: Some(MqttTarget {
                url: format!("mqtt://127.0.0.1:{port}").parse().unwrap(),
                tls: Default::default(),
            }),
        },
        SystemClock::shared(),
    )
    .await
    .expect("agent starts")
}

fn fleet_cmd(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(caidan_testkit::bin::cloud())
        .arg("fleet")
        .args(args)
        .args(["--mqtt", url])
        .output()
        .expect("caidan-cloud runs")
}

async fn rotation(agent: &Running) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("{}/api/v1/qr", agent.screen_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["rotation_secs"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_refuses_halts_the_rollout_and_a_clean_one_reaches_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let mut agents = Vec::new();
    for d in FLEET {
        agents.push(start(dir.path(), broker.port, d).await);
    }
    for a in &agents {
        let up = a.uplink.as_ref().unwrap();
        assert!(eventually(Duration::from_secs(20), || up.status().connected).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key = repo::root()
        .join("cloud-sync/cloud/examples/fleet/operator.key")
        .to_str()
        .unwrap()
        .to_owned();
    let state = dir.path().join("operator");
    // 20 s rotation: within the cinema screens' range, below the e-paper locker's minimum.
    let bad = dir.path().join("fast-qr.toml");
    std::fs::write(&bad, "qr = { rotation_secs = 20 }\n").unwrap();
    let url = broker.url();
    let rollout = move |file: &Path, halt: &str| {
        fleet_cmd(
            &url,
            &[
                "rollout",
                "--state",
                state.to_str().unwrap(),
                "--target",
                "fleet",
                "--file",
                file.to_str().unwrap(),
                "--key",
                &key,
                "--canary",
                "25",
                "--waves",
                "2",
                "--halt-on",
                halt,
                "--min-devices",
                "1",
                "--wave-timeout",
                "10",
            ],
        )
    };
    let out = tokio::task::spawn_blocking({
        let bad = bad.clone();
        let rollout = rollout.clone();
        move || rollout(&bad, "50")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a refusing canary must halt the rollout:\n{text}"
    );
    assert!(
        text.contains("invalid_for_profile"),
        "the reason is named:\n{text}"
    );
    for a in &agents {
        assert_eq!(
            rotation(a).await,
            60,
            "nobody beyond the canary got it:\n{text}"
        );
    }
    // A clean document reaches every device and stays retained for newcomers.
    let good = dir.path().join("slow-qr.toml");
    std::fs::write(&good, "qr = { rotation_secs = 90 }\n").unwrap();
    let out = tokio::task::spawn_blocking(move || rollout(&good, "50"))
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for a in &agents {
        assert_eq!(rotation(a).await, 90, "{text}");
    }
    let status = fleet_cmd(&broker.url(), &["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(rows.as_array().map(Vec::len), Some(4), "{rows}");
    for a in agents {
        let _ = a.shutdown().await;
    }
}

//! The real `caidan-cloud databank` binary with `--https`: it serves the API over TLS to a
//! client that trusts only the test CA, keeps its plain listener, and refuses to start,
//! saying which file is wrong, on a bad certificate or key.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use caidan_cloud::broker;
use caidan_testkit::{DatabankProc, Proc, TestPki, repo};
use common::inventory::{get_with, https_client};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_https_with_the_demo_fleet_token() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let server = pki.identity("server");
    let (cert, key) = (server.cert.to_str().unwrap(), server.key.to_str().unwrap());
    let args = [
        "--share-group",
        "none",
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    let bank = DatabankProc::start(dir.path(), &format!("mqtt://{}", b.local_addr()), &args);
    let https = bank
        .https
        .clone()
        .expect("the binary names its HTTPS address");
    let client = https_client(&pki.ca());

    let (status, body) = get_with(&client, &format!("{https}/healthz"), None).await;
    assert_eq!(status, 200, "{body}");
    // The example access file's demo fleet token reads the demo fleet's stock.
    let url = format!("{https}/api/v1/fleets/demo/stock/cola?lat=31.24&lon=121.49");
    let (status, v) = get_with(&client, &url, Some("demo-fleet-token")).await;
    assert_eq!(
        (status, v),
        (200, json!({"sku": "cola", "touchpoints": []}))
    );
    let (status, _) = get_with(&client, &url, Some("demo-token-lumi")).await;
    assert_eq!(status, 403);
    // Plain HTTP still serves beside it; TLS is not spoken there, nor plain text on TLS.
    let (status, _) = get_with(
        &reqwest::Client::new(),
        &format!("{}/healthz", bank.http),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let plain_on_tls = https.replace("https://", "http://");
    let r = reqwest::Client::new()
        .get(format!("{plain_on_tls}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(r.is_err() || r.is_ok_and(|r| !r.status().is_success()));
}

/// Runs `caidan-cloud databank` with `extra` arguments until it exits; its exit status
/// and what it wrote to stderr.
fn run_to_exit(dir: &Path, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let log = dir.join("refused.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(caidan_testkit::bin::cloud());
    cmd.args(["databank", "--mqtt", "mqtt://127.0.0.1:1", "--store"])
        .arg(format!("sqlite:{}", dir.join("refused.db").display()))
        .arg("--brands")
        .arg(repo::demo_brands())
        .arg("--ack-key")
        .arg(repo::demo_ack_key())
        .args(["--http", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null());
    let mut proc = Proc::spawn_logged(&mut cmd, &log).expect("spawn caidan-cloud");
    let status = proc
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("still running with {extra:?}:\n{}", proc.log_text()));
    (status, proc.log_text())
}

#[test]
fn bad_certificate_or_key_files_stop_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let server = pki.identity("server");
    let other = pki.issue("other", &["localhost"]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.key");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let cases = [
        (
            path(&garbage),
            path(&server.key),
            vec!["garbage.pem", "no certificate"],
        ),
        (
            path(&server.cert),
            path(&missing),
            vec!["missing.key", "cannot read"],
        ),
        (path(&server.cert), path(&garbage), vec!["garbage.pem"]),
        (
            path(&server.cert),
            path(&other.key),
            vec!["server.pem", "other.key"],
        ),
    ];
    for (cert, key, says) in cases {
        let args = [
            "--https",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        let (status, log) = run_to_exit(dir.path(), &args);
        assert!(!status.success(), "{args:?}");
        for s in says {
            assert!(log.contains(s), "{args:?}: {s:?} missing from\n{log}");
        }
        assert!(!log.contains("data bank started"), "{log}");
    }
    // --https needs both files, and the files need --https.
    let (status, log) = run_to_exit(dir.path(), &["--https", "127.0.0.1:0"]);
    assert!(!status.success() && log.contains("--tls-cert"), "{log}");
    let (status, log) = run_to_exit(dir.path(), &["--tls-cert", &path(&server.cert)]);
    assert!(!status.success() && log.contains("--https"), "{log}");
}

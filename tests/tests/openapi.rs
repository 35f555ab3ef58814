//! The OpenAPI documents the agent and the data bank serve at `/openapi.json`, put to
//! schemathesis (from PyPI; `.ci/test` installs it): every documented operation is called
//! with generated valid and invalid input, as staff, operator or brand, and each answer must
//! be no server error, carry a documented status and content type, and match its schema.

use std::path::Path;
use std::process::Command;

use caidan_testkit::agent::{AgentOptions, AgentProc, LOAD_LIMITS};
use caidan_testkit::databank::DatabankProc;
use caidan_testkit::get_json;
use caidan_testkit::mosquitto::Mosquitto;
use caidan_testkit::proc::require;
use serde_json::Value;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// Runs schemathesis against `base` with its document, with `headers`; fails with its report.
fn schemathesis(dir: &Path, base: &str, headers: &[String], config: Option<&str>) {
    let st = require("st", "schemathesis (pip install schemathesis)");
    let mut cmd = Command::new(st);
    if let Some(text) = config {
        let file = dir.join("schemathesis.toml");
        std::fs::write(&file, text).expect("write schemathesis config");
        cmd.arg("--config-file").arg(file);
    }
    cmd.arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--checks", CHECKS])
        .args([
            "--max-examples",
            "40",
            "--seed",
            "20261202",
            "--workers",
            "1",
        ])
        .args(["--request-timeout", "10", "--no-color"])
        .arg("--report-dir")
        .arg(dir.join("report"))
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir);
    for h in headers {
        cmd.args(["--header", h]);
    }
    let out = cmd.output().expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis against {base} failed:\n{text}"
    );
    // It ran the operations, not nothing: every documented path was called.
    assert!(
        !text.contains("No operations") && text.contains("passed"),
        "schemathesis ran no operations against {base}:\n{text}"
    );
}

async fn document(base: &str) -> Value {
    get_json(
        &reqwest::Client::new(),
        &format!("{base}/openapi.json"),
        None,
    )
    .await
}

fn paths(doc: &Value) -> Vec<String> {
    doc["paths"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Fails unless `doc` is OpenAPI 3.1 and lists every one of `routes`.
fn assert_lists(doc: &Value, routes: &[&str]) {
    assert_eq!(doc["openapi"], "3.1.0");
    let listed = paths(doc);
    for route in routes {
        assert!(
            listed.contains(&(*route).to_owned()),
            "{route} not in {listed:?}"
        );
    }
}

#[tokio::test]
async fn the_agents_documents_list_its_routes_and_hold_under_schemathesis() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProc::start_with(
        &dir.path().join("agent"),
        AgentOptions {
            config_extra: Some(LOAD_LIMITS.to_owned()),
            ..AgentOptions::default()
        },
    );
    let public = document(&agent.base).await;
    assert_lists(
        &public,
        &[
            "/api/v1/eggs",
            "/api/v1/redemptions",
            "/api/v1/claims/public-key",
            "/api/v1/pickups",
            "/api/v1/vending/pickups",
            "/api/v1/orders",
            "/api/v1/orders/{id}/release",
            "/api/v1/inventory",
            "/api/v1/inventory/{sku}",
        ],
    );
    let crack = &public["paths"]["/api/v1/eggs"]["post"];
    assert!(crack["requestBody"]["content"]["application/json"]["schema"].is_object());
    assert!(crack["responses"]["201"].is_object() && crack["responses"]["default"].is_object());
    let screen = document(&agent.screen).await;
    assert_eq!(paths(&screen), vec!["/api/v1/qr".to_owned()]);

    let staff = vec!["Authorization: Bearer demo-staff-token".to_owned()];
    let run = dir.path().join("public");
    std::fs::create_dir_all(&run).unwrap();
    schemathesis(&run, &agent.base, &staff, None);
    let run = dir.path().join("screen");
    std::fs::create_dir_all(&run).unwrap();
    schemathesis(&run, &agent.screen, &[], None);
    // The agent is still whole after it.
    let health = reqwest::get(format!("{}/healthz", agent.base))
        .await
        .unwrap();
    assert!(health.status().is_success());
}

#[tokio::test]
async fn the_data_banks_document_lists_its_routes_and_holds_under_schemathesis() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let bank = DatabankProc::start(&dir.path().join("bank"), &broker.url(), &[]);
    let doc = document(&bank.http).await;
    assert_lists(
        &doc,
        &[
            "/api/v1/brands/{brand}/funnel",
            "/api/v1/devices",
            "/api/v1/fleets/{fleet}/stock/{sku}",
            "/api/v1/fleets/{fleet}/devices/{device}/config",
            "/api/v1/dead-letters",
        ],
    );
    // As an operator for the fleet-wide routes; and as one brand, on its own funnel.
    let run = dir.path().join("operator");
    std::fs::create_dir_all(&run).unwrap();
    schemathesis(
        &run,
        &bank.http,
        &["Authorization: Bearer demo-operator-token".to_owned()],
        None,
    );
    let run = dir.path().join("brand");
    std::fs::create_dir_all(&run).unwrap();
    schemathesis(
        &run,
        &bank.http,
        &["Authorization: Bearer demo-token-lumi".to_owned()],
        Some("[parameters]\n\"path.brand\" = \"lumi-cola\"\n"),
    );
}

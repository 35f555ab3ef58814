//! "Where else is it?" end to end: two real agents sync their stock to a real data bank
//! through Mosquitto; the one that has run out asks the data bank over HTTPS (a test CA,
//! the fleet token) and names the other, nearest first. With the data bank gone it says
//! so and still answers for itself.

use std::process::Command;
use std::time::Duration;

use caidan_testkit::agent::{AgentOptions, AgentProc};
use caidan_testkit::databank::DatabankProc;
use caidan_testkit::mosquitto::Mosquitto;
use caidan_testkit::pki::TestPki;
use caidan_testkit::wait::wait_until;
use serde_json::Value;

const SKU: &str = "orbit-crisps-25g";

fn get_json(url: &str, token: Option<&str>, ca: Option<&std::path::Path>) -> Option<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut b = reqwest::Client::builder();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).unwrap();
            b = b
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .tls_built_in_root_certs(false);
        }
        let mut r = b.build().unwrap().get(url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    })
}

/// `caidan-agent inventory set` on a store before its agent starts.
fn set_stock(config: &std::path::Path, data: &std::path::Path, sku: &str, n: u32) {
    let out = Command::new(caidan_testkit::bin::agent())
        .args(["inventory", "set", sku, &n.to_string(), "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_agent_out_of_stock_names_the_nearest_touchpoint_that_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let broker = Mosquitto::plain(dir.path());
    let server = pki.identity("server");
    let bank = DatabankProc::start(
        &dir.path().join("bank"),
        &broker.url(),
        &[
            "--https",
            "127.0.0.1:0",
            "--tls-cert",
            server.cert.to_str().unwrap(),
            "--tls-key",
            server.key.to_str().unwrap(),
        ],
    );
    let https = bank.https.clone().expect("the data bank serves https");
    let place = |lat: f64, lon: f64| {
        (
            "profile = \"cinema-screen\"".to_string(),
            format!("profile = \"cinema-screen\"\nlocation = {{ lat = {lat}, lon = {lon} }}"),
        )
    };
    // Another touchpoint 800 m away with the SKU in stock (the demo catalogue's 120).
    let other = AgentProc::start_with(
        &dir.path().join("other"),
        AgentOptions {
            config_edits: vec![
                (
                    "id = \"demo-cinema-01\"".into(),
                    "id = \"kiosk-near\"".into(),
                ),
                place(31.2350, 121.4800),
            ],
            ..AgentOptions::fast_sync(Some(&broker.url()))
        },
    );
    let stocked = wait_until(Duration::from_secs(30), || {
        get_json(
            &format!("{https}/api/v1/fleets/demo/stock/{SKU}"),
            Some("demo-fleet-token"),
            Some(&pki.ca()),
        )
        .is_some_and(|v| v["touchpoints"][0]["device"] == "kiosk-near")
    });
    assert!(stocked, "the data bank never learnt kiosk-near's stock");
    // This touchpoint has run out, and knows where to ask.
    let data = dir.path().join("here");
    let mut opts = AgentOptions::fast_sync(Some(&broker.url()));
    opts.config_edits = vec![place(31.2304, 121.4737)];
    opts.config_extra = Some(format!(
        "{}\n[elsewhere]\nurl = \"{https}\"\nca = {:?}\ntoken = \"demo-fleet-token\"\n",
        opts.config_extra.unwrap_or_default(),
        pki.ca().display().to_string()
    ));
    // The config is written by the first start; stock is set before the real start.
    drop(AgentProc::start_with(&data, opts.clone()));
    set_stock(&data.with_extension("toml"), &data, SKU, 0);
    set_stock(&data.with_extension("toml"), &data, "gum-mint", 0);
    let here = AgentProc::start_with(&data, opts);
    let answer = get_json(&format!("{}/api/v1/inventory/{SKU}", here.base), None, None)
        .expect("a local answer");
    assert_eq!(answer["here"]["available"], 0, "{answer}");
    assert_eq!(answer["elsewhere"]["status"], "found", "{answer}");
    let first = &answer["elsewhere"]["touchpoints"][0];
    assert_eq!(first["device"], "kiosk-near", "{answer}");
    assert!(first["available"].as_u64().unwrap() > 0);
    let d = first["distance_m"].as_f64().unwrap();
    assert!((700.0..900.0).contains(&d), "{d}");
    // The data bank goes away: the answer says so, and still gives this touchpoint's stock.
    drop(bank);
    let answer = get_json(
        &format!("{}/api/v1/inventory/gum-mint", here.base),
        None,
        None,
    )
    .expect("a local answer while the data bank is down");
    assert_eq!(answer["here"]["available"], 0);
    assert_eq!(answer["elsewhere"]["status"], "offline", "{answer}");
    assert!(
        answer["elsewhere"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot")
    );
    drop(other);
}

//! The fleet operator commands, run as the real `caidan-cloud` binary against a real
//! Mosquitto, with fake devices that verify, apply or reject and answer as agents do.

mod fleet;

use caidan_sync::contract::config::MAX_ENVELOPE_BYTES;
use caidan_sync::topics;
use caidan_testkit::Mosquitto;
use fleet::*;
use serde_json::{Value, json};

const OLD: &str = "brand_line = \"old\"\n[qr]\nrotation_secs = 20\n";
const NEW: &str = "brand_line = \"new\"\n[qr]\nrotation_secs = 30\n";

fn is_new(doc: &caidan_sync::contract::ConfigDocument) -> bool {
    doc.settings.get("brand_line") == Some(&json!("new"))
}

/// `push` or `rollout` arguments with the broker, the key and the state folder.
fn signing<'a>(cmd: &'a str, mqtt: &'a str, key: &'a str, state: &'a str) -> Vec<&'a str> {
    vec!["fleet", cmd, "--mqtt", mqtt, "--key", key, "--state", state]
}

fn version_of(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("pushed "))
        .unwrap_or_else(|| panic!("no pushed line in {out}"));
    let after = line.split(" version ").nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_then_push_signs_and_numbers_above_everything_seen() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::plain(dir.path());
    let url = m.url();
    let state = dir.path().join("state").display().to_string();

    let keys = dir.path().join("keys");
    let o = cli(&["fleet", "keygen", "--out", keys.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let public = std::fs::read_to_string(keys.join("operator.pub")).unwrap();
    let public = public.trim().to_owned();
    let pk: caidan_sync::keys::PublicKey = public.parse().unwrap();
    assert!(out.contains(&public), "{out}");
    assert!(out.contains(&format!("key id: {}", pk.id())), "{out}");
    assert!(
        out.contains(&format!("[trust] config = [\"{public}\"]")),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("operator.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = cli(&["fleet", "keygen", "--out", keys.to_str().unwrap()]).await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(keys.join("operator.pub"))
            .unwrap()
            .trim(),
        public,
        "the pair is untouched"
    );
    let key = keys.join("operator.key").display().to_string();

    let file = config_file(dir.path(), "fleet.toml", OLD);
    let push = |target: &'static str| {
        let mut args = signing("push", &url, &key, &state);
        args.extend(["--target", target, "--file", &file]);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = cli(&args).await;
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        stdout(&o)
    };

    let out = run(push("fleet")).await;
    assert_eq!(version_of(&out), 1);
    assert!(out.contains("caidan/v1/demo/config"), "{out}");
    let doc = retained_document(m.port, &topics::fleet_config(FLEET), &pk)
        .await
        .expect("retained on the fleet topic");
    assert_eq!(doc.version, 1);
    assert_eq!(
        Value::Object(doc.settings.clone()),
        json!({"brand_line": "old", "qr": {"rotation_secs": 20}})
    );
    let digest_line = out.lines().find(|l| l.starts_with("digest ")).unwrap();
    assert_eq!(digest_line.len(), "digest ".len() + 64);

    assert_eq!(version_of(&run(push("fleet")).await), 2);

    // A device already runs version 7 of the fleet layer (signed elsewhere): the next push
    // goes above it, and the device takes it.
    let d = FakeDevice::start(
        m.port,
        Spec::new("d1").groups(&["north"]).fleet_version(7),
        pk,
    )
    .await;
    let out = run(push("fleet")).await;
    assert_eq!(version_of(&out), 8);
    until("d1 applies version 8", || d.fleet_version() == Some(8)).await;

    let out = run(push("group:north")).await;
    assert_eq!(version_of(&out), 1);
    assert!(out.contains("caidan/v1/demo/g/north/config"), "{out}");
    let out = run(push("device:d1")).await;
    assert!(out.contains("caidan/v1/demo/d/d1/config"), "{out}");
    until("d1 applies its group and device layers", || {
        let r = d.report();
        r.groups.values().next() == Some(&1) && r.device == Some(1)
    })
    .await;
    let history = std::fs::read_to_string(dir.path().join("state/demo/fleet.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_refuses_bad_input_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::plain(dir.path());
    let url = m.url();
    let state = dir.path().join("state").display().to_string();
    let (key, _) = operator_key(dir.path()).await;

    let refused = |target: &'static str, file: String| {
        let (url, key, state) = (url.clone(), key.clone(), state.clone());
        async move {
            let mut args = signing("push", &url, &key, &state);
            args.extend(["--target", target, "--file", &file]);
            let o = cli(&args).await;
            assert!(!o.status.success(), "{}", stdout(&o));
            stderr(&o)
        }
    };

    let err = refused(
        "fleet",
        config_file(
            dir.path(),
            "colour.toml",
            "[qr]\nrotation_secs = 20\n[colour]\nx = 1\n",
        ),
    )
    .await;
    assert!(err.contains("unknown setting \"colour\""), "{err}");
    assert!(
        err.contains(
            "offers, segments, stock, catalogue, stores, qr, sync, staff, features, brand_line, trust"
        ),
        "{err}"
    );

    let trust = config_file(
        dir.path(),
        "trust.toml",
        "[trust]\nconfig = [\"ed25519:00\"]\n",
    );
    let err = refused("group:north", trust).await;
    assert!(err.contains("trust is a fleet-wide setting"), "{err}");

    let big = config_file(
        dir.path(),
        "big.toml",
        &format!("brand_line = \"{}\"\n", "x".repeat(MAX_ENVELOPE_BYTES)),
    );
    let err = refused("fleet", big).await;
    assert!(err.contains("catalogue = { url, sha256, bytes }"), "{err}");
    // Under the file limit, over the envelope limit once signed (base64 grows it by a third).
    let swollen = config_file(
        dir.path(),
        "swollen.toml",
        &format!(
            "brand_line = \"{}\"\n",
            "x".repeat(MAX_ENVELOPE_BYTES * 4 / 5)
        ),
    );
    let err = refused("fleet", swollen).await;
    assert!(err.contains("signed envelope is"), "{err}");
    assert!(err.contains("catalogue = { url, sha256, bytes }"), "{err}");

    let err = refused("fleet", config_file(dir.path(), "bad.toml", "qr = = 1\n")).await;
    assert!(err.contains("not TOML"), "{err}");
    let err = refused("store:x", config_file(dir.path(), "ok.toml", OLD)).await;
    assert!(
        err.contains("write fleet, group:NAME or device:ID"),
        "{err}"
    );

    assert!(
        retained(m.port, "caidan/v1/#").await.is_empty(),
        "nothing was published"
    );
    assert!(!dir.path().join("state/demo").exists(), "nothing recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_devices_with_versions_and_last_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::plain(dir.path());
    let url = m.url();
    let state = dir.path().join("state").display().to_string();
    let (key, pk) = operator_key(dir.path()).await;
    let specs = vec![
        Spec::new("d1").groups(&["north"]),
        Spec::new("d2").rule(Rule::reject_if(|_| true)),
        Spec::new("d3").offline(),
    ];
    let ds = devices(m.port, specs, pk).await;
    let file = config_file(dir.path(), "fleet.toml", OLD);
    let mut args = signing("push", &url, &key, &state);
    args.extend(["--target", "fleet", "--file", &file]);
    assert!(cli(&args).await.status.success());
    until("d1 applies and d2 refuses", || {
        ds[0].fleet_version() == Some(1) && ds[1].report().last_rejection.is_some()
    })
    .await;

    let o = cli(&["fleet", "status", "--mqtt", &url]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("DEVICE"), "{table}");
    let d1 = lines[1];
    assert!(d1.starts_with("d1 "), "{table}");
    for want in ["north", "cinema", "kiosk", "yes", "50% normal", "s ago"] {
        assert!(d1.contains(want), "{want:?} in {table}");
    }
    assert!(
        lines[2].contains("fleet:1 invalid_for_profile: no printer for coupons"),
        "{table}"
    );
    assert!(
        lines[3].starts_with("d3 ") && lines[3].contains(" no "),
        "{table}"
    );

    let o = cli(&["fleet", "status", "--mqtt", &url, "--json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["device"], "d1");
    assert_eq!(rows[0]["fleet_version"], 1);
    assert_eq!(rows[0]["groups"], json!(["north"]));
    assert_eq!(rows[0]["outbox_depth"], 3);
    assert_eq!(rows[0]["storage"]["percent"], 50);
    assert!(rows[0]["age_secs"].as_i64().unwrap() < 60);
    assert_eq!(rows[1]["fleet_version"], Value::Null);
    assert_eq!(rows[1]["last_rejection"]["code"], "invalid_for_profile");
    assert_eq!(rows[1]["last_rejection"]["version"], 1);
    assert_eq!(rows[2]["online"], false);
}

fn rollout_args<'a>(
    mqtt: &'a str,
    key: &'a str,
    state: &'a str,
    file: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = signing("rollout", mqtt, key, state);
    args.extend(["--target", "fleet", "--file", file]);
    args.extend(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_rollout_reaches_every_device_and_ends_on_the_fleet_topic() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::plain(dir.path());
    let url = m.url();
    let state = dir.path().join("state").display().to_string();
    let (key, pk) = operator_key(dir.path()).await;
    let specs = (0..10).map(|i| Spec::new(&format!("d{i:02}"))).collect();
    let ds = devices(m.port, specs, pk).await;
    let file = config_file(dir.path(), "new.toml", NEW);
    let extra = [
        "--canary",
        "10",
        "--waves",
        "3",
        "--halt-on",
        "20",
        "--min-devices",
        "1",
        "--wave-timeout",
        "10",
    ];
    let o = cli(&rollout_args(&url, &key, &state, &file, &extra)).await;
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    for want in [
        "waves of [1, 1, 2, 6]",
        "canary: sending to d00",
        "canary: 1 applied, 0 rejected, 0 timed out",
        "wave 3/3: 6 applied, 0 rejected, 0 timed out",
        "published version 1 retained on caidan/v1/demo/config",
        "cleared 10 rollout topic(s)",
        "completed",
        "applied (10): d00, d01",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    for d in &ds {
        assert_eq!(d.fleet_version(), Some(1), "{}", d.id);
        assert_eq!(
            d.rollout_versions(),
            vec![1],
            "{} got it on its rollout topic",
            d.id
        );
        assert!(is_new_settings(d));
    }
    let doc = retained_document(m.port, &topics::fleet_config(FLEET), &pk)
        .await
        .expect("the fleet topic holds the document");
    assert_eq!(doc.version, 1);
    assert!(is_new(&doc));
    assert!(
        retained(m.port, "caidan/v1/demo/d/+/config/rollout")
            .await
            .is_empty(),
        "rollout topics cleared"
    );
}

fn is_new_settings(d: &FakeDevice) -> bool {
    d.fleet_settings()
        .is_some_and(|s| s.get("brand_line") == Some(&json!("new")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejecting_canary_halts_and_rolls_back_the_devices_that_applied() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::plain(dir.path());
    let url = m.url();
    let state = dir.path().join("state").display().to_string();
    let (key, pk) = operator_key(dir.path()).await;
    let specs = (0..10)
        .map(|i| {
            let s = Spec::new(&format!("d{i:02}"));
            if i == 0 {
                s.rule(Rule::reject_if(is_new))
            } else {
                s
            }
        })
        .collect();
    let ds = devices(m.port, specs, pk).await;
    let old = config_file(dir.path(), "old.toml", OLD);
    let mut args = signing("push", &url, &key, &state);
    args.extend(["--target", "fleet", "--file", &old]);
    assert!(cli(&args).await.status.success());
    until("every device runs version 1", || {
        ds.iter().all(|d| d.fleet_version() == Some(1))
    })
    .await;

    let new = config_file(dir.path(), "new.toml", NEW);
    let extra = [
        "--canary",
        "30",
        "--waves",
        "2",
        "--halt-on",
        "30",
        "--min-devices",
        "3",
        "--wave-timeout",
        "10",
    ];
    let o = cli(&rollout_args(&url, &key, &state, &new, &extra)).await;
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{out}");
    assert!(
        err.contains("rollout halted: 1 of 3 finished devices failed"),
        "{err}"
    );
    for want in [
        "HALTED",
        "applied (2): d01, d02",
        "d00: invalid_for_profile: no printer for coupons",
        "not sent (7): d03",
        "rolled back to the settings of version 1 as version 3:",
        "    applied (2): d01, d02",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    for d in &ds[1..3] {
        assert_eq!(d.rollout_versions(), vec![2, 3], "{}", d.id);
        assert_eq!(d.fleet_version(), Some(3), "{}", d.id);
        let s = d.fleet_settings().unwrap();
        assert_eq!(
            s["brand_line"],
            json!("old"),
            "{} runs the old settings",
            d.id
        );
    }
    assert_eq!(
        ds[0].fleet_version(),
        Some(1),
        "the canary kept what it ran"
    );
    assert_eq!(ds[0].rollout_versions(), vec![2]);
    for d in &ds[3..] {
        assert!(
            d.rollout_versions().is_empty(),
            "{} was never sent it",
            d.id
        );
        assert_eq!(d.fleet_version(), Some(1));
    }
    let doc = retained_document(m.port, &topics::fleet_config(FLEET), &pk)
        .await
        .unwrap();
    assert_eq!(
        doc.version, 1,
        "the fleet topic still holds what ran before"
    );
    assert!(
        retained(m.port, "caidan/v1/demo/d/+/config/rollout")
            .await
            .is_empty()
    );

    // The next push numbers above the rolled-back version the devices report.
    let mut args = signing("push", &url, &key, &state);
    args.extend(["--target", "fleet", "--file", &old]);
    let o = cli(&args).await;
    assert_eq!(version_of(&stdout(&o)), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_times_out_and_counts_toward_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::plain(dir.path());
    let url = m.url();
    let state = dir.path().join("state").display().to_string();
    let (key, pk) = operator_key(dir.path()).await;
    let specs = ["d0", "d1", "d2", "d3"]
        .map(|id| {
            let s = Spec::new(id);
            if id == "d2" { s.rule(Rule::Silent) } else { s }
        })
        .to_vec();
    let ds = devices(m.port, specs, pk).await;
    let new = config_file(dir.path(), "new.toml", NEW);
    let extra = [
        "--canary",
        "25",
        "--waves",
        "1",
        "--halt-on",
        "25",
        "--min-devices",
        "2",
        "--wave-timeout",
        "3",
    ];
    let o = cli(&rollout_args(&url, &key, &state, &new, &extra)).await;
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{out}");
    assert!(err.contains("(0 rejected, 1 timed out)"), "{err}");
    for want in [
        "waves of [1, 3]",
        "wave 1/1: 2 applied, 0 rejected, 1 timed out",
        "timed out (1): d2",
        "rolled back to empty settings as version 2:",
        "    applied (3): d0, d1, d3",
        "    timed out (1): d2",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    for d in [&ds[0], &ds[1], &ds[3]] {
        assert_eq!(d.fleet_version(), Some(2), "{}", d.id);
        assert!(d.fleet_settings().unwrap().is_empty());
    }
    // The silent one keeps the rollback retained, so it lands on the old settings when it
    // answers again; the others' rollout topics are cleared.
    let left = retained(m.port, "caidan/v1/demo/d/+/config/rollout").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, topics::rollout_config(FLEET, "d2"));
    let env = caidan_sync::contract::Envelope::parse(&left[0].1).unwrap();
    let doc = env
        .verify(&caidan_sync::keys::TrustedKeys::new(vec![pk]))
        .unwrap()
        .document;
    assert_eq!(doc.version, 2);
    assert!(doc.settings.is_empty());
    assert!(
        retained(m.port, &topics::fleet_config(FLEET))
            .await
            .is_empty(),
        "a halted rollout never reaches the fleet topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_settings_before_the_retained_ones() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::plain(dir.path());
    let url = m.url();
    let state = dir.path().join("state").display().to_string();
    let (key, pk) = operator_key(dir.path()).await;
    let ds = devices(m.port, vec![Spec::new("d1"), Spec::new("d2")], pk).await;
    for (name, text) in [("old.toml", OLD), ("new.toml", NEW)] {
        let file = config_file(dir.path(), name, text);
        let mut args = signing("push", &url, &key, &state);
        args.extend(["--target", "fleet", "--file", &file]);
        assert!(cli(&args).await.status.success());
    }
    until("both run version 2", || {
        ds.iter().all(|d| d.fleet_version() == Some(2))
    })
    .await;

    let mut args = signing("rollback", &url, &key, &state);
    args.extend(["--target", "fleet", "--wait", "10"]);
    let o = cli(&args).await;
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(
        out.contains("rolled back caidan/v1/demo/config to the settings of version 1 as version 3"),
        "{out}"
    );
    assert!(out.contains("applied (2): d1, d2"), "{out}");
    let doc = retained_document(m.port, &topics::fleet_config(FLEET), &pk)
        .await
        .unwrap();
    assert_eq!(
        (doc.version, &doc.settings["brand_line"]),
        (3, &json!("old"))
    );
    for d in &ds {
        assert_eq!(d.fleet_settings().unwrap()["brand_line"], json!("old"));
    }

    args.extend(["--to-version", "2"]);
    let o = cli(&args).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = retained_document(m.port, &topics::fleet_config(FLEET), &pk)
        .await
        .unwrap();
    assert_eq!(
        (doc.version, &doc.settings["brand_line"]),
        (4, &json!("new"))
    );

    let mut args = signing("rollback", &url, &key, "/nonexistent/fresh-state");
    args.extend(["--target", "fleet"]);
    let o = cli(&args).await;
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no document before version 4"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_over_mutual_tls_with_the_data_banks_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pki = caidan_testkit::TestPki::new(dir.path());
    let m = Mosquitto::start(
        dir.path(),
        &format!("{}allow_anonymous true", pki.mosquitto_tls(true)),
    );
    let url = format!("mqtts://127.0.0.1:{}", m.port);
    let state = dir.path().join("state").display().to_string();
    let (key, _) = operator_key(dir.path()).await;
    let operator = pki.issue("operator", &[]);
    let file = config_file(dir.path(), "fleet.toml", OLD);
    let (ca, cert, tls_key) = (
        operator.ca.display().to_string(),
        operator.cert.display().to_string(),
        operator.key.display().to_string(),
    );
    let mut args = signing("push", &url, &key, &state);
    args.extend(["--target", "fleet", "--file", &file, "--mqtt-ca", &ca]);
    let o = cli(&args).await;
    assert!(!o.status.success(), "the broker wants a client certificate");
    assert!(
        stderr(&o).contains("cannot connect to the broker"),
        "{}",
        stderr(&o)
    );

    args.extend(["--mqtt-cert", &cert, "--mqtt-key", &tls_key]);
    let o = cli(&args).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(version_of(&stdout(&o)), 1);
    // A fresh history: version 2 can only come from reading the retained one over TLS.
    let fresh = dir.path().join("fresh").display().to_string();
    args[7] = &fresh;
    let o = cli(&args).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(version_of(&stdout(&o)), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_rollout_that_is_refused_restores_the_device_topic() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::plain(dir.path());
    let url = m.url();
    let state = dir.path().join("state").display().to_string();
    let (key, pk) = operator_key(dir.path()).await;
    let ds = devices(
        m.port,
        vec![
            Spec::new("d1").rule(Rule::reject_if(is_new)),
            Spec::new("d2"),
        ],
        pk,
    )
    .await;
    let old = config_file(dir.path(), "old.toml", OLD);
    let mut args = signing("push", &url, &key, &state);
    args.extend(["--target", "device:d1", "--file", &old]);
    assert!(cli(&args).await.status.success());
    until("d1 runs device version 1", || {
        ds[0].report().device == Some(1)
    })
    .await;

    let new = config_file(dir.path(), "new.toml", NEW);
    let mut args = signing("rollout", &url, &key, &state);
    args.extend([
        "--target",
        "device:d1",
        "--file",
        &new,
        "--wave-timeout",
        "10",
    ]);
    let o = cli(&args).await;
    let out = stdout(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("rollout of device:d1 version 2"), "{out}");
    assert!(
        out.contains("rolled back to the settings of version 1 as version 3:"),
        "{out}"
    );
    // A device layer's wave topic is its own config topic: it now holds the old settings.
    let topic = topics::device_config(FLEET, "d1");
    let doc = retained_document(m.port, &topic, &pk).await.unwrap();
    assert_eq!(
        (doc.version, &doc.settings["brand_line"]),
        (3, &json!("old"))
    );
    until("d1 runs device version 3", || {
        ds[0].report().device == Some(3)
    })
    .await;
    assert!(
        ds[1].received().iter().all(|r| r.topic != topic),
        "d2 never saw d1's layer"
    );
    assert!(
        retained(m.port, "caidan/v1/demo/d/+/config/rollout")
            .await
            .is_empty()
    );
}

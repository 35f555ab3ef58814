//! A full disk under the real agent: its data folder on a tiny tmpfs this test mounts
//! (root needed). New eggs get the budget's 507 `storage_full`, nothing is half-written,
//! and eggs resume once the file system is given room again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use caidan_testkit::AgentProc;
use caidan_testkit::agent::AgentOptions;
use serde_json::{Value, json};

/// A tmpfs mounted on a folder, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Cracks an egg with the screen's QR token, fetched again when it has gone stale (410).
async fn crack(http: &reqwest::Client, agent: &AgentProc, shopper: &str) -> (u16, Value) {
    static TOKEN: std::sync::Mutex<Option<Value>> = std::sync::Mutex::new(None);
    loop {
        let cached = TOKEN.lock().unwrap().clone();
        let token = match cached {
            Some(t) => t,
            None => {
                let url = format!("{}/api/v1/qr", agent.screen);
                let qr = caidan_testkit::get_json(http, &url, None).await;
                *TOKEN.lock().unwrap() = Some(qr["token"].clone());
                qr["token"].clone()
            }
        };
        let r = http
            .post(format!("{}/api/v1/eggs", agent.base))
            .json(&json!({ "token": token, "shopper": shopper }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 410 {
            *TOKEN.lock().unwrap() = None;
            continue;
        }
        return (status, r.json().await.unwrap_or(Value::Null));
    }
}

/// Claims and claim events agree and SQLite finds the file sound; returns the claims.
fn consistent(data: &Path) -> i64 {
    let path = caidan_agent::runtime::store_path(data);
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let claims = one("SELECT count(*) FROM claims");
    let events = one("SELECT count(*) FROM outbox WHERE type = 'com.caidan.claim'");
    assert_eq!(claims, events, "one claim event per claim");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_agent_on_a_full_disk_refuses_new_eggs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let disk = match Tmpfs::mount(&data, "512k") {
        Ok(d) => d,
        Err(reason) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "skipped: cannot mount a tmpfs here ({reason}); CI=true makes this a failure"
            );
            return;
        }
        Err(reason) => panic!("cannot mount a tmpfs for the full-disk test: {reason}"),
    };
    let agent = AgentProc::start_with(
        &data,
        AgentOptions {
            config_extra: Some(caidan_testkit::agent::LOAD_LIMITS.into()),
            ..AgentOptions::default()
        },
    );
    let http = reqwest::Client::new();
    let (answered, refused) = caidan_testkit::claims::until_refused(0..20_000, 507, |shopper| {
        let (http, agent) = (&http, &agent);
        async move { crack(http, agent, &shopper).await }
    })
    .await;
    let refused = refused.expect("the 512 KiB disk filled up");
    assert_eq!(refused["error"], "storage_full", "{refused}");
    assert!(answered > 0);
    let metrics = http
        .get(agent.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("caidan_store_fill_level 2"), "{metrics}");
    assert_eq!(
        consistent(&data),
        answered,
        "every answered claim, no other"
    );

    // Room again: within a few probes the claims resume.
    disk.resize("16m");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = crack(&http, &agent, "after-room").await;
        match status {
            201 => break,
            507 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            other => panic!("no claim after the disk grew: {other}: {body}"),
        }
    }
    let (status, body) = crack(&http, &agent, "and-another").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(consistent(&data), answered + 2);
    drop(agent);
}

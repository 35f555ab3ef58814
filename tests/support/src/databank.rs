//! The real `caidan-cloud databank` process, and what its store holds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::proc::Proc;
use crate::repo;

/// A running `caidan-cloud databank`, killed (`kill -9`) on drop.
pub struct DatabankProc {
    pub proc: Proc,
    pub store: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub http: String,
    /// `https://127.0.0.1:PORT`, when started with `--https`.
    pub https: Option<String>,
}

impl DatabankProc {
    /// A data bank on `mqtt` with its store `databank.db` in `dir`, the demo brands, client
    /// id `e2e-databank`, HTTP on a free port; `extra` arguments are appended.
    pub fn start(dir: &Path, mqtt: &str, extra: &[&str]) -> DatabankProc {
        DatabankProc::start_env(dir, mqtt, extra, &[])
    }

    /// [`DatabankProc::start`] with environment variables.
    pub fn start_env(dir: &Path, mqtt: &str, extra: &[&str], env: &[(&str, &str)]) -> DatabankProc {
        DatabankProc::start_full(
            dir,
            &dir.join("databank.db"),
            "e2e-databank",
            mqtt,
            extra,
            env,
        )
    }

    /// One of several data banks on one SQLite `store`: its log in `dir`, its own MQTT
    /// client id.
    pub fn start_on_store(
        dir: &Path,
        store: &Path,
        client_id: &str,
        mqtt: &str,
        extra: &[&str],
    ) -> DatabankProc {
        DatabankProc::start_full(dir, store, client_id, mqtt, extra, &[])
    }

    fn start_full(
        dir: &Path,
        store: &Path,
        client_id: &str,
        mqtt: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> DatabankProc {
        std::fs::create_dir_all(dir).expect("data bank folder");
        let store = store.to_path_buf();
        let mut cmd = Command::new(crate::bin::cloud());
        cmd.args(["databank", "--mqtt", mqtt, "--store"])
            .arg(format!("sqlite:{}", store.display()))
            .arg("--brands")
            .arg(repo::demo_brands())
            .arg("--ack-key")
            .arg(repo::demo_ack_key())
            .args(["--http", "127.0.0.1:0", "--client-id", client_id])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn_logged(&mut cmd, &dir.join("databank.log"))
            .expect("spawn caidan-cloud databank");
        let mut lines = BufReader::new(proc.child.stdout.take().expect("stdout")).lines();
        let mut https = None;
        let http = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!(
                    "caidan-cloud databank exited before serving:\n{}",
                    proc.log_text()
                ),
            };
            if let Some(addr) = line.strip_prefix("data bank https on ") {
                https = Some(format!("https://{}", addr.trim()));
            }
            if let Some(addr) = line.strip_prefix("data bank http on ") {
                break format!("http://{}", addr.trim());
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        DatabankProc {
            proc,
            store,
            http,
            https,
        }
    }

    fn open(&self) -> Option<rusqlite::Connection> {
        rusqlite::Connection::open_with_flags(
            &self.store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()
    }

    /// The latest retained state message the data bank kept for `device`, if any.
    pub fn device_state(&self, device: &str) -> Option<serde_json::Value> {
        let state: String = self
            .open()?
            .query_row(
                "SELECT state FROM devices WHERE device = ?1",
                [device],
                |r| r.get(0),
            )
            .ok()?;
        serde_json::from_str(&state).ok()
    }

    /// Event counts by type, and how many (device, epoch, seq) appear more than once.
    pub fn counts(&self) -> DatabankCounts {
        let Some(conn) = self.open() else {
            return DatabankCounts::default();
        };
        let q = |sql: &str| {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .unwrap_or(-1)
        };
        DatabankCounts {
            events: q("SELECT count(*) FROM events"),
            claims: q("SELECT count(*) FROM events WHERE type = 'com.caidan.claim'"),
            duplicate_seqs: q(
                "SELECT count(*) - count(DISTINCT device || '/' || epoch || '/' || seq) FROM events",
            ),
            epochs: q("SELECT count(DISTINCT epoch) FROM events"),
        }
    }
}

/// What the data bank's store holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DatabankCounts {
    pub events: i64,
    pub claims: i64,
    pub duplicate_seqs: i64,
    pub epochs: i64,
}

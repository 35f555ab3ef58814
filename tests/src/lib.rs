//! Workspace end-to-end tests: real processes, a real broker, kill -9. The tests live in
//! `tests/`; this library starts and stops the processes they need.
//!
//! The agent and data bank binaries are the ones `cargo test --workspace` builds next to
//! this test binary (`target/<profile>/`).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A workspace binary built by the same cargo invocation as this test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build --workspace`) so the binaries are built",
        path.display()
    );
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn wait_for_port(port: u16) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
        "nothing listening on {addr}"
    );
}

/// A child process killed (`kill -9`) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A Mosquitto process with its own config on its own port.
pub struct Mosquitto {
    pub port: u16,
    pub proc: Proc,
    dir: PathBuf,
    extra: String,
}

fn mosquitto_bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

impl Mosquitto {
    /// Starts Mosquitto on `port` without persistence; `extra` is appended to its config.
    pub fn start(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}\n"
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (apt-get install mosquitto)");
        wait_for_port(port);
        Mosquitto {
            port,
            proc: Proc { child },
            dir: dir.to_owned(),
            extra: extra.to_owned(),
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (losing everything it held) and starts a fresh one on the same port.
    pub fn restart(&mut self) {
        self.proc.kill9();
        let fresh = Mosquitto::start(&self.dir, self.port, &self.extra.clone());
        let Mosquitto { proc, .. } = fresh;
        self.proc = proc;
    }
}

/// A `caidan-agent run` process.
pub struct Agent {
    pub proc: Proc,
    pub base: String,
}

impl Agent {
    /// Runs the demo agent on a free port with its store in `data`, syncing to `mqtt`, with
    /// a short acknowledgement timeout so lost batches are resent quickly.
    pub fn start(data: &Path, mqtt: Option<&str>) -> Agent {
        std::fs::create_dir_all(data).unwrap();
        let config = data.with_extension("toml");
        let catalogue = data.with_extension("json");
        std::fs::write(&catalogue, caidan_agent::config::DEMO_CATALOGUE).unwrap();
        let text = caidan_agent::config::DEMO_CONFIG.replace(
            "catalogue = \"catalogue.json\"",
            &format!("catalogue = {:?}", catalogue.display().to_string()),
        );
        std::fs::write(
            &config,
            format!(
                "{text}\n[sync]\nack_timeout_ms = 2000\nlinger_ms = 50\nmax_backoff_ms = 1000\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(binary("caidan-agent"));
        cmd.arg("run").arg("--config").arg(&config);
        cmd.args(["--listen", "127.0.0.1:0", "--data"]).arg(data);
        if let Some(url) = mqtt {
            cmd.args(["--mqtt", url]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("agent printed its URL").unwrap();
            if let Some((_, url)) = line.split_once("listening on ") {
                break url.trim().to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Agent {
            proc: Proc { child },
            base,
        }
    }
}

/// A NATS server with JetStream and its MQTT listener, on free ports, in its own folder.
pub struct Nats {
    pub mqtt_port: u16,
    pub proc: Proc,
}

fn nats_bin() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

impl Nats {
    pub fn start(dir: &Path) -> Nats {
        let (port, mqtt_port) = (free_port(), free_port());
        let store = dir.join(format!("nats-{port}"));
        let conf = dir.join(format!("nats-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: caidan-test-{port}\nlisten: 127.0.0.1:{port}\n\
                 jetstream {{ store_dir: \"{}\" }}\nmqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n",
                store.display()
            ),
        )
        .unwrap();
        let child = Command::new(nats_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        wait_for_port(mqtt_port);
        Nats {
            mqtt_port,
            proc: Proc { child },
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt_port)
    }
}

/// A `caidan-cloud databank` process.
pub struct Databank {
    pub proc: Proc,
    pub store: PathBuf,
    pub http: String,
}

impl Databank {
    pub fn start(dir: &Path, mqtt: &str, extra: &[&str]) -> Databank {
        let store = dir.join("databank.db");
        let brands = dir.join("brands.toml");
        std::fs::write(&brands, caidan_cloud_sync::databank::brands::DEMO_BRANDS).unwrap();
        let port = free_port();
        let child = Command::new(binary("caidan-cloud"))
            .args(["databank", "--mqtt", mqtt, "--store"])
            .arg(format!("sqlite:{}", store.display()))
            .arg("--brands")
            .arg(&brands)
            .args([
                "--http",
                &format!("127.0.0.1:{port}"),
                "--client-id",
                "e2e-databank",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        Databank {
            proc: Proc { child },
            store,
            http: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Event counts by type, and how many (epoch, seq) pairs appear more than once.
    /// The latest retained state message the data bank kept for `device`, if any.
    pub fn device_state(&self, device: &str) -> Option<serde_json::Value> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        let state: String = conn
            .query_row(
                "SELECT state FROM devices WHERE device = ?1",
                [device],
                |r| r.get(0),
            )
            .ok()?;
        serde_json::from_str(&state).ok()
    }

    pub fn counts(&self) -> DatabankCounts {
        let Ok(conn) = rusqlite::Connection::open_with_flags(
            &self.store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
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

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DatabankCounts {
    pub events: i64,
    pub claims: i64,
    pub duplicate_seqs: i64,
    pub epochs: i64,
}

/// Outbox depth and last sequence of an agent store, read from outside the process.
pub fn agent_outbox(data: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("agent.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let depth = conn
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    let last = conn
        .query_row(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (depth, last)
}

/// The QR token an agent shows now.
async fn current_token(http: &reqwest::Client, base: &str) -> Option<String> {
    let qr: serde_json::Value = http
        .get(format!("{base}/api/v1/qr"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(qr["token"].as_str()?.to_owned())
}

/// Claims `n` eggs for distinct shoppers through the agent's HTTP API, `parallel` at a time.
/// Like a phone, a worker whose token went stale (410) scans the screen again. Returns how
/// many claims were answered; a worker stops at the first connection error.
pub async fn claim_many(base: &str, prefix: &str, n: usize, parallel: usize) -> usize {
    let http = reqwest::Client::new();
    let Some(token) = current_token(&http, base).await else {
        return 0;
    };
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (http, base, next, prefix) = (
            http.clone(),
            base.to_owned(),
            next.clone(),
            prefix.to_owned(),
        );
        let mut token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            let mut i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            while i < n {
                let r = http
                    .post(format!("{base}/api/v1/eggs"))
                    .json(
                        &serde_json::json!({ "token": token, "shopper": format!("{prefix}-{i}") }),
                    )
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => ok += 1,
                    Ok(r) if r.status().as_u16() == 410 => {
                        match current_token(&http, &base).await {
                            Some(t) => {
                                token = t;
                                continue;
                            }
                            None => break,
                        }
                    }
                    _ => break,
                }
                i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

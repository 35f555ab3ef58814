//! The real `caidan-agent run` process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::proc::Proc;
use crate::repo;

/// `[limits]` lifted for load driven from one address (the tests' crowd of phones is one
/// process on loopback); the tests of the limits themselves run on the defaults.
pub const LOAD_LIMITS: &str = "[limits]\n\
    eggs_per_client = { per_minute = 1000000, burst = 100000 }\n\
    eggs_per_shopper = { per_minute = 1000000, burst = 100000 }\n\
    scans_per_client = { per_minute = 1000000, burst = 100000 }\n\
    claims_per_minute = 1000000\n\
    max_connections = 4096\n\
    max_connections_per_client = 4096\n";

/// How to start an agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// `--mqtt` URL; none keeps the agent offline.
    pub mqtt: Option<String>,
    /// Lines appended to the demo config (TOML tables such as `[sync]`). `None` runs the
    /// agent without `--config`, on its built-in demo config.
    pub config_extra: Option<String>,
    /// More arguments after `run`.
    pub args: Vec<String>,
    /// Environment variables for the process.
    pub env: Vec<(String, String)>,
    /// The offer catalogue (JSON) in place of the demo one, with `config_extra`.
    pub catalogue: Option<String>,
    /// `(from, to)` text replacements in the demo config, with `config_extra`.
    pub config_edits: Vec<(String, String)>,
    /// A command the agent is started under, e.g. `ip netns exec NS` (see
    /// [`crate::netns::Netns::exec_prefix`]); it must exec the agent, not fork it.
    pub prefix: Vec<String>,
    /// The address both listeners bind (port 0 each); loopback when `None`.
    pub listen_ip: Option<std::net::IpAddr>,
}

impl AgentOptions {
    /// The demo config with short sync timers, so lost batches are resent quickly.
    pub fn fast_sync(mqtt: Option<&str>) -> AgentOptions {
        AgentOptions {
            mqtt: mqtt.map(str::to_owned),
            config_extra: Some(format!(
                "[sync]\nack_timeout_ms = 2000\nlinger_ms = 50\nmax_backoff_ms = 1000\n\n{LOAD_LIMITS}"
            )),
            ..AgentOptions::default()
        }
    }
}

/// A running `caidan-agent run`, killed (`kill -9`) on drop.
pub struct AgentProc {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`: shoppers and staff.
    pub base: String,
    /// The screen listener: screen page, current QR token, `/metrics`.
    pub screen: String,
    pub data: PathBuf,
    /// Everything the agent printed on stdout so far.
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl AgentProc {
    /// The demo agent with its store in `data`, syncing to `mqtt` with short timers.
    pub fn start(data: &Path, mqtt: Option<&str>) -> AgentProc {
        AgentProc::start_with(data, AgentOptions::fast_sync(mqtt))
    }

    /// An agent on a free port with its store in `data`; stderr goes to `data.log`.
    pub fn start_with(data: &Path, opts: AgentOptions) -> AgentProc {
        std::fs::create_dir_all(data).expect("agent data folder");
        let mut cmd = match opts.prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(crate::bin::agent());
                cmd
            }
            None => Command::new(crate::bin::agent()),
        };
        cmd.arg("run");
        if let Some(extra) = &opts.config_extra {
            let config = data.with_extension("toml");
            let catalogue = data.with_extension("json");
            let text = opts.catalogue.clone().unwrap_or_else(repo::demo_catalogue);
            std::fs::write(&catalogue, text).expect("write catalogue");
            let mut text = repo::demo_agent_config().replace(
                "catalogue = \"catalogue.json\"",
                &format!("catalogue = {:?}", catalogue.display().to_string()),
            );
            for (from, to) in &opts.config_edits {
                assert!(text.contains(from.as_str()), "demo config has no {from:?}");
                text = text.replace(from.as_str(), to);
            }
            std::fs::write(&config, format!("{text}\n{extra}\n")).expect("write config");
            cmd.arg("--config").arg(&config);
        }
        let listen = std::net::SocketAddr::new(
            opts.listen_ip
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            0,
        )
        .to_string();
        cmd.args(["--listen", &listen, "--screen-listen", &listen, "--data"])
            .arg(data);
        if let Some(url) = &opts.mqtt {
            cmd.args(["--mqtt", url]);
        }
        cmd.args(&opts.args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped());
        let mut proc =
            Proc::spawn_logged(&mut cmd, &data.with_extension("log")).expect("spawn caidan-agent");
        let mut lines = BufReader::new(proc.child.stdout.take().expect("stdout")).lines();
        let mut banner = Vec::new();
        let (mut base, mut screen) = (None, None);
        while base.is_none() || screen.is_none() {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("caidan-agent exited before listening:\n{}", proc.log_text()),
            };
            banner.push(line.clone());
            if let Some((_, url)) = line.split_once("listening on ") {
                base = Some(url.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("screen:") {
                let url = rest.split_whitespace().next().unwrap_or_default();
                screen = Some(url.trim_end_matches('/').to_owned());
            }
        }
        let (base, screen) = (base.unwrap_or_default(), screen.unwrap_or_default());
        // Keep reading so the agent never blocks on a full pipe.
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(banner));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        AgentProc {
            proc,
            base,
            screen,
            data: data.to_owned(),
            stdout,
        }
    }

    /// What the agent printed on stdout so far (its banner).
    pub fn stdout_text(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Where the agent serves `/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.screen)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }
}

/// Outbox depth and last sequence number of an agent store, read from outside the process.
pub fn agent_outbox(data: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("agent.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("agent store");
    let depth = conn
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .expect("outbox depth");
    let last = conn
        .query_row(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
            [],
            |r| r.get(0),
        )
        .expect("outbox high-water mark");
    (depth, last)
}

/// The store epoch of an agent store, read from outside the process.
pub fn agent_epoch(data: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("agent.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("agent store");
    conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
        r.get(0)
    })
    .expect("the store's epoch")
}

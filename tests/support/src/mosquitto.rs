//! A real Mosquitto on a free loopback port, with its own config and log.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net::{free_port, listening, loopback};
use crate::proc::{Proc, require};
use crate::wait::wait_until;

/// Tries before giving up when ports chosen free were taken by the time Mosquitto bound them.
const PORT_TRIES: usize = 5;

/// A Mosquitto process, killed on drop. Persistence is off: a restart loses what it held.
pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    extra: String,
    /// Another address it listens on, same port (a veth's host end).
    also_on: Option<IpAddr>,
    proc: Option<Proc>,
}

impl Mosquitto {
    /// Starts Mosquitto on a free port with `extra` config lines after the listener line
    /// (TLS options, `allow_anonymous`, an `acl_file` ...). Retries on another port when
    /// the chosen one was taken in the meantime.
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
        for _ in 0..PORT_TRIES {
            let mut m = Mosquitto::configure(dir, free_port(), extra);
            if m.spawn() {
                return m;
            }
        }
        panic!("mosquitto did not start on any of {PORT_TRIES} free ports; see {dir:?}");
    }

    /// Anonymous clients allowed, plaintext.
    pub fn plain(dir: &Path) -> Mosquitto {
        Mosquitto::start(dir, "allow_anonymous true")
    }

    /// Anonymous and plaintext, listening on `addr` as well as loopback, same port: for an
    /// agent in a network namespace that reaches the host through a veth.
    pub fn plain_also_on(dir: &Path, addr: IpAddr) -> Mosquitto {
        for _ in 0..PORT_TRIES {
            let mut m = Mosquitto::configure(dir, free_port(), "allow_anonymous true");
            m.also_on = Some(addr);
            if m.spawn() {
                return m;
            }
        }
        panic!("mosquitto did not start on any of {PORT_TRIES} free ports; see {dir:?}");
    }

    /// Starts on a given port (a test that hands the URL to an agent before the broker is up).
    pub fn start_on(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        let mut m = Mosquitto::configure(dir, port, extra);
        assert!(m.spawn(), "mosquitto did not start on port {port}");
        m
    }

    fn configure(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        Mosquitto {
            port,
            dir: dir.to_owned(),
            extra: extra.to_owned(),
            also_on: None,
            proc: None,
        }
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.join(format!("mosquitto-{}.conf", self.port))
    }

    /// The broker's log (errors, warnings, notices).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("mosquitto-{}.log", self.port))
    }

    /// Starts the process and waits until it listens; `false` when it exited first.
    fn spawn(&mut self) -> bool {
        // `user root` matters only when the tests run as root: Mosquitto then keeps reading
        // the files in this private folder instead of switching to the `mosquitto` user.
        let also = self
            .also_on
            .map(|a| format!("listener {} {a}\n", self.port))
            .unwrap_or_default();
        let text = format!(
            "listener {port} 127.0.0.1\n{also}persistence false\nuser root\n\
             log_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\n{extra}\n",
            port = self.port,
            log = self.log_path().display(),
            extra = self.extra,
        );
        std::fs::write(self.conf_path(), text).expect("write mosquitto.conf");
        let child = Command::new(require("mosquitto", "mosquitto"))
            .arg("-c")
            .arg(self.conf_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let mut proc = Proc { child, log: None };
        let addr = loopback(self.port);
        let also = self.also_on.map(|a| SocketAddr::new(a, self.port));
        let up = wait_until(Duration::from_secs(10), || {
            (listening(addr) && also.is_none_or(listening)) || proc.exited()
        }) && !proc.exited();
        if up {
            self.proc = Some(proc);
        }
        up
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `mqtt://ADDR:PORT` for the extra listener of [`Mosquitto::plain_also_on`].
    pub fn url_on(&self, addr: IpAddr) -> String {
        format!("mqtt://{addr}:{}", self.port)
    }

    /// Kills the broker (`kill -9`); everything it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Kills the broker and starts a fresh one on the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "mosquitto did not come back on {}", self.port);
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

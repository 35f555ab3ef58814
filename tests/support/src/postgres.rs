//! A private PostgreSQL cluster for one test: `initdb` in a fresh folder, `postgres` on a
//! free loopback port (TCP only, trust authentication), killed on drop. Never the
//! machine's own server on 5432, never its state.
//!
//! PostgreSQL refuses to run as root: under root the cluster runs as `nobody` through
//! `setpriv`, in a folder owned by it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net::{free_port, listening, loopback};
use crate::proc::Proc;
use crate::wait::wait_until;

/// The superuser of the test clusters.
pub const USER: &str = "caidan";

/// A running private cluster.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    proc: Proc,
    _dir: tempfile::TempDir,
}

/// The newest `/usr/lib/postgresql/N/bin` with `initdb`, else the folder `initdb` is in on
/// `PATH`; a panic that says how to get it when there is none.
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .or_else(|| {
            crate::proc::find_on_path("initdb").and_then(|p| p.parent().map(Path::to_owned))
        })
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed: run .ci/test (it installs what the tests need) \
                 or `apt-get install postgresql`"
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `cmd` run as `nobody` when this process is root.
fn as_cluster_owner(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Makes and starts a cluster; `settings` are extra `-c name=value` options.
    pub fn start(settings: &[&str]) -> Postgres {
        let bin = bin_dir();
        let root = is_root();
        // Under /tmp itself: a TMPDIR only root may enter would lock `nobody` out.
        let dir = tempfile::Builder::new()
            .prefix("caidan-pg-")
            .tempdir_in(if root {
                "/tmp".into()
            } else {
                std::env::temp_dir()
            })
            .expect("temp dir");
        let data = dir.path().join("data");
        if root {
            let owner = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "nobody"])
                    .output()
                    .expect("id");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("uid of nobody")
            };
            std::os::unix::fs::chown(dir.path(), Some(owner("-u")), Some(owner("-g")))
                .expect("chown the cluster folder to nobody");
        }
        let init = as_cluster_owner(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let log = dir.path().join("postgres.log");
        std::fs::write(&log, "").expect("log file");
        if root {
            let _ = Command::new("chown").arg("nobody").arg(&log).status();
        }
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = as_cluster_owner(&bin.join("postgres"), root);
            cmd.arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k", ""])
                .args(["-c", "listen_addresses=127.0.0.1"]);
            for s in settings {
                cmd.args(["-c", s]);
            }
            cmd.stdout(Stdio::null());
            let mut proc = Proc::spawn_logged(&mut cmd, &log).expect("spawn postgres");
            let up = wait_until(Duration::from_secs(30), || {
                proc.exited() || (listening(loopback(port)) && ready(&bin, port))
            });
            if up && !proc.exited() {
                return Postgres {
                    port,
                    bin,
                    proc,
                    _dir: dir,
                };
            }
        }
        panic!(
            "postgres did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// `postgres://caidan@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `db` and returns its URL.
    pub fn create_db(&self, db: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
        self.url(db)
    }

    /// Runs `sql` in `db` with psql; its unaligned, tuples-only output. Panics on an error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                db,
            ])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

fn ready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

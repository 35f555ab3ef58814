//! Child processes that die with the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::wait_until;

/// A child process killed with SIGKILL (`kill -9`) when dropped, also when a test fails.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    /// Where its stderr goes, when captured.
    pub log: Option<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` with stdout as given by the caller and stderr appended to `log`.
    pub fn spawn_logged(cmd: &mut Command, log: &Path) -> std::io::Result<Proc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = cmd.stderr(Stdio::from(file)).spawn()?;
        Ok(Proc {
            child,
            log: Some(log.to_owned()),
        })
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for the process to exit; its exit code, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} {} failed", self.child.id());
    }

    /// What the process wrote to its log so far.
    pub fn log_text(&self) -> String {
        self.log
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Finds `name` on `PATH`, then in the sbin folders Debian installs daemons to (on `PATH` for
/// root, not always for others).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// [`find_on_path`], or a panic that says how to get it.
pub fn require(name: &str, package: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| {
        panic!(
            "{name} is not installed: run .ci/test (it installs what the tests need) \
             or `apt-get install {package}`"
        )
    })
}

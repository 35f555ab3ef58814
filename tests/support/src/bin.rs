//! The workspace's real binaries, as the running test's cargo profile built them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Binaries already brought up to date by this test process.
static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `target/<profile>/`, the folder of the running test binary's parent.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary under target/<profile>/deps")
        .to_owned()
}

/// Path of the workspace binary `name` of package `package`, brought up to date once per
/// test process: a test run with `-p` builds only that package's own binaries, and an
/// older build left in `target/` must not stand in for the code under test.
pub fn binary(package: &str, name: &str) -> PathBuf {
    let dir = profile_dir();
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package, "--bin", name]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.current_dir(crate::repo::root()).status();
        assert!(
            status.is_ok_and(|s| s.success()) && path.exists(),
            "could not build {package}/{name} into {}",
            dir.display()
        );
        built.push(name.to_owned());
    }
    path
}

/// The `caidan-agent` binary.
pub fn agent() -> PathBuf {
    binary("caidan-agent", "caidan-agent")
}

/// The `caidan-cloud` binary.
pub fn cloud() -> PathBuf {
    binary("caidan-cloud", "caidan-cloud")
}

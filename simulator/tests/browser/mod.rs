//! Opening a report in headless Chromium (tests/report_check.mjs through playwright-core)
//! and reading what it saw.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The JSON line `report_check.mjs` prints for `page`: errors, figures drawn, images loaded.
pub fn open(page: &Path) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is missing: run .ci/test (it installs chromium, Node.js and playwright-core)"
    );
    let out = Command::new("node")
        .arg(root.join("simulator/tests/report_check.mjs"))
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .args(std::env::var_os("REPORT_SCREENSHOT"))
        .output()
        .expect("node runs (installed by .ci/test)");
    assert!(
        out.status.success(),
        "browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("the script's JSON line"),
    )
    .unwrap()
}

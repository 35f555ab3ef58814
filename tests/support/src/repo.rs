//! Files of this repository the tests use: the demo config, catalogue and brands.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support sits two levels below the workspace root")
        .to_owned()
}

/// A file of the repository, read whole.
pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The demo agent config (`agent/demo/agent.toml`).
pub fn demo_agent_config() -> String {
    read("agent/demo/agent.toml")
}

/// The demo offer catalogue (`agent/demo/catalogue.json`).
pub fn demo_catalogue() -> String {
    read("agent/demo/catalogue.json")
}

/// The demo brands of the data bank (`cloud-sync/cloud/examples/databank/brands.toml`).
pub fn demo_brands() -> PathBuf {
    root().join("cloud-sync/cloud/examples/databank/brands.toml")
}

/// The demo acknowledgement signing key of the data bank, trusted by the demo agent config.
pub fn demo_ack_key() -> PathBuf {
    root().join("cloud-sync/cloud/examples/databank/ack.key")
}

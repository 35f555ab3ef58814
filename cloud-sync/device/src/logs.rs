//! Log output of the Caidan binaries: human-readable by default, JSON lines with a flag,
//! always on stderr so stdout carries only what a script reads (addresses, tables).

/// Installs the global subscriber. `RUST_LOG` wins over `default_filter`.
pub fn init(json: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

//! The agent's HTTPS client: reqwest on rustls, trusting the CA file from config (or the
//! bundled web roots without one), no redirects.

use std::path::PathBuf;
use std::time::Duration;

use caidan_sync::tls::{TlsFiles, client_config};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("TLS: {0}")]
    Tls(#[from] caidan_sync::tls::TlsError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A client for `url`'s scheme: with `https://`, TLS from `ca` and HTTPS only.
pub fn client(
    url: &str,
    ca: Option<PathBuf>,
    timeout: Duration,
) -> Result<reqwest::Client, HttpsError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("caidan-agent/", env!("CARGO_PKG_VERSION")));
    if url.starts_with("https://") {
        let tls = client_config(&TlsFiles {
            ca,
            ..TlsFiles::default()
        })?;
        builder = builder.use_preconfigured_tls(tls).https_only(true);
    }
    Ok(builder.build()?)
}

//! The data bank's HTTPS listener: the same routes as plain HTTP behind rustls (ring, TLS
//! 1.2 and 1.3, HTTP/1.1), with the certificate chain and key read once at start.
//!
//! tokio-rustls and hyper-util rather than a server wrapper crate: they are what axum and
//! hyper themselves build on, maintained by the rustls and hyper projects, already in the
//! dependency tree, and let the provider be ring like every other TLS use here.
//!
//! Each connection has a deadline for its TLS handshake and for each request's headers, and
//! at most [`MAX_CONNECTIONS`] are open at once (one over it is closed as it arrives), so
//! silent sockets cannot pile up. A shutdown signal stops accepting and lets open requests
//! finish.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use caidan_sync::tls::{TlsError, read_certs, read_key};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// Most HTTPS connections open at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// A client must finish its TLS handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests may take to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to listen for HTTPS and with which identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key: PathBuf,
}

/// Why the HTTPS listener did not start.
#[derive(Debug, Error)]
pub enum HttpsError {
    #[error("HTTPS certificate or key: {0}")]
    Files(#[source] TlsError),
    #[error("HTTPS certificate {cert} and key {key} refused: {source}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot listen for HTTPS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A server configuration presenting the chain in `cert` with the key in `key`; fails on
/// unreadable or garbled files and on a key that is not the certificate's.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, HttpsError> {
    let chain = read_certs(cert).map_err(HttpsError::Files)?;
    let private = read_key(key).map_err(HttpsError::Files)?;
    let identity = |source| HttpsError::Identity {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(identity)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(identity)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A bound HTTPS listener, ready to serve.
pub struct HttpsListener {
    listener: TcpListener,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
}

impl HttpsListener {
    /// Reads the identity, then binds: bad files fail before the port is taken.
    pub async fn bind(cfg: &HttpsConfig) -> Result<HttpsListener, HttpsError> {
        let config = server_config(&cfg.cert, &cfg.key)?;
        let bind = |source| HttpsError::Bind {
            addr: cfg.listen,
            source,
        };
        let listener = TcpListener::bind(cfg.listen).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        Ok(HttpsListener {
            listener,
            addr,
            acceptor: TlsAcceptor::from(config),
        })
    }

    /// The address bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `app` until `shutdown` turns true, then waits briefly for open requests.
    pub async fn serve(self, app: Router, mut shutdown: watch::Receiver<bool>) {
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: let open connections finish first.
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "HTTPS connection cap reached: closing a new connection");
                continue;
            };
            let acceptor = self.acceptor.clone();
            let service = TowerToHyperService::new(app.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _permit = permit;
                let tls =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%peer, error = %e, "HTTPS connection ended");
                }
            });
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("HTTPS requests still open at shutdown were cut");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_identity_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let pki = caidan_testkit::TestPki::new(dir.path());
        let server = pki.identity("server");
        let other = pki.issue("other", &["localhost"]);
        assert!(server_config(&server.cert, &server.key).is_ok());

        let missing = dir.path().join("missing.pem");
        let e = server_config(&missing, &server.key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem at all\n").unwrap();
        let e = server_config(&garbage, &server.key)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("garbage.pem") && e.contains("no certificate"),
            "{e}"
        );
        let e = server_config(&server.cert, &garbage)
            .unwrap_err()
            .to_string();
        assert!(e.contains("garbage.pem"), "{e}");
        // A certificate's key swapped for another's.
        let e = server_config(&server.cert, &other.key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.pem") && e.contains("other.key"), "{e}");
    }
}

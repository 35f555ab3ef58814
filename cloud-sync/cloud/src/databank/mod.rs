//! The data bank: ingests event batches from MQTT into SQLite or PostgreSQL exactly once, acknowledges
//! them per device and epoch, keeps each touchpoint's latest stock, and serves each brand
//! its AIPL funnel and each fleet its stock over HTTP and, optionally, HTTPS.

pub mod auth;
mod checkpoint;
pub mod funnel;
pub mod http;
pub mod https;
pub mod ingest;
pub mod metrics;
pub mod nearby;
pub mod seqs;
pub mod store;
pub mod timeline;
pub mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use auth::Access;
use caidan_sync::broker_url::BrokerUrlError;
use caidan_sync::clock::Clock;
pub use https::HttpsConfig;
use https::{HttpsError, HttpsListener};
pub use ingest::IngestConfig;
use metrics::Metrics;
use store::pg::{PgOptions, PgStore};
use store::{Store, StoreError};

/// Why the data bank did not start.
#[derive(Debug, Error)]
pub enum DatabankError {
    #[error("store {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("cannot listen for HTTP on {addr}: {source}")]
    HttpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error(transparent)]
    Broker(#[from] BrokerUrlError),
    #[error(transparent)]
    Https(#[from] HttpsError),
}

/// Everything a data bank needs to run.
#[derive(Clone)]
pub struct DatabankConfig {
    pub ingest: IngestConfig,
    pub store: StoreUrl,
    pub http_listen: SocketAddr,
    /// An HTTPS listener beside the plain one, when set.
    pub https: Option<HttpsConfig>,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
}

/// Where the data bank keeps its events.
#[derive(Debug, Clone)]
pub enum StoreUrl {
    /// One SQLite file (the default).
    Sqlite(PathBuf),
    /// A PostgreSQL database several data banks may share.
    Postgres(PgOptions),
}

impl std::fmt::Display for StoreUrl {
    /// The path, or the PostgreSQL URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Postgres(o) => {
                let url = &o.url;
                match (url.find("://"), url.rfind('@')) {
                    (Some(s), Some(at)) if at > s => {
                        let user = &url[s + 3..at];
                        let user = user.split(':').next().unwrap_or_default();
                        write!(f, "{}{user}@{}", &url[..s + 3], &url[at + 1..])
                    }
                    _ => f.write_str(url),
                }
            }
        }
    }
}

/// Turns `sqlite:PATH` or `postgres://...` (`postgresql://...`) into a [`StoreUrl`].
pub fn parse_store_url(url: &str) -> Result<StoreUrl, DatabankError> {
    let bad = |reason| DatabankError::BadUrl {
        url: StoreUrl::Postgres(PgOptions {
            url: url.to_owned(),
            retention_days: None,
        })
        .to_string(),
        reason,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        url.parse::<postgres::Config>()
            .map_err(|_| bad("not a valid PostgreSQL connection URL"))?;
        return Ok(StoreUrl::Postgres(PgOptions {
            url: url.to_owned(),
            retention_days: None,
        }));
    }
    url.strip_prefix("sqlite:")
        .filter(|p| !p.is_empty())
        .map(|p| StoreUrl::Sqlite(PathBuf::from(p)))
        .ok_or_else(|| bad("expected sqlite:PATH or postgres://USER@HOST:PORT/DATABASE"))
}

/// A running data bank.
pub struct Databank {
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    /// Event batches come from a NATS queue group.
    nats: bool,
    shutdown: watch::Sender<bool>,
    ingest: JoinHandle<()>,
    http: JoinHandle<()>,
    https: Option<JoinHandle<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Databank {
    /// Opens the store, binds HTTP and starts ingesting. Must run inside a tokio runtime.
    pub async fn start(cfg: DatabankConfig) -> Result<Databank, DatabankError> {
        let store_err = |source| DatabankError::Store {
            path: cfg.store.to_string(),
            source,
        };
        if let StoreUrl::Sqlite(path) = &cfg.store
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| store_err(StoreError::Io(e)))?;
        }
        // Bad TLS files fail here, before anything is opened.
        let opts = cfg.ingest.mqtt_options()?;
        let https_listener = match &cfg.https {
            Some(h) => Some(HttpsListener::bind(h).await?),
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (writer, writer_thread, reader) = match &cfg.store {
            StoreUrl::Sqlite(path) => {
                let store = Store::open(path, cfg.clock.clone()).map_err(store_err)?;
                let (w, t) = writer::spawn(store, metrics.clone(), 4096, done_tx)
                    .map_err(DatabankError::Thread)?;
                (w, t, http::Reader::sqlite(path.clone()))
            }
            StoreUrl::Postgres(options) => {
                // The sync client runs its own small runtime: it must not be made on one
                // of tokio's worker threads.
                let (o, clock) = (options.clone(), cfg.clock.clone());
                let store = tokio::task::spawn_blocking(move || PgStore::open(o, clock))
                    .await
                    .map_err(|e| DatabankError::Thread(std::io::Error::other(e)))?
                    .map_err(store_err)?;
                let reader = http::Reader::postgres(&options.url).map_err(store_err)?;
                let (w, t) = writer::spawn(store, metrics.clone(), 4096, done_tx)
                    .map_err(DatabankError::Thread)?;
                (w, t, reader)
            }
        };

        let listener = tokio::net::TcpListener::bind(cfg.http_listen)
            .await
            .map_err(|source| DatabankError::HttpBind {
                addr: cfg.http_listen,
                source,
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| DatabankError::HttpBind {
                addr: cfg.http_listen,
                source,
            })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let api = http::router(http::ApiState::new(
            Arc::new(cfg.access),
            metrics.clone(),
            reader,
            cfg.clock.clone(),
        ));
        let https_addr = https_listener.as_ref().map(HttpsListener::local_addr);
        let https = https_listener.map(|l| tokio::spawn(l.serve(api.clone(), shutdown_rx.clone())));
        let mut http_shutdown = shutdown_rx.clone();
        let http = tokio::spawn(async move {
            let stop = async move {
                let _ = http_shutdown.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, api)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(%http_addr, https_addr = ?https_addr, store = %cfg.store, broker = %cfg.ingest.broker, filter = %cfg.ingest.events_filter(), nats = ?cfg.ingest.nats, "data bank started");
        let nats = cfg.ingest.nats.is_some();
        let ingest = tokio::spawn(ingest::run(
            cfg.ingest,
            opts,
            writer,
            done_rx,
            metrics.clone(),
            cfg.clock.clone(),
            shutdown_rx,
        ));
        Ok(Databank {
            http_addr,
            https_addr,
            metrics,
            nats,
            shutdown,
            ingest,
            http,
            https,
            writer: Some(writer_thread),
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the HTTPS API listens, when it does.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Live counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Waits until the broker has confirmed the event and state subscriptions of the current
    /// connection, at most `limit`; `false` when it has not by then. Until it has, a plain
    /// (not shared, not yet persistent) subscription misses what devices publish.
    pub async fn wait_subscribed(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let connects = self.metrics.broker_connects.load(Ordering::Relaxed);
            let nats_ok = !self.nats || self.metrics.nats_subscribed.load(Ordering::Relaxed) > 0;
            if nats_ok
                && connects > 0
                && self.metrics.broker_subscribes.load(Ordering::Relaxed) >= connects
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Whether the ingest loop is still running.
    pub fn is_running(&self) -> bool {
        !self.ingest.is_finished()
    }

    /// Stops ingesting and serving; committed work is flushed and acknowledged first.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let _ = (&mut self.ingest).await;
        let _ = (&mut self.http).await;
        if let Some(https) = self.https.as_mut() {
            let _ = https.await;
        }
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }
}

//! Assembles a running agent from its config: store writer, HTTP server, impression
//! flushing, and a single shutdown signal that reaches each of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::clock::{Clock, GuardedClock};
use caidan_sync::tls::TlsFiles;
use caidan_sync::uplink::{CONFIG_QUEUE, INBOUND_QUEUE, UplinkHandle, UplinkLinks, spawn_uplink};

use crate::catalogue::{Catalogue, CatalogueError, CatalogueFile};
use crate::claim::ClaimSigner;
use crate::config::AgentConfig;
use crate::display::fbdev::DisplayTarget;
use crate::display::panel::{Panel, PanelError};
use crate::elsewhere::{Elsewhere, ElsewhereError};
use crate::engine::Touchpoint;
use crate::fleet;
use crate::http::serve::{self, ServeLimits};
use crate::http::{self, AppState, Impressions, Metrics, StaffSessions, WrongCodes};
use crate::inventory::dispenser::{Dispenser, SimulatedDispenser};
use crate::limits::Limiters;
use crate::outbox::{StoreOutbox, uplink_config};
use crate::pickup::PickupHasher;
use crate::shopper::ShopperHasher;
use crate::store::writer::Writer;
use crate::store::{Identity, StoreError, WriterHandle};
use crate::token::TokenSigner;

/// File name of the agent store inside the data folder.
pub const STORE_FILE: &str = "agent.db";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("cannot create data folder {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Uplink(#[from] caidan_sync::uplink::UplinkError),
    #[error(transparent)]
    Display(#[from] PanelError),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Elsewhere(#[from] ElsewhereError),
}

/// The store path for a data folder.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STORE_FILE)
}

/// Who this device is for targeting; capabilities come from its firmware profile.
pub fn touchpoint(cfg: &AgentConfig) -> Touchpoint {
    let capabilities = cfg.profile().capabilities();
    Touchpoint {
        device: cfg.device.id.clone(),
        scene: cfg.device.scene,
        region: cfg.device.region.clone(),
        capabilities,
    }
}

/// Reads a catalogue file without parsing it.
pub fn read_catalogue_file(path: &Path) -> Result<CatalogueFile, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(CatalogueFile {
        text,
        origin: path.display().to_string(),
    })
}

/// Reads and validates a catalogue file.
pub fn read_catalogue(path: &Path) -> Result<Catalogue, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Catalogue::from_json(&text, &path.display().to_string())?)
}

/// Gives the heap's free pages back to the system. A catalogue import parses megabytes of
/// JSON once; without this the allocator keeps them and the idle agent stays larger
/// than one that started from the store.
#[allow(unsafe_code)] // the crate's one unsafe call, below
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; no Rust object is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The touchpoint's dispenser, when its profile has dispenser slots.
pub fn dispenser(cfg: &AgentConfig) -> Option<Arc<dyn Dispenser>> {
    (cfg.profile().actuators.dispenser_slots > 0)
        .then(|| Arc::new(SimulatedDispenser::new(&cfg.dispenser)) as Arc<dyn Dispenser>)
}

/// Opens the store of `cfg` under `data_dir` and starts its writer.
pub fn open_writer(
    cfg: &AgentConfig,
    data_dir: &Path,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    dispenser: Option<Arc<dyn Dispenser>>,
) -> Result<(WriterHandle, std::thread::JoinHandle<()>), AgentError> {
    std::fs::create_dir_all(data_dir).map_err(|source| AgentError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let identity = Identity {
        fleet: cfg.device.fleet.clone(),
        touchpoint: touchpoint(cfg),
        tz: cfg.timezone(),
        claims_per_window: cfg.claims_per_window(),
        pickups: PickupHasher::new(cfg.secrets.fleet_secret.clone()),
        dispenser,
        boot: clock.status().map(|s| s.boot),
    };
    Ok(Writer::spawn(
        &store_path(data_dir),
        identity,
        clock,
        wake,
        cfg.store.max_batch,
        cfg.storage_budget(),
    )?)
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), AgentError> {
    let listen = |source| AgentError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    Ok((listener, bound))
}

/// The listeners' connection caps (the profile's, or the config's) and timeouts.
fn serve_limits(cfg: &AgentConfig) -> ServeLimits {
    let (l, p) = (&cfg.limits, &cfg.profile().limits);
    let max = l.max_connections.unwrap_or(p.max_connections);
    ServeLimits {
        max_connections: max as usize,
        max_connections_per_client: l
            .max_connections_per_client
            .unwrap_or(p.max_connections_per_client)
            .min(max) as usize,
        header_timeout: Duration::from_millis(l.header_timeout_ms),
        idle_timeout: Duration::from_millis(l.idle_timeout_ms),
    }
}

/// Connections the screen listener takes: one display and a metrics scraper or two.
const SCREEN_CONNECTIONS: usize = 16;
/// Descriptors kept for the store, the broker link, logs and the listeners themselves.
const RESERVED_FDS: u64 = 64;

/// The screen listener's limits: the public timeouts, a small cap.
fn screen_limits(public: ServeLimits) -> ServeLimits {
    ServeLimits {
        max_connections: SCREEN_CONNECTIONS,
        max_connections_per_client: SCREEN_CONNECTIONS,
        ..public
    }
}

/// Descriptors both listeners at their caps need.
fn descriptors_needed(public: &ServeLimits) -> u64 {
    (public.max_connections + SCREEN_CONNECTIONS) as u64 + RESERVED_FDS
}

/// The public caps shrunk to fit `available` descriptors, so a flood meets the cap and is
/// refused cleanly instead of running the process out of descriptors.
fn fit_descriptors(public: ServeLimits, available: u64) -> ServeLimits {
    if available >= descriptors_needed(&public) {
        return public;
    }
    let fit = available
        .saturating_sub(SCREEN_CONNECTIONS as u64 + RESERVED_FDS)
        .max(8) as usize;
    ServeLimits {
        max_connections: fit,
        max_connections_per_client: public.max_connections_per_client.min(fit),
        ..public
    }
}

/// Raises the descriptor limit to what the caps need (up to the hard limit); where that is
/// not enough, lowers the public cap and says so.
fn with_descriptors(public: ServeLimits) -> ServeLimits {
    let needed = descriptors_needed(&public);
    match rlimit::increase_nofile_limit(needed) {
        Ok(available) => {
            let fitted = fit_descriptors(public, available);
            if fitted != public {
                tracing::warn!(
                    available,
                    needed,
                    max_connections = fitted.max_connections,
                    "descriptor limit below what the profile's connection cap needs; cap lowered"
                );
            }
            fitted
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the descriptor limit");
            public
        }
    }
}

/// Wrong-code lockouts from the config's limits.
fn wrong_codes(cfg: &AgentConfig) -> WrongCodes {
    let l = &cfg.limits;
    WrongCodes::new(
        l.wrong_codes_per_staff_token,
        l.wrong_codes_per_device,
        i64::from(l.lockout_minutes) * 60_000,
    )
}

/// The stock lookup at the data bank, when `[elsewhere]` is set.
fn elsewhere(
    cfg: &AgentConfig,
    clock: Arc<dyn Clock>,
) -> Result<Option<Arc<Elsewhere>>, AgentError> {
    let (Some(e), Some(here)) = (&cfg.elsewhere, cfg.device.location) else {
        return Ok(None);
    };
    let client = Elsewhere::new(
        e,
        cfg.device.fleet.clone(),
        cfg.device.id.clone(),
        here,
        clock,
    )?;
    Ok(Some(Arc::new(client)))
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: AgentConfig,
    /// Catalogue to import at start when newer than the stored one (or none is stored).
    pub catalogue: Option<CatalogueFile>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where the screen routes and `/metrics` listen.
    pub screen_listen: SocketAddr,
    /// Sync the outbox to this broker (`mqtt://` or `mqtts://`); none keeps it local.
    pub mqtt: Option<MqttTarget>,
    /// Draw the touchpoint's own screens on this framebuffer.
    pub display: Option<DisplayTarget>,
}

/// Where and how the uplink connects.
#[derive(Debug, Clone)]
pub struct MqttTarget {
    pub url: BrokerUrl,
    pub tls: TlsFiles,
}

/// A started agent.
pub struct Running {
    pub addr: SocketAddr,
    pub base_url: String,
    /// The screen routes (screen page, current QR token, `/metrics`).
    pub screen_addr: SocketAddr,
    pub screen_url: String,
    pub writer: WriterHandle,
    pub tokens: TokenSigner,
    /// Notified after every commit that added outbox events (the uplink listens).
    pub wake: Arc<Notify>,
    /// The guarded clock everything runs on (its `status()` reports wall clock steps).
    pub clock: Arc<dyn Clock>,
    server: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    screen_server: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    flusher: tokio::task::JoinHandle<()>,
    /// The running uplink, when started with a broker.
    pub uplink: Option<UplinkHandle>,
    writer_thread: std::thread::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Stops serving, stores the last impression counts, and waits for the writer to finish.
    pub async fn shutdown(self) -> Result<(), AgentError> {
        let _ = self.stop.send(true);
        let served = self.server.await;
        let _ = self.screen_server.await;
        let _ = self.flusher.await;
        if let Some(uplink) = self.uplink
            && let Err(e) = uplink.join().await
        {
            tracing::warn!(error = %e, "uplink ended with an error");
        }
        drop(self.writer);
        let _ = tokio::task::spawn_blocking(move || self.writer_thread.join()).await;
        match served {
            Ok(Err(e)) => Err(AgentError::Serve(e)),
            _ => Ok(()),
        }
    }
}

/// Starts the agent; returns once it is listening.
pub async fn start(opts: RunOptions, clock: Arc<dyn Clock>) -> Result<Running, AgentError> {
    // Everything below goes by the guarded time: a step of the wall clock never reaches a
    // quota, a daypart, a QR window, a hold's expiry or an event.
    let floor = crate::store::schema::clock_floor(&store_path(&opts.data_dir));
    let clock: Arc<dyn Clock> = Arc::new(GuardedClock::new(clock, floor));
    let base = &opts.config;
    // Config layers applied before a reboot run again, with no network needed.
    let stored = fleet::apply::load(&store_path(&opts.data_dir), base);
    let me = fleet::apply::me(base);
    let fleet_catalogue = fleet::settings::catalogue_part(&stored.layers.merged(&me)).is_some();
    let running_cfg = fleet::apply::effective(base, &stored, &me);
    let cfg = &running_cfg;
    let wake = Arc::new(Notify::new());
    let dispenser = dispenser(cfg);
    let (writer, writer_thread) = open_writer(
        cfg,
        &opts.data_dir,
        clock.clone(),
        wake.clone(),
        dispenser.clone(),
    )?;
    if let Some(file) = opts.catalogue.as_ref().filter(|_| {
        if fleet_catalogue {
            tracing::info!(
                "the fleet config provides the catalogue; the local catalogue file is not imported"
            );
        }
        !fleet_catalogue
    }) {
        let version = file.version()?;
        let stored = writer.catalogue_version();
        let offers_stored = crate::store::Reader::open(&store_path(&opts.data_dir))?
            .count(crate::store::read::Table::Offers)?;
        if offers_stored == 0 || version as i64 > stored {
            let summary = writer.import(file.parse()?).await?;
            tracing::info!(
                version = summary.version,
                offers = summary.offers,
                "catalogue imported"
            );
            release_freed_memory();
        } else {
            tracing::info!(
                file = %file.origin,
                version,
                stored,
                "catalogue file is not newer than the stored catalogue: kept the stored one"
            );
        }
    }
    let (listener, addr) = bind(opts.listen).await?;
    let (screen_listener, screen_addr) = bind(opts.screen_listen).await?;
    let base_url = format!("http://{addr}");
    let screen_url = format!("http://{screen_addr}");
    let public_url = cfg
        .http
        .public_url
        .clone()
        .unwrap_or_else(|| base_url.clone());
    let tokens = TokenSigner::new(
        cfg.device.id.as_str(),
        cfg.qr.secret.clone(),
        cfg.qr.rotation_secs,
    );
    let impressions = Arc::new(Impressions::default());
    let metrics = Metrics::new();
    let state = AppState {
        device: cfg.device.id.as_str().into(),
        public_url: public_url.trim_end_matches('/').into(),
        writer: writer.clone(),
        tokens: tokens.clone(),
        shoppers: ShopperHasher::new(cfg.secrets.fleet_secret.clone()),
        claims: ClaimSigner::from_seed(&cfg.secrets.claim_key),
        live: Arc::new(std::sync::RwLock::new(Arc::new(fleet::apply::Live::of(
            cfg,
        )))),
        clock: clock.clone(),
        metrics: metrics.clone(),
        impressions: impressions.clone(),
        limiters: Arc::new(Limiters::new(&cfg.limits.clients(), clock.clone())),
        wrong_codes: Arc::new(Mutex::new(wrong_codes(cfg))),
        screen_token: cfg.http.screen_token,
        sessions: StaffSessions::new(&cfg.secrets.fleet_secret),
        secure_cookies: public_url.starts_with("https://"),
        reader: Arc::new(crate::store::Reader::open(&store_path(&opts.data_dir))?),
        pickups: PickupHasher::new(cfg.secrets.fleet_secret.clone()),
        dispenser: dispenser.clone(),
        location: cfg.device.location,
        tz: cfg.timezone(),
        elsewhere: elsewhere(cfg, clock.clone())?,
        signals: Arc::default(),
    };
    // The panel opens before anything is served: a wrong --display fails the start.
    let panel = match &opts.display {
        Some(target) => Some(Panel::open(target, cfg.profile())?),
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    let limits = with_descriptors(serve_limits(cfg));
    let server = tokio::spawn(serve::serve(
        listener,
        http::public_router(state.clone()),
        limits,
        metrics.clone(),
        stopped.clone(),
    ));
    let screen_server = tokio::spawn(serve::serve(
        screen_listener,
        http::screen_router(state.clone()),
        screen_limits(limits),
        metrics.clone(),
        stopped.clone(),
    ));
    if let Some(panel) = panel {
        let p = &panel.profile().display;
        tracing::info!(width = p.width, height = p.height, depth = ?p.depth, "drawing screens on the panel");
        tokio::spawn(crate::display::panel::run(
            panel,
            state.clone(),
            stopped.clone(),
        ));
    }
    let limiters = state.limiters.clone();
    let wrong = state.wrong_codes.clone();
    // Holds whose window ended while the agent was down are released at once.
    writer.expire_soon();
    let flusher = {
        let writer = writer.clone();
        let clock = clock.clone();
        let mut stopped = stopped;
        tokio::spawn(async move {
            let mut housekeeping = tokio::time::interval(Duration::from_secs(5));
            let mut expiry = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = housekeeping.tick() => {
                        impressions.flush(clock.now_ms(), &writer, false);
                        limiters.forget_idle();
                        let mut w = wrong.lock().unwrap_or_else(|e| e.into_inner());
                        w.prune(clock.now_ms());
                    }
                    _ = expiry.tick() => writer.expire_soon(),
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            impressions.flush(clock.now_ms(), &writer, true);
        })
    };
    let uplink = match &opts.mqtt {
        Some(target) => {
            let outbox = StoreOutbox::open(&store_path(&opts.data_dir), writer.clone())?;
            let ucfg = uplink_config(cfg, target.url.clone(), target.tls.clone());
            let (inbound, orders) = tokio::sync::mpsc::channel(INBOUND_QUEUE);
            tokio::spawn(crate::orders::handle_orders(
                orders,
                writer.clone(),
                PickupHasher::new(cfg.secrets.fleet_secret.clone()),
                metrics.clone(),
            ));
            let (config_tx, config_rx) = tokio::sync::mpsc::channel(CONFIG_QUEUE);
            let links = UplinkLinks {
                source: Arc::new(outbox),
                wake: wake.clone(),
                shoppers: writer.shopper_signal(),
                shutdown: stop.subscribe(),
                clock: clock.clone(),
                inbound: Some(inbound),
                config: Some(config_tx),
            };
            let handle = spawn_uplink(ucfg, links)?;
            let targets = fleet::apply::Targets {
                writer: writer.clone(),
                clock: clock.clone(),
                live: state.live.clone(),
                tokens: tokens.clone(),
                uplink: handle.controls(),
                signals: state.signals.clone(),
            };
            let runner = fleet::apply::Runner::new(base.clone(), cfg.clone(), stored, targets);
            tokio::spawn(runner.run(config_rx));
            metrics.watch_uplink(handle.watch_status());
            Some(handle)
        }
        None => None,
    };
    Ok(Running {
        addr,
        base_url,
        screen_addr,
        screen_url,
        writer,
        tokens,
        wake,
        clock,
        server,
        screen_server,
        flusher,
        uplink,
        writer_thread,
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> ServeLimits {
        ServeLimits {
            max_connections: max,
            max_connections_per_client: per_client,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
        }
    }

    #[test]
    fn caps_that_fit_the_descriptors_stay() {
        assert_eq!(
            fit_descriptors(limits(1024, 256), 20_000),
            limits(1024, 256)
        );
        assert_eq!(
            fit_descriptors(limits(1024, 256), 1024 + 16 + 64),
            limits(1024, 256)
        );
    }

    #[test]
    fn caps_shrink_to_the_descriptors_there_are() {
        // The common default soft limit of 1,024 descriptors.
        assert_eq!(fit_descriptors(limits(1024, 256), 1024), limits(944, 256));
        assert_eq!(fit_descriptors(limits(1024, 256), 200), limits(120, 120));
        assert_eq!(fit_descriptors(limits(1024, 256), 10), limits(8, 8));
    }
}

//! Shared by the bench binaries: an agent store filled through the agent's own writer, a
//! data bank in process, the uplink as the agent runs it, and small MQTT helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use caidan_agent::catalogue::Catalogue;
use caidan_agent::config::{AgentConfig, DEMO_CATALOGUE};
use caidan_agent::outbox::{StoreOutbox, uplink_config};
use caidan_agent::runtime;
use caidan_agent::store::WriterHandle;
use caidan_cloud::databank::auth::{Access, DEMO_BRANDS};
use caidan_cloud::databank::{Databank, DatabankConfig, IngestConfig};
use caidan_sync::clock::SystemClock;
use caidan_sync::contract::{Limits, ShopperHash};
use caidan_sync::tls::TlsFiles;
use caidan_sync::uplink::{UplinkHandle, UplinkLinks, spawn_uplink};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{Notify, watch};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;

/// Events per uplink batch in every bench (the comparisons use the same size).
pub const BATCH_EVENTS: usize = 100;
/// Concurrent callers of the agent writer.
pub const TASKS: usize = 64;

/// A positive integer from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name}={v:?}: expected a positive integer")),
        Err(_) => default,
    }
}

/// A 2-core tokio runtime, as on the device class the agent ships to.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A scratch folder on the real disk (TMPDIR), removed at the end.
pub fn scratch(name: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("caidan-bench-{name}-"))
        .tempdir()?)
}

/// Which agent fact fills a backlog: each writes exactly one outbox event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Claim,
    Scan,
}

impl Fact {
    /// From `var` (`claim` or `scan`), default claims.
    pub fn from_env(var: &str) -> Fact {
        match std::env::var(var).as_deref() {
            Ok("scan") => Fact::Scan,
            Ok("claim") | Err(_) => Fact::Claim,
            Ok(other) => panic!("{var}={other:?}: expected claim or scan"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fact::Claim => "claims",
            Fact::Scan => "scans",
        }
    }
}

/// The demo agent's store and writer, opened through the agent library.
pub struct Agent {
    pub cfg: AgentConfig,
    pub data: PathBuf,
    pub writer: WriterHandle,
    /// Notified by the writer after each commit that added outbox events.
    pub wake: Arc<Notify>,
    thread: std::thread::JoinHandle<()>,
}

impl Agent {
    /// Opens the demo agent's store in `data` with the demo catalogue, batching
    /// [`BATCH_EVENTS`] events per uplink batch.
    pub async fn open(data: &Path) -> Result<Agent> {
        let mut cfg = AgentConfig::demo();
        cfg.sync.batch_max_events = Some(BATCH_EVENTS as u32);
        // The benches claim from one process as fast as they can: no per-window cap.
        cfg.limits.claims_per_minute = Some(1_000_000);
        if let Ok(n) = std::env::var("BENCH_IN_FLIGHT") {
            cfg.sync.max_in_flight = Some(n.parse()?);
        }
        let wake = Arc::new(Notify::new());
        let (writer, thread) =
            runtime::open_writer(&cfg, data, SystemClock::shared(), wake.clone(), None)?;
        writer
            .import(Catalogue::from_json(DEMO_CATALOGUE, "demo catalogue")?)
            .await?;
        Ok(Agent {
            cfg,
            data: data.to_owned(),
            writer,
            wake,
            thread,
        })
    }

    pub fn store_path(&self) -> PathBuf {
        runtime::store_path(&self.data)
    }

    pub fn fleet(&self) -> &str {
        &self.cfg.device.fleet
    }

    pub fn device(&self) -> &str {
        &self.cfg.device.id
    }

    /// `n` facts for distinct shoppers `first..first + n` from [`TASKS`] concurrent tasks,
    /// each answered after its commit. Returns the wall time they took.
    pub async fn facts(&self, fact: Fact, first: u64, n: usize) -> Result<Duration> {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(TASKS);
        for _ in 0..TASKS {
            let (writer, next) = (self.writer.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, BoxError>(());
                    }
                    let shopper = ShopperHash::new(format!("{:032x}", first + i as u64))?;
                    // A thousand shoppers per QR window, as if the screen rotated meanwhile.
                    let window = (first + i as u64) as i64 / 1000;
                    match fact {
                        Fact::Claim => {
                            let out = writer
                                .claim(shopper, window)
                                .await?
                                .map_err(|r| format!("claim refused: {r}"))?;
                            if out.existing {
                                return Err("a fresh shopper got an existing claim".into());
                            }
                        }
                        Fact::Scan => {
                            writer.scan(shopper, window).await?;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(start.elapsed())
    }

    /// Outbox records and their total JSON bytes, read from outside the writer.
    pub fn outbox_size(&self) -> Result<(u64, u64)> {
        let conn = rusqlite::Connection::open_with_flags(
            self.store_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let (n, bytes): (i64, Option<i64>) =
            conn.query_row("SELECT count(*), sum(length(json)) FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok((n as u64, bytes.unwrap_or(0) as u64))
    }

    /// Starts the uplink exactly as `caidan-agent run --mqtt` does.
    pub fn start_uplink(&self, mqtt_url: &str) -> Result<Uplink> {
        let outbox = StoreOutbox::open(&self.store_path(), self.writer.clone())?;
        let ucfg = uplink_config(&self.cfg, mqtt_url.parse()?, TlsFiles::default());
        let (stop, stopped) = watch::channel(false);
        let links = UplinkLinks {
            source: Arc::new(outbox),
            wake: self.wake.clone(),
            shoppers: self.writer.shopper_signal(),
            shutdown: stopped,
            clock: SystemClock::shared(),
            inbound: None,
            config: None,
        };
        let handle = spawn_uplink(ucfg, links)?;
        Ok(Uplink { handle, stop })
    }

    /// Stops the writer once every other handle is gone.
    pub async fn close(self) {
        drop(self.writer);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// A running uplink and its shutdown switch.
pub struct Uplink {
    pub handle: UplinkHandle,
    stop: watch::Sender<bool>,
}

impl Uplink {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle.join()).await;
    }
}

/// How one end-to-end drain went.
pub struct Drained {
    /// Until the outbox was empty (or the limit).
    pub took: Duration,
    /// Events the data bank stored.
    pub stored: u64,
    /// When the data bank held every event, if it did.
    pub all_stored_at: Option<Duration>,
    /// The uplink's counters at the end.
    pub status: caidan_sync::uplink::UplinkStatus,
    pub drained: bool,
}

/// Starts `agent`'s uplink to `mqtt_url` and waits until `bank` stored all `n` events of the
/// backlog and the outbox is empty (acknowledged and trimmed), at most `limit`.
pub async fn drain_end_to_end(
    agent: &Agent,
    bank: &Databank,
    mqtt_url: &str,
    n: u64,
    limit: Duration,
) -> Result<Drained> {
    let metrics = bank.metrics().clone();
    let start = Instant::now();
    let uplink = agent.start_uplink(mqtt_url)?;
    let mut all_stored_at = None;
    let drained = wait_for(limit, || {
        let stored = metrics.events_stored.load(Ordering::Relaxed);
        if stored >= n && all_stored_at.is_none() {
            all_stored_at = Some(start.elapsed());
        }
        stored >= n && agent.writer.outbox_depth() == 0
    })
    .await;
    let took = start.elapsed();
    let status = uplink.handle.status();
    uplink.stop().await;
    Ok(Drained {
        took,
        stored: metrics.events_stored.load(Ordering::Relaxed),
        all_stored_at,
        status,
        drained,
    })
}

/// Starts Mosquitto (no persistence) on a free port in `dir`. `MOSQUITTO_EXTRA` adds config
/// lines, `;`-separated (for example `set_tcp_nodelay true`); unset means the stock config.
pub fn start_broker(dir: &Path) -> caidan_e2e::Mosquitto {
    start_broker_with(dir, "")
}

/// [`start_broker`] with `lines` of the bench's own before `MOSQUITTO_EXTRA`.
pub fn start_broker_with(dir: &Path, lines: &str) -> caidan_e2e::Mosquitto {
    let extra = format!(
        "{lines}\n{}",
        std::env::var("MOSQUITTO_EXTRA")
            .unwrap_or_default()
            .replace(';', "\n")
    );
    let extra = extra.trim().to_owned();
    let broker = caidan_e2e::Mosquitto::start(dir, &format!("allow_anonymous true\n{extra}"));
    println!(
        "# mosquitto {} on port {}, config: persistence false{}",
        mosquitto_version(),
        broker.port,
        if extra.is_empty() {
            String::new()
        } else {
            format!(", {}", extra.replace('\n', ", "))
        }
    );
    broker
}

fn mosquitto_version() -> String {
    std::process::Command::new(caidan_testkit::proc::require("mosquitto", "mosquitto"))
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_else(|| "(version unknown)".into())
}

/// Starts a data bank in process on `port`, storing in `store`.
pub async fn start_databank(
    store: PathBuf,
    port: u16,
    client_id: &str,
    group: Option<&str>,
) -> Result<Databank> {
    let cfg = DatabankConfig {
        ingest: IngestConfig {
            broker: format!("mqtt://127.0.0.1:{port}").parse()?,
            tls: TlsFiles::default(),
            client_id: client_id.into(),
            shared_group: group.map(str::to_owned),
            limits: Limits::default(),
            crash_after_commits: None,
            nats: None,
            ack_key: caidan_sync::keys::SecretKey::from_seed_hex(
                caidan_cloud::databank::auth::DEMO_ACK_KEY,
            )
            .expect("the demo ack key"),
        },
        store: caidan_cloud::databank::StoreUrl::Sqlite(store),
        http_listen: ([127, 0, 0, 1], 0).into(),
        https: None,
        access: Access::parse("demo brands", DEMO_BRANDS)?,
        clock: SystemClock::shared(),
    };
    Ok(Databank::start(cfg).await?)
}

/// Waits until every data bank has subscribed: each must store a retained state message of
/// a probe device (its subscription covers events and state in one SUBSCRIBE).
/// The data bank the drain benches use: one ingester on the `databank` share group with
/// its store in `dir`, subscribed before it returns.
pub async fn subscribed_databank(dir: &Path, port: u16) -> Result<Databank> {
    let bank = start_databank(
        dir.join("databank.db"),
        port,
        "bench-databank",
        Some("databank"),
    )
    .await?;
    wait_subscribed(port, &[&bank]).await?;
    Ok(bank)
}

pub async fn wait_subscribed(port: u16, banks: &[&Databank]) -> Result<()> {
    let (client, mut eventloop) = connect("bench-probe", port, 16).await?;
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let deadline = Instant::now() + Duration::from_secs(30);
    let subscribed = || {
        banks
            .iter()
            .all(|b| b.metrics().state_updates.load(Ordering::Relaxed) > 0)
    };
    while !subscribed() {
        if Instant::now() > deadline {
            driver.abort();
            return Err("data bank did not subscribe within 30 s".into());
        }
        client
            .publish(
                "caidan/v1/bench/d/probe/state",
                QoS::AtLeastOnce,
                true,
                br#"{"online":true,"profile":"bench"}"#.to_vec(),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    Ok(())
}

/// A connected MQTT client (ConnAck received) with room for large batches.
pub async fn connect(id: &str, port: u16, cap: usize) -> Result<(AsyncClient, EventLoop)> {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_max_packet_size(4 << 20, 4 << 20)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(o, cap);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await? {
                return Ok::<_, BoxError>(());
            }
        }
    })
    .await??;
    Ok((client, eventloop))
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes; returns whether it held.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// Prints one figure: what it is, its value and its unit.
pub fn figure(what: &str, value: f64, unit: &str) {
    if value >= 100.0 {
        println!("{what}: {value:.0} {unit}");
    } else {
        println!("{what}: {value:.2} {unit}");
    }
}

/// The `p` quantile (0..=1) of ascending `sorted` samples, nearest rank; NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `n / elapsed` per second.
pub fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

//! The simulated world's moving parts: a development broker (a child process, so it can be
//! restarted), the data bank (in process, stopped and started on the same store), and the
//! agents, each behind its own cuttable link, in process on the shared virtual clock or as
//! real processes that follow it through a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use caidan_agent::catalogue::CatalogueFile;
use caidan_agent::config::AgentConfig;
use caidan_agent::runtime::{self, MqttTarget, RunOptions, Running};
use caidan_cloud::databank::auth::{Access, DEMO_ACK_KEY, DEMO_BRANDS};
use caidan_cloud::databank::{Databank, DatabankConfig, IngestConfig};
use caidan_profiles::{Profile, Scene};
use caidan_sync::clock::Clock;
use caidan_sync::contract::{DEFAULT_MAX_BATCH_BYTES, Limits};
use caidan_sync::keys::SecretKey;

use crate::clock::{DeviceClock, SimTime, publish};
use crate::link::Link;

/// The bearer token the simulated screens present (every device's `http.screen_token`), so
/// a namespaced device's screen listener may be on its veth address.
pub const SCREEN_TOKEN: &str = "caidan-sim-screen";

/// The fleet every simulated device belongs to (the demo brands' data bank tokens work).
pub const FLEET: &str = "demo";
/// The staff token every simulated device accepts (the demo config's).
pub const STAFF_TOKEN: &str = "demo-staff-token";

/// This simulator's binary, which also runs the broker and real-process agents
/// (`_broker`, `_agent`); `CAIDAN_SIM_EXE` names it when the simulator runs as a library
/// (tests).
pub fn sim_exe() -> Result<PathBuf> {
    match std::env::var_os("CAIDAN_SIM_EXE") {
        Some(p) => Ok(PathBuf::from(p)),
        None => Ok(std::env::current_exe()?),
    }
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: SocketAddr, within: Duration) -> Result<()> {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if start.elapsed() > within {
            bail!("nothing listening on {addr} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The development broker, as a child process of this binary (`caidan-sim _broker`).
pub struct Broker {
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Broker {
    pub async fn start(addr: SocketAddr) -> Result<Broker> {
        let mut b = Broker { addr, child: None };
        b.up().await?;
        Ok(b)
    }

    pub async fn up(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new(sim_exe()?)
            .args(["_broker", "--listen", &self.addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the broker process")?;
        self.child = Some(child);
        wait_listening(self.addr, Duration::from_secs(20)).await
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the broker at once (SIGKILL: what it held in memory is gone).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
    }
}

/// The data bank on its store, restartable.
pub struct Bank {
    pub store: PathBuf,
    pub http: SocketAddr,
    broker: SocketAddr,
    running: Option<Databank>,
}

impl Bank {
    pub async fn start(store: PathBuf, broker: SocketAddr) -> Result<Bank> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut b = Bank {
            store,
            http,
            broker,
            running: None,
        };
        b.up().await?;
        Ok(b)
    }

    pub async fn up(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let cfg = DatabankConfig {
            ingest: IngestConfig {
                broker: format!("mqtt://{}", self.broker).parse()?,
                tls: Default::default(),
                client_id: "caidan-sim-databank".into(),
                // One ingester on the development broker: a plain subscription.
                shared_group: None,
                limits: Limits {
                    max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
                },
                crash_after_commits: None,
                nats: None,
                ack_key: SecretKey::from_seed_hex(DEMO_ACK_KEY)?,
            },
            store: caidan_cloud::databank::StoreUrl::Sqlite(self.store.clone()),
            http_listen: self.http,
            https: None,
            access: Access::parse("embedded demo brands", DEMO_BRANDS)?,
            clock: caidan_sync::clock::SystemClock::shared(),
        };
        self.running = Some(
            Databank::start(cfg)
                .await
                .context("starting the data bank")?,
        );
        Ok(())
    }

    pub async fn down(&mut self) {
        if let Some(d) = self.running.take() {
            d.shutdown().await;
        }
    }

    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }
}

/// How a device's agent runs.
pub enum Runner {
    InProcess(Box<Running>),
    Process(Child),
    /// Killed, waiting to be started again.
    Down,
}

/// One simulated touchpoint.
pub struct Device {
    pub id: String,
    pub index: usize,
    pub scene: Scene,
    pub profile: Profile,
    pub config: AgentConfig,
    pub config_file: PathBuf,
    pub data: PathBuf,
    pub link: Link,
    pub clock: DeviceClock,
    /// Where a real-process agent reads the time from.
    pub clock_file: Option<PathBuf>,
    pub public: SocketAddr,
    pub screen: SocketAddr,
    pub runner: Runner,
    catalogue: String,
    /// The device's own network namespace: link 0 its uplink, link 1 its shop link.
    netns: Option<caidan_testkit::Netns>,
}

/// What a device is made of before it starts.
pub struct DeviceSpec<'a> {
    pub id: String,
    pub index: usize,
    pub scene: Scene,
    pub profile: Profile,
    pub region: &'a str,
    pub process: bool,
    /// In its own network namespace (a real process).
    pub netns: bool,
    pub storage_budget_bytes: Option<u64>,
    /// 1-based dispense attempts that jam.
    pub jam_attempts: Vec<u64>,
    pub catalogue: String,
}

/// The agent config of a simulated device.
fn config_text(
    spec: &DeviceSpec<'_>,
    public: SocketAddr,
    screen: SocketAddr,
    catalogue: &Path,
) -> String {
    let (lo, hi) = (
        spec.profile.qr.min_rotation_secs,
        spec.profile.qr.max_rotation_secs,
    );
    let rotation = 30u32.clamp(lo, hi);
    let mut text = caidan_agent::config::DEMO_CONFIG
        .replace(
            "catalogue = \"catalogue.json\"",
            &format!("catalogue = {:?}", catalogue.display().to_string()),
        )
        .replace("id = \"demo-cinema-01\"", &format!("id = {:?}", spec.id))
        .replace(
            "groups = [\"shanghai\", \"cinemas\"]",
            &format!("groups = [{:?}]", spec.scene.as_str()),
        )
        .replace(
            "scene = \"cinema\"",
            &format!("scene = {:?}", spec.scene.as_str()),
        )
        .replace("region = \"cn-sh\"", &format!("region = {:?}", spec.region))
        .replace(
            "profile = \"cinema-screen\"",
            &format!("profile = {:?}", spec.profile.name),
        )
        .replace("rotation_secs = 30", &format!("rotation_secs = {rotation}"))
        .replace(
            "listen = \"127.0.0.1:8780\"",
            &format!(
                "listen = \"{public}\"\nscreen_listen = \"{screen}\"\nscreen_token = \"{}\"",
                caidan_sync::credentials::TokenHash::of(SCREEN_TOKEN)
            ),
        );
    if let Some(b) = spec.storage_budget_bytes {
        text.push_str(&format!("\n[store]\nbudget_bytes = {b}\n"));
    }
    // Shoppers here are simulated from one address: the per-client limits a stranger meets
    // would refuse the crowd. The per-window claim cap stays the profile's.
    text.push_str(
        "\n[limits]\neggs_per_client = { per_minute = 1000000, burst = 100000 }\n\
         eggs_per_shopper = { per_minute = 1000000, burst = 100000 }\n\
         scans_per_client = { per_minute = 1000000, burst = 100000 }\n",
    );
    if spec.profile.actuators.dispenser_slots > 0 {
        text.push_str(&format!(
            "\n[dispenser]\njam_attempts = {:?}\nunit_ms = 0\n",
            spec.jam_attempts
        ));
    }
    text
}

impl Device {
    /// Writes the device's config and catalogue under `dir` and starts its agent.
    pub async fn start(
        spec: DeviceSpec<'_>,
        dir: &Path,
        time: &SimTime,
        broker: SocketAddr,
    ) -> Result<Device> {
        let home = dir.join(&spec.id);
        std::fs::create_dir_all(&home)?;
        let catalogue_file = home.join("catalogue.json");
        std::fs::write(&catalogue_file, &spec.catalogue)?;
        let netns = spec
            .netns
            .then(|| {
                caidan_testkit::Netns::create(2).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: could not make its network namespace (netns = true needs root and iproute2): {e}",
                        spec.id
                    )
                })
            })
            .transpose()?;
        // Shoppers and the screen reach a namespaced agent on its shop link.
        let here = netns
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, |ns| ns.link(1).ns_ip);
        let public = SocketAddr::from((here, free_port()?));
        let screen = SocketAddr::from((here, free_port()?));
        let text = config_text(&spec, public, screen, &catalogue_file);
        let config_file = home.join("agent.toml");
        std::fs::write(&config_file, &text)?;
        let config = AgentConfig::from_toml(&text, &config_file.display().to_string())
            .with_context(|| format!("config of {}", spec.id))?;
        // Its uplink reaches the broker's relay on the host end of link 0.
        let relay_ip = netns
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, |ns| ns.link(0).host_ip);
        let link = Link::start_on(relay_ip, broker).await?;
        let clock = DeviceClock::new(time.clone());
        let mut d = Device {
            id: spec.id,
            index: spec.index,
            scene: spec.scene,
            profile: spec.profile,
            config,
            config_file,
            data: home.join("data"),
            link,
            clock_file: spec.process.then(|| home.join("clock")),
            clock,
            public,
            screen,
            runner: Runner::Down,
            catalogue: spec.catalogue,
            netns,
        };
        d.up().await?;
        Ok(d)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.public)
    }

    pub fn screen_url(&self) -> String {
        format!("http://{}", self.screen)
    }

    pub fn is_up(&self) -> bool {
        !matches!(self.runner, Runner::Down)
    }

    pub fn is_process(&self) -> bool {
        self.clock_file.is_some()
    }

    /// Tells a real-process agent the time.
    pub fn tick(&self) {
        if let Some(f) = &self.clock_file {
            let _ = publish(f, self.clock.now_ms());
        }
    }

    /// Starts the agent (again, after a kill).
    pub async fn up(&mut self) -> Result<()> {
        if self.is_up() {
            return Ok(());
        }
        let mqtt = format!("mqtt://{}", self.link.addr());
        match &self.clock_file {
            None => {
                let opts = RunOptions {
                    config: self.config.clone(),
                    catalogue: Some(CatalogueFile {
                        text: self.catalogue.clone(),
                        origin: "simulator".into(),
                    }),
                    data_dir: self.data.clone(),
                    listen: self.public,
                    screen_listen: self.screen,
                    mqtt: Some(MqttTarget {
                        url: mqtt.parse()?,
                        tls: Default::default(),
                    }),
                    display: None,
                };
                let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
                let running = runtime::start(opts, clock)
                    .await
                    .with_context(|| format!("starting {}", self.id))?;
                self.runner = Runner::InProcess(Box::new(running));
            }
            Some(clock_file) => {
                publish(clock_file, self.clock.now_ms())?;
                let log = std::fs::File::create(self.data.with_extension("log"))?;
                let mut cmd = match &self.netns {
                    // `ip netns exec` execs the program: the child's pid is the agent's.
                    Some(ns) => ns.command(sim_exe()?),
                    None => Command::new(sim_exe()?),
                };
                let child = cmd
                    .arg("_agent")
                    .arg("--config")
                    .arg(&self.config_file)
                    .arg("--data")
                    .arg(&self.data)
                    .args(["--mqtt", &mqtt])
                    .arg("--clock")
                    .arg(clock_file)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .with_context(|| format!("starting {} as a process", self.id))?;
                self.runner = Runner::Process(child);
                wait_listening(self.public, Duration::from_secs(30)).await?;
                wait_listening(self.screen, Duration::from_secs(5)).await?;
            }
        }
        Ok(())
    }

    /// Waits until the agent's store holds order `id` (reserved or rejected), up to `within`.
    pub async fn wait_for_hold(&self, id: &str, within: Duration) -> bool {
        let start = Instant::now();
        let path = runtime::store_path(&self.data);
        loop {
            let found = caidan_agent::store::Reader::open(&path)
                .and_then(|r| r.hold(id))
                .is_ok_and(|h| h.is_some());
            if found {
                return true;
            }
            if start.elapsed() > within {
                tracing::warn!(device = %self.id, order = id, "order not seen in time");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Releases holds whose window ended, now, as the agent's own once-a-second sweep would:
    /// on virtual time a second is many minutes, so in-process agents are swept every step
    /// and release on the minute. A real-process agent keeps its own sweep.
    pub async fn sweep(&self) {
        if let Runner::InProcess(r) = &self.runner
            && let Err(e) = r.writer.expire().await
        {
            tracing::warn!(device = %self.id, error = %e, "expiry sweep failed");
        }
    }

    /// `kill -9` (a real-process agent only).
    /// Starts (`starting`) or ends a real fault on the namespaced uplink: the host end of
    /// the veth set down, or netem delay and loss on both ends (tbf where netem is missing).
    pub fn link_fault(
        &self,
        starting: bool,
        cut: bool,
        delay_ms: u32,
        loss_pct: u32,
    ) -> Result<()> {
        let Some(ns) = &self.netns else {
            bail!("{} has no network namespace", self.id);
        };
        let uplink = ns.link(0);
        match (starting, cut) {
            (true, true) => uplink.cut(),
            (false, true) => uplink.restore(),
            (true, false) => {
                if let Err(e) = uplink.slow(delay_ms, loss_pct) {
                    tracing::warn!(device = %self.id, error = %e, "no netem in this kernel: a thin tbf link instead");
                    uplink
                        .throttle(64, delay_ms.max(50))
                        .map_err(|e| anyhow::anyhow!(e))?;
                }
            }
            (false, false) => uplink.clear(),
        }
        Ok(())
    }

    pub fn kill9(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.runner, Runner::Down) {
            Runner::Process(mut c) => {
                c.kill()?;
                c.wait()?;
                Ok(())
            }
            other => {
                self.runner = other;
                bail!("{} runs in process; kill9 needs a real process", self.id)
            }
        }
    }

    /// Stops the agent cleanly.
    pub async fn stop(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.runner, Runner::Down) {
            Runner::InProcess(r) => r.shutdown().await?,
            Runner::Process(mut c) => {
                // SIGTERM: the agent stores its last impression counts and exits.
                let _ = Command::new("kill").arg(c.id().to_string()).status();
                let start = Instant::now();
                while c.try_wait()?.is_none() {
                    if start.elapsed() > Duration::from_secs(20) {
                        let _ = c.kill();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Runner::Down => {}
        }
        Ok(())
    }

    /// Events still in the device's outbox.
    pub fn outbox_depth(&self) -> i64 {
        match &self.runner {
            Runner::InProcess(r) => r.writer.outbox_depth(),
            _ => caidan_agent::store::Reader::open(&runtime::store_path(&self.data))
                .and_then(|r| r.outbox_stats())
                .map(|s| s.depth)
                .unwrap_or(-1),
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Runner::Process(c) = &mut self.runner {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

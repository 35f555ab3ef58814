//! Starting an in-process agent on a free port with an injected clock.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use caidan_agent::catalogue::CatalogueFile;
use caidan_agent::config::AgentConfig;
use caidan_agent::limits::Rate;
use caidan_agent::runtime::{self, RunOptions, Running};
use caidan_agent::store::Reader;
use caidan_agent::store::read::Table;
use caidan_sync::clock::{Clock, ManualClock};
use serde_json::{Value, json};

/// 2026-11-23 10:00 in Shanghai (02:00 UTC).
pub const MORNING_MS: i64 = 1_795_399_200_000;
pub const DAY_MS: i64 = 86_400_000;

pub struct TestAgent {
    pub running: Running,
    /// The agent's clock when it runs on manual time (every test without a broker).
    pub clock: ManualClock,
    /// The clock the agent runs on: `clock`, or the system's with a broker (the uplink's
    /// reconnects and timers need time that moves).
    pub time: Arc<dyn Clock>,
    /// With a broker: added to the system's wall clock, to step it as NTP or a dead RTC would.
    pub wall_shift: Arc<AtomicI64>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub config: AgentConfig,
}

impl TestAgent {
    /// The demo agent with its per-client limits lifted: these tests play many phones
    /// from one address. The tests of the limits use [`TestAgent::start_with`].
    pub async fn start(catalogue: Value) -> TestAgent {
        Self::start_with(catalogue, unlimited(AgentConfig::demo())).await
    }

    pub async fn start_with(catalogue: Value, config: AgentConfig) -> TestAgent {
        Self::start_in(catalogue, config, tempfile::tempdir().unwrap(), None).await
    }

    /// An agent on the store in `dir`, syncing to `mqtt` when given.
    pub async fn start_in(
        catalogue: Value,
        config: AgentConfig,
        dir: tempfile::TempDir,
        mqtt: Option<&str>,
    ) -> TestAgent {
        Self::start_on(catalogue, config, dir, mqtt, None).await
    }

    /// An agent as [`TestAgent::start_in`], drawing its screens on `display` (`fb:...`).
    pub async fn start_on(
        catalogue: Value,
        config: AgentConfig,
        dir: tempfile::TempDir,
        mqtt: Option<&str>,
        display: Option<&str>,
    ) -> TestAgent {
        Self::start_full(catalogue, config, dir, mqtt, display, MORNING_MS).await
    }

    /// An agent without a broker on the store in `dir`, its manual wall clock reading
    /// `wall_ms` at the start.
    pub async fn start_dated(
        catalogue: Value,
        config: AgentConfig,
        dir: tempfile::TempDir,
        wall_ms: i64,
    ) -> TestAgent {
        Self::start_full(catalogue, config, dir, None, None, wall_ms).await
    }

    async fn start_full(
        catalogue: Value,
        config: AgentConfig,
        dir: tempfile::TempDir,
        mqtt: Option<&str>,
        display: Option<&str>,
        wall_ms: i64,
    ) -> TestAgent {
        let catalogue = CatalogueFile {
            text: catalogue.to_string(),
            origin: "test".into(),
        };
        catalogue.parse().expect("test catalogue is valid");
        let clock = ManualClock::new(wall_ms);
        let wall_shift = Arc::new(AtomicI64::new(0));
        let time: Arc<dyn Clock> = match mqtt {
            Some(_) => Arc::new(Shifted {
                system: caidan_sync::clock::SystemClock::new(),
                shift: wall_shift.clone(),
            }),
            None => Arc::new(clock.clone()),
        };
        let opts = RunOptions {
            config: config.clone(),
            catalogue: Some(catalogue),
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            screen_listen: "127.0.0.1:0".parse().unwrap(),
            mqtt: mqtt.map(|url| runtime::MqttTarget {
                url: url.parse().expect("test broker URL"),
                tls: Default::default(),
            }),
            display: display.map(|d| d.parse().expect("test display")),
        };
        let running = runtime::start(opts, time.clone()).await.unwrap();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        TestAgent {
            running,
            clock,
            time,
            wall_shift,
            dir,
            http,
            config,
        }
    }

    /// Shuts the agent down cleanly and hands back its data folder.
    pub async fn stop(self) -> tempfile::TempDir {
        self.running.shutdown().await.unwrap();
        self.dir
    }

    /// A URL of the public listener (shoppers, staff).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.running.base_url, path)
    }

    /// A URL of the screen listener (screen page, current QR, metrics).
    pub fn screen(&self, path: &str) -> String {
        format!("{}{}", self.running.screen_url, path)
    }

    pub fn token(&self) -> String {
        self.running.tokens.issue(self.now_ms())
    }

    /// The time the agent goes by now (its guarded wall clock).
    pub fn now_ms(&self) -> i64 {
        self.running.clock.now_ms()
    }

    pub fn reader(&self) -> Reader {
        Reader::open(&runtime::store_path(self.dir.path())).unwrap()
    }

    pub fn count(&self, table: Table) -> i64 {
        self.reader().count(table).unwrap()
    }

    /// Every outbox event, oldest first, as JSON.
    pub fn outbox_events(&self) -> Vec<Value> {
        self.reader()
            .outbox_after(0, 100_000)
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_str(&r.json).unwrap())
            .collect()
    }

    /// The screen's current QR answer (`GET /api/v1/qr`).
    pub async fn qr(&self) -> Value {
        let r = self
            .http
            .get(self.screen("/api/v1/qr"))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(self.screen("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// POST /api/v1/eggs for a shopper; returns status and body.
    pub async fn crack(&self, shopper: &str) -> (u16, Value) {
        self.crack_with(&self.token(), shopper).await
    }

    pub async fn crack_with(&self, token: &str, shopper: &str) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/api/v1/eggs"))
            .json(&json!({ "token": token, "shopper": shopper }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The system's clocks, the wall clock shifted by a settable amount.
struct Shifted {
    system: caidan_sync::clock::SystemClock,
    shift: Arc<AtomicI64>,
}

impl Clock for Shifted {
    fn now_ms(&self) -> i64 {
        self.system.now_ms() + self.shift.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> std::time::Duration {
        self.system.monotonic()
    }
}

/// `config` with every per-client limit and the per-window claim cap lifted.
pub fn unlimited(mut config: AgentConfig) -> AgentConfig {
    let lots = Rate {
        per_minute: 1_000_000,
        burst: 100_000,
    };
    config.limits.eggs_per_client = lots;
    config.limits.eggs_per_shopper = lots;
    config.limits.scans_per_client = lots;
    config.limits.claims_per_minute = Some(1_000_000);
    config.limits.max_connections = Some(4096);
    config.limits.max_connections_per_client = Some(4096);
    config
}

/// A catalogue with one coupon and one content egg.
pub fn coupon_catalogue(quota: Value) -> Value {
    json!({
        "version": 1,
        "offers": [
            { "id": "coupon", "brand": "lumi", "kind": "coupon", "title": { "zh": "券", "en": "Coupon" }, "quota": quota },
            { "id": "story", "brand": "lumi", "kind": "content", "title": { "zh": "故事", "en": "Story" } }
        ]
    })
}

//! Running a scenario: the world started, the plan played step by step on the virtual clock,
//! the faults applied and undone, the outboxes drained, and what happened tallied.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use caidan_agent::shopper::ShopperHasher;
use caidan_profiles::Scene;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::clock::SimTime;
use crate::plan::{Act, DeviceInfo, Planned, plan};
use crate::scenario::{FaultKind, Scenario};
use crate::world::{Bank, Broker, Device, DeviceSpec, FLEET, STAFF_TOKEN, free_port};

/// The SKU simulated orders ask for.
pub const ORDER_SKU: &str = "orbit-crisps-25g";
/// The demo operator key the rollout is signed with (trusted by the demo config).
const OPERATOR_KEY: &str = include_str!("../../cloud-sync/cloud/examples/fleet/operator.key");

/// What the shoppers and staff saw, counted by the simulator (not by the data bank).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub visits: u64,
    pub claims: u64,
    pub rescans: u64,
    /// Refusals of an egg, by the agent's reason code.
    pub refused: BTreeMap<String, u64>,
    pub redemptions: u64,
    pub orders_sent: u64,
    pub pickups: u64,
    pub pickups_refused: BTreeMap<String, u64>,
    /// Requests that found the agent down (a killed process).
    pub unreachable: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.visits += o.visits;
        self.claims += o.claims;
        self.rescans += o.rescans;
        self.redemptions += o.redemptions;
        self.orders_sent += o.orders_sent;
        self.pickups += o.pickups;
        self.unreachable += o.unreachable;
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.pickups_refused {
            *self.pickups_refused.entry(k.clone()).or_default() += v;
        }
    }
}

/// One sample of the fleet, taken every few virtual minutes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Virtual minutes since the start.
    pub minute: u32,
    /// Events the data bank holds.
    pub stored: i64,
    /// Events waiting in each device's outbox, in device order (-1: not readable).
    pub outbox: Vec<i64>,
    pub offline: usize,
}

/// A fault as it happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultLog {
    pub minute: u32,
    pub what: String,
}

/// Everything a run leaves for the checks and the report.
pub struct Outcome {
    pub devices: Vec<DeviceView>,
    pub tally: Tally,
    pub tally_by_device: Vec<Tally>,
    pub samples: Vec<Sample>,
    pub faults: Vec<FaultLog>,
    pub bank_store: PathBuf,
    pub start_ms: i64,
    pub end_ms: i64,
    pub rollout_version: Option<u64>,
    /// Orders placed: (device index, order id, hold end in device ms).
    pub orders: Vec<(usize, String)>,
    pub drained: bool,
    pub wall: Duration,
    /// Wall time of the simulated span (the steps) alone.
    pub run: Duration,
    pub work: tempfile::TempDir,
}

/// A stopped device, as the checks read it.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub id: String,
    pub scene: Scene,
    pub profile: String,
    pub region: String,
    pub data: PathBuf,
    pub config: caidan_agent::config::AgentConfig,
    pub screens: Vec<(String, Vec<u8>)>,
}

/// Progress as the run goes, for the terminal.
pub trait Progress {
    fn start(&self, steps: u64);
    /// `made`: events written on the devices so far; `stored`: those the data bank holds.
    fn step(&self, minute: u32, made: i64, stored: i64, offline: usize);
    fn phase(&self, what: &str);
    fn finish(&self);
}

/// A device handles orders: a keypad, locker doors, a dispenser or a staffed counter.
fn hands_over(profile: &caidan_profiles::Profile, scene: Scene) -> bool {
    profile.actuators.dispenser_slots > 0
        || profile.actuators.locker_doors > 0
        || scene == Scene::Restaurant
}

fn shopper_id(device: &str, n: u32) -> String {
    format!("{device}-shopper-{n}")
}

/// The catalogue every simulated device starts with: the demo offers, with segments for the
/// device's pool of shoppers.
fn catalogue(s: &Scenario, device: &str, hasher: &ShopperHasher) -> String {
    let mut c: Value =
        serde_json::from_str(caidan_agent::config::DEMO_CATALOGUE).expect("demo catalogue");
    let mut segments = serde_json::Map::new();
    let pool = s.shoppers.pool_per_device;
    let mut from = 0u32;
    for seg in &s.shoppers.segments {
        let n = (f64::from(pool) * seg.share).round() as u32;
        for i in from..(from + n).min(pool) {
            segments.insert(
                hasher.hash(&shopper_id(device, i)).to_string(),
                json!([seg.name]),
            );
        }
        from += n;
    }
    c["segments"] = Value::Object(segments);
    c.to_string()
}

/// Publishes `payload` on `topic` with QoS 1 and waits for the broker's PUBACK.
async fn publish(broker: SocketAddr, topic: &str, payload: Vec<u8>, retain: bool) -> Result<()> {
    let mut o = MqttOptions::new(
        format!("caidan-sim-{}", free_port()?),
        broker.ip().to_string(),
        broker.port(),
    );
    o.set_keep_alive(Duration::from_secs(10));
    o.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    let (client, mut events) = AsyncClient::new(o, 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await?;
    let acked = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    acked.map_err(|_| anyhow::anyhow!("no PUBACK"))?
}

/// The signed fleet layer of the rollout.
fn rollout_envelope(settings: &toml::Table, now_ms: i64) -> Result<(u64, Vec<u8>)> {
    let settings: serde_json::Map<String, Value> =
        serde_json::from_value(serde_json::to_value(settings)?)?;
    let fleet: caidan_sync::contract::Name = FLEET.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let layer = caidan_sync::contract::LayerId {
        layer: caidan_sync::contract::Layer::Fleet,
        target: fleet.clone(),
    };
    let version = 1;
    let doc = caidan_cloud::fleet::document::document(
        &fleet,
        &layer,
        version,
        settings,
        jiff::Timestamp::from_millisecond(now_ms)?,
    );
    let key = caidan_sync::keys::SecretKey::from_seed_hex(OPERATOR_KEY)?;
    let signed = caidan_cloud::fleet::document::sign(doc, &key)?;
    Ok((version, signed.bytes))
}

/// Virtual minutes before an unanswered order is sent again.
const RESEND_MINUTES: u32 = 15;

/// Order ids the data bank holds an answer to (any order event).
fn answered_orders(store: &Path) -> std::collections::BTreeSet<String> {
    let read = || -> rusqlite::Result<std::collections::BTreeSet<String>> {
        let c = rusqlite::Connection::open_with_flags(
            store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let mut stmt = c.prepare(
            "SELECT DISTINCT json_extract(body, '$.data.order') FROM events WHERE type = 'com.caidan.order'",
        )?;
        stmt.query_map([], |r| r.get::<_, String>(0))?.collect()
    };
    read().unwrap_or_default()
}

/// The order id a pending order message carries.
fn order_of(p: &Pending) -> Option<String> {
    if p.retain {
        return None;
    }
    let v: Value = serde_json::from_slice(&p.payload).ok()?;
    v["order_id"].as_str().map(str::to_owned)
}

/// Devices the data bank heard apply fleet layer `version`.
fn applied_by(store: &Path, version: u64) -> usize {
    let read = || -> rusqlite::Result<i64> {
        let c = rusqlite::Connection::open_with_flags(
            store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        c.query_row(
            "SELECT COUNT(DISTINCT device) FROM events WHERE type = 'com.caidan.config'
             AND json_extract(body, '$.data.status') = 'applied'
             AND json_extract(body, '$.data.layer') = 'fleet'
             AND json_extract(body, '$.data.version') = ?1",
            [version as i64],
            |r| r.get(0),
        )
    };
    read().unwrap_or(0) as usize
}

/// Something to publish when the broker is there.
#[derive(Clone)]
struct Pending {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

struct Shop {
    http: reqwest::Client,
}

impl Shop {
    async fn visit(&self, d: &DeviceRef, shopper: &str, redeem: bool, t: &mut Tally) {
        t.visits += 1;
        let qr: Value = match self
            .http
            .get(format!("{}/api/v1/qr", d.screen))
            .bearer_auth(crate::world::SCREEN_TOKEN)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => {
                t.unreachable += 1;
                return;
            }
        };
        let Some(token) = qr["token"].as_str() else {
            t.unreachable += 1;
            return;
        };
        let _ = self
            .http
            .get(format!("{}/e/{token}", d.public))
            .header("X-Shopper-Id", shopper)
            .send()
            .await;
        let r = match self
            .http
            .post(format!("{}/api/v1/eggs", d.public))
            .json(&json!({ "token": token, "shopper": shopper }))
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                t.unreachable += 1;
                return;
            }
        };
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match status {
            201 => t.claims += 1,
            200 => t.rescans += 1,
            _ => {
                let why = body["error"].as_str().unwrap_or("unknown").to_owned();
                *t.refused.entry(why).or_default() += 1;
                return;
            }
        }
        let kind = body["offer"]["kind"].as_str().unwrap_or("");
        if redeem && status == 201 && matches!(kind, "coupon" | "discount") {
            let ok = self
                .http
                .post(format!("{}/api/v1/redemptions", d.public))
                .bearer_auth(STAFF_TOKEN)
                .json(&json!({ "code": body["claim_code"] }))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                t.redemptions += 1;
            }
        }
    }

    async fn pickup(&self, d: &DeviceRef, code: &str, t: &mut Tally) {
        let req = if d.keypad {
            self.http
                .post(format!("{}/api/v1/vending/pickups", d.public))
        } else {
            self.http
                .post(format!("{}/api/v1/pickups", d.public))
                .bearer_auth(STAFF_TOKEN)
        };
        match req.json(&json!({ "code": code })).send().await {
            Ok(r) if r.status().is_success() => t.pickups += 1,
            Ok(r) => {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let why = body["error"].as_str().unwrap_or("unknown").to_owned();
                *t.pickups_refused.entry(why).or_default() += 1;
            }
            Err(_) => t.unreachable += 1,
        }
    }
}

/// What a step's tasks need of a device.
#[derive(Clone)]
struct DeviceRef {
    public: String,
    screen: String,
    keypad: bool,
}

fn pickup_code(order: u32) -> String {
    format!("P{order:05}")
}

fn order_id(device: &str, order: u32) -> String {
    format!("{device}-order-{order}")
}

/// Plays `s` with `seed`, working under a temporary folder.
pub async fn run(s: &Scenario, seed: u64, progress: &dyn Progress) -> Result<Outcome> {
    let began = Instant::now();
    let work = tempfile::Builder::new().prefix("caidan-sim-").tempdir()?;
    let start_ms = s.start_ms().map_err(|e| anyhow::anyhow!(e))?;
    let time = SimTime::new(start_ms);
    progress.phase("starting the broker and the data bank");
    let mut broker = Broker::start(SocketAddr::from(([127, 0, 0, 1], free_port()?))).await?;
    let bank_store = work.path().join("databank.db");
    let mut bank = Bank::start(bank_store.clone(), broker.addr).await?;

    let demo = caidan_agent::config::AgentConfig::demo();
    let hasher = ShopperHasher::new(demo.secrets.fleet_secret.clone());
    let ids: Vec<(String, usize)> = s.devices_with_groups().collect();
    // A jam on the next dispense after the fault: count the pickups planned before it.
    let infos: Vec<DeviceInfo> = ids
        .iter()
        .map(|(_, g)| {
            let grp = &s.devices[*g];
            let p = caidan_profiles::bundled(&grp.profile).expect("validated");
            DeviceInfo {
                scene: grp.scene,
                pickups: hands_over(&p, grp.scene),
            }
        })
        .collect();
    let start_local = jiff::Timestamp::from_millisecond(start_ms)?
        .to_zoned(jiff::tz::TimeZone::get(&s.time.timezone)?);
    let start_minute_of_day =
        u32::from(start_local.hour() as u8) * 60 + start_local.minute() as u32;
    let planned = plan(s, seed, &infos, start_minute_of_day);

    progress.phase(&format!("starting {} agents", ids.len()));
    let mut devices = Vec::with_capacity(ids.len());
    for (index, (id, g)) in ids.iter().enumerate() {
        let grp = &s.devices[*g];
        let jam_attempts = s
            .faults
            .iter()
            .filter_map(|f| match &f.kind {
                FaultKind::DispenserJam { device } if device == id => {
                    let at = (f.at_hour * 60.0) as u32;
                    let before = planned
                        .iter()
                        .filter(|p| {
                            p.minute < at
                                && matches!(p.act, Act::Pickup { device: d, .. } if d == index)
                        })
                        .count() as u64;
                    Some(before + 1)
                }
                _ => None,
            })
            .collect();
        let spec = DeviceSpec {
            id: id.clone(),
            index,
            scene: grp.scene,
            profile: caidan_profiles::bundled(&grp.profile).expect("validated"),
            region: &grp.region,
            process: grp.process,
            netns: grp.netns,
            storage_budget_bytes: grp.storage_budget_bytes,
            jam_attempts,
            catalogue: catalogue(s, id, &hasher),
        };
        devices.push(Device::start(spec, work.path(), &time, broker.addr).await?);
    }

    let shop = std::sync::Arc::new(Shop {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .timeout(Duration::from_secs(20))
            .build()?,
    });
    let minutes = s.time.hours * 60;
    let step = s.time.step_minutes;
    let real_per_step = Duration::from_secs_f64(f64::from(step) * 60.0 / f64::from(s.time.speed));
    let mut tally_by_device = vec![Tally::default(); devices.len()];
    let mut samples = Vec::new();
    let mut fault_log = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut orders = Vec::new();
    let mut rollout_version = None;
    let mut unanswered: BTreeMap<String, (u32, Pending)> = BTreeMap::new();
    let mut resent = 0u64;
    let mut rollout: Option<(u32, Pending)> = None;
    let mut next = planned.iter().peekable();
    progress.start(u64::from(minutes.div_ceil(step)));
    let run_began = Instant::now();
    for minute in (0..minutes).step_by(step as usize) {
        time.set(start_ms + i64::from(minute) * 60_000);
        for d in &devices {
            d.tick();
            d.sweep().await;
        }
        let mut acts: Vec<&Planned> = Vec::new();
        while let Some(p) = next.next_if(|p| p.minute < minute + step) {
            acts.push(p);
        }
        // Faults and the rollout first, in plan order; then the shoppers, device by device.
        let mut per_device: HashMap<usize, Vec<&Act>> = HashMap::new();
        for p in &acts {
            match &p.act {
                Act::FaultStart { index } | Act::FaultEnd { index } => {
                    let starting = matches!(p.act, Act::FaultStart { .. });
                    let f = &s.faults[*index];
                    let what = apply_fault(&f.kind, starting, &mut devices, &mut broker, &mut bank)
                        .await?;
                    tracing::info!(minute, "{what}");
                    fault_log.push(FaultLog { minute, what });
                }
                Act::Rollout => {
                    let r = s.rollout.as_ref().expect("planned from the scenario");
                    let (version, bytes) = rollout_envelope(&r.settings, time.now_ms())?;
                    rollout_version = Some(version);
                    let p = Pending {
                        topic: format!("caidan/v1/{FLEET}/config"),
                        payload: bytes,
                        retain: true,
                    };
                    rollout = Some((minute, p.clone()));
                    pending.push(p);
                    fault_log.push(FaultLog {
                        minute,
                        what: format!("rollout: fleet layer v{version} published"),
                    });
                }
                Act::Order {
                    device,
                    order,
                    hold_minutes,
                } => {
                    let d = &devices[*device];
                    let expires = d.clock.now_ms_plus(i64::from(*hold_minutes) * 60_000);
                    let id = order_id(&d.id, *order);
                    orders.push((*device, id.clone()));
                    let msg = json!({
                        "type": "order", "order_id": id,
                        "lines": [{ "sku": ORDER_SKU, "qty": 1 }],
                        "pickup_code": pickup_code(*order),
                        "expires_at": jiff::Timestamp::from_millisecond(expires)?.to_string(),
                    });
                    tally_by_device[*device].orders_sent += 1;
                    let p = Pending {
                        topic: format!("caidan/v1/{FLEET}/d/{}/orders", d.id),
                        payload: msg.to_string().into_bytes(),
                        retain: false,
                    };
                    unanswered.insert(id, (minute, p.clone()));
                    pending.push(p);
                }
                Act::Visit { device, .. } | Act::Pickup { device, .. } => {
                    per_device.entry(*device).or_default().push(&p.act);
                }
            }
        }
        // Orders are idempotent by id: like the cloud's order service, send again what the
        // data bank has not heard an answer to (a broker restarted without persistence
        // drops what it queued for an offline device).
        if minute % RESEND_MINUTES == 0 && !unanswered.is_empty() {
            let answered = answered_orders(&bank_store);
            unanswered.retain(|id, _| !answered.contains(id));
            for (sent, p) in unanswered.values_mut() {
                if minute >= *sent + RESEND_MINUTES {
                    *sent = minute;
                    resent += 1;
                    pending.push(p.clone());
                }
            }
        }
        // The operator publishes the layer again (retained) while some device has not
        // applied it: a broker restarted without persistence forgot it.
        if minute % RESEND_MINUTES == 0
            && let (Some((sent, p)), Some(v)) = (&mut rollout, rollout_version)
            && minute >= *sent + RESEND_MINUTES
            && applied_by(&bank_store, v) < devices.len()
        {
            *sent = minute;
            pending.push(p.clone());
        }
        // Publish what is waiting (orders, the rollout) while the broker is up; the rest
        // waits for the next step.
        let mut still = Vec::new();
        let mut delivered = Vec::new();
        for p in pending.drain(..) {
            match publish(broker.addr, &p.topic, p.payload.clone(), p.retain).await {
                Ok(()) => {
                    tracing::info!(minute, topic = %p.topic, "published");
                    delivered.push(p);
                }
                Err(e) => {
                    tracing::info!(minute, topic = %p.topic, error = %e, "not published yet");
                    still.push(p);
                }
            }
        }
        pending = still;
        // An order reaches a reachable device before the step's shoppers go on: the same
        // seed then gives the same pickups, whatever this machine's speed.
        for p in &delivered {
            let Some(id) = order_of(p) else { continue };
            let Some(d) = devices
                .iter()
                .find(|d| p.topic.contains(&format!("/d/{}/", d.id)))
            else {
                continue;
            };
            if d.is_up() && d.link.is_up() && broker.is_up() {
                d.wait_for_hold(&id, Duration::from_secs(3)).await;
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (device, acts) in per_device {
            let d = &devices[device];
            let dref = DeviceRef {
                public: d.base_url(),
                screen: d.screen_url(),
                keypad: d.profile.actuators.dispenser_slots > 0,
            };
            let id = d.id.clone();
            let acts: Vec<Act> = acts.into_iter().cloned().collect();
            let shop = shop.clone();
            tasks.spawn(async move {
                let mut t = Tally::default();
                for a in acts {
                    match a {
                        Act::Visit {
                            shopper, redeem, ..
                        } => {
                            shop.visit(&dref, &shopper_id(&id, shopper), redeem, &mut t)
                                .await
                        }
                        Act::Pickup { order, .. } => {
                            shop.pickup(&dref, &pickup_code(order), &mut t).await
                        }
                        _ => {}
                    }
                }
                (device, t)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (device, t) = done.context("a shopper task failed")?;
            tally_by_device[device].add(&t);
        }
        let offline = devices
            .iter()
            .filter(|d| !d.link.is_up() || !d.is_up())
            .count();
        if minute % 10 == 0 || minute + step >= minutes {
            samples.push(Sample {
                minute,
                stored: stored_events(&bank_store),
                outbox: devices.iter().map(Device::outbox_depth).collect(),
                offline,
            });
        }
        let last = samples.last().expect("sampled at minute 0");
        let waiting: i64 = last.outbox.iter().filter(|d| **d > 0).sum();
        progress.step(minute, last.stored + waiting, last.stored, offline);
        // Paced against the run's own timeline, so a quick step makes up for a slow one.
        let steps_done = minute / step + 1;
        tokio::time::sleep_until((run_began + real_per_step * steps_done).into()).await;
    }
    let run = run_began.elapsed();
    let end_ms = start_ms + i64::from(minutes) * 60_000;
    time.set(end_ms);
    for d in &devices {
        d.tick();
    }

    progress.phase("restoring every link and draining the outboxes");
    broker.up().await?;
    bank.up().await?;
    for d in &mut devices {
        d.link.set_up(true);
        d.up().await?;
    }
    for p in pending.drain(..) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while publish(broker.addr, &p.topic, p.payload.clone(), p.retain)
            .await
            .is_err()
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "could not publish to {}",
                p.topic
            );
        }
    }
    // Holds whose window ended are released by each agent within a second or so of real
    // time; give them that, then wait for every outbox to empty and every order to be
    // answered (sending again what is not).
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut drained = drain(&devices, Duration::from_secs(180)).await;
    loop {
        let answered = answered_orders(&bank_store);
        unanswered.retain(|id, _| !answered.contains(id));
        let config_done =
            rollout_version.is_none_or(|v| applied_by(&bank_store, v) >= devices.len());
        if (unanswered.is_empty() && config_done) || Instant::now() > deadline {
            break;
        }
        if !config_done && let Some((_, p)) = &rollout {
            let _ = publish(broker.addr, &p.topic, p.payload.clone(), p.retain).await;
        }
        for (_, p) in unanswered.values() {
            resent += 1;
            let _ = publish(broker.addr, &p.topic, p.payload.clone(), p.retain).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        drained = drain(&devices, deadline.saturating_duration_since(Instant::now())).await;
    }
    tracing::info!(
        resent,
        unanswered = unanswered.len(),
        "orders sent again until answered"
    );
    samples.push(Sample {
        minute: minutes,
        stored: stored_events(&bank_store),
        outbox: devices.iter().map(Device::outbox_depth).collect(),
        offline: 0,
    });

    progress.phase("drawing each device's screens");
    let mut views = Vec::new();
    for d in &devices {
        let catalogue = caidan_agent::catalogue::Catalogue::from_json(
            caidan_agent::config::DEMO_CATALOGUE,
            "demo",
        )
        .ok();
        let mut screens = Vec::new();
        for which in [
            caidan_agent::display::Which::Attract,
            caidan_agent::display::Which::Reveal,
            caidan_agent::display::Which::Pickup,
        ] {
            let png = caidan_agent::display::render_png(
                &d.config,
                &d.profile,
                catalogue.as_ref(),
                which,
                end_ms,
            )?;
            screens.push((format!("{which:?}").to_lowercase(), png));
        }
        views.push(DeviceView {
            id: d.id.clone(),
            scene: d.scene,
            profile: d.profile.name.clone(),
            region: d.config.device.region.clone(),
            data: d.data.clone(),
            config: d.config.clone(),
            screens,
        });
    }
    progress.phase("stopping");
    for d in &mut devices {
        d.stop().await?;
    }
    bank.down().await;
    broker.down();
    drop(devices);
    progress.finish();
    let mut tally = Tally::default();
    for t in &tally_by_device {
        tally.add(t);
    }
    Ok(Outcome {
        devices: views,
        tally,
        tally_by_device,
        samples,
        faults: fault_log,
        bank_store,
        start_ms,
        end_ms,
        rollout_version,
        orders,
        drained,
        wall: began.elapsed(),
        run,
        work,
    })
}

/// Waits until every device's outbox is empty, or `within` passes.
async fn drain(devices: &[Device], within: Duration) -> bool {
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    loop {
        if devices.iter().all(|d| d.outbox_depth() == 0) {
            return true;
        }
        if start.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Events the data bank has stored (0 while it is not readable).
pub fn stored_events(store: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Applies (`starting`) or undoes a fault; says what happened.
async fn apply_fault(
    kind: &FaultKind,
    starting: bool,
    devices: &mut [Device],
    broker: &mut Broker,
    bank: &mut Bank,
) -> Result<String> {
    Ok(match kind {
        FaultKind::LinkCut {
            devices: named,
            scene,
            minutes,
        } => {
            let mut hit = Vec::new();
            for d in devices.iter_mut() {
                if named.contains(&d.id) || *scene == Some(d.scene) {
                    d.link.set_up(!starting);
                    hit.push(d.id.clone());
                }
            }
            if starting {
                format!("link cut for {minutes} min: {}", hit.join(", "))
            } else {
                format!("link restored: {}", hit.join(", "))
            }
        }
        FaultKind::BrokerRestart { minutes } => {
            if starting {
                broker.down();
                format!("broker stopped for {minutes} min")
            } else {
                broker.up().await?;
                "broker back".into()
            }
        }
        FaultKind::DatabankRestart { minutes } => {
            if starting {
                bank.down().await;
                format!("data bank stopped for {minutes} min")
            } else {
                bank.up().await?;
                "data bank back".into()
            }
        }
        FaultKind::Kill9 { device, minutes } => {
            let d = devices
                .iter_mut()
                .find(|d| &d.id == device)
                .expect("validated");
            if starting {
                d.kill9()?;
                format!("kill -9 {device}, back in {minutes} min")
            } else {
                d.up().await?;
                format!("{device} restarted")
            }
        }
        FaultKind::ClockJump { device, hours } => {
            let d = devices.iter().find(|d| &d.id == device).expect("validated");
            d.clock.jump(i64::from(*hours) * 3_600_000);
            format!("{device}: wall clock jumped {hours:+} h")
        }
        FaultKind::DispenserJam { device } => {
            format!("{device}: the dispenser jams on its next attempt")
        }
        FaultKind::LinkFault {
            device,
            minutes,
            cut,
            delay_ms,
            loss_pct,
        } => {
            let d = devices.iter().find(|d| &d.id == device).expect("validated");
            d.link_fault(starting, *cut, *delay_ms, *loss_pct)
                .with_context(|| format!("link fault on {device}"))?;
            match (starting, cut) {
                (true, true) => format!("{device}: uplink cut (veth down) for {minutes} min"),
                (true, false) => format!(
                    "{device}: uplink slowed by {delay_ms} ms, {loss_pct}% loss, for {minutes} min"
                ),
                (false, _) => format!("{device}: uplink restored"),
            }
        }
    })
}

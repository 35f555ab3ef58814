//! The thin tokio layer over [`UplinkCore`]: owns the rumqttc event loop, runs outbox calls
//! on the blocking pool, and feeds their results, acknowledgements and timers to the core.
//! Time comes from the injected [`Clock`]; what to do and when is the core's to decide.

use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};
use tracing::{debug, info, warn};

use super::inbound::{ConfigIn, Inbound};
use super::state::{AckOutcome, Action, BatchSend, UplinkCore};
use super::{
    ControlsRx, OutboxRecord, OutboxSource, ShopperSignal, UplinkConfig, UplinkError, UplinkLinks,
    UplinkStatus,
};
use crate::clock::Clock;
use crate::contract::{Ack, ConfigAck, ConfigReport, Envelope, OrderMessage, StateMessage};
use crate::topics;

/// Largest message the uplink takes off the wire. Anything on its topics above the (1 KiB)
/// acknowledgement limit is refused, but the packet must be read to be refused: one bigger
/// than this would break the connection, and a retained one would keep breaking it. The
/// shipped broker config caps messages below this (`message_size_limit`).
pub const MAX_INCOMING_BYTES: usize = 4 * 1024 * 1024;

/// Orders held while the agent's queue is full before the uplink stops reading the broker.
const MAX_BACKLOG: usize = 1024;

/// How long shutdown waits for the offline state and DISCONNECT to be written.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);

type Job<T, E> = Option<JoinHandle<Result<T, E>>>;

/// A trim job's result: `(through, deleted, depth after)`.
type Trimmed = (i64, u64, Option<i64>);

/// A blocking job's outcome with a panic or a store error as text.
fn flatten<T, E: std::fmt::Display>(r: Result<Result<T, E>, JoinError>) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

struct Driver<S: OutboxSource> {
    cfg: UplinkConfig,
    source: Arc<S>,
    clock: Arc<dyn Clock>,
    client: AsyncClient,
    core: UplinkCore,
    events_topic: String,
    ack_topic: String,
    state_topic: String,
    orders_topic: String,
    /// Where orders go, if the agent takes them.
    inbound: Option<mpsc::Sender<Inbound>>,
    /// The fleet's, each group's, the device's and the rollout's config topics.
    config_topics: Vec<String>,
    config_ack_topic: String,
    /// Where config documents go, if the agent takes them.
    config: Option<mpsc::Sender<ConfigIn>>,
    /// Config answers waiting for a connection.
    config_acks: VecDeque<ConfigAck>,
    report: Option<ConfigReport>,
    /// Orders handed to the agent and not yet dealt with, in the order they came: the
    /// broker's delivery of each is acknowledged when it is.
    unacked: VecDeque<(Publish, oneshot::Receiver<()>)>,
    /// Orders received while the agent's queue was full, waiting to be handed over (after
    /// every one in `unacked`, so acknowledgements keep the order of arrival).
    backlog: VecDeque<(Publish, Inbound, oneshot::Receiver<()>)>,
    orders_received: u64,
    /// Delivery acknowledgements the client's request queue had no room for yet.
    acks_waiting: VecDeque<Publish>,
    read_job: Job<Vec<OutboxRecord>, S::Error>,
    trim_job: Job<Trimmed, S::Error>,
    depth_job: Job<i64, S::Error>,
    state_wanted: bool,
    depth: Option<i64>,
    last_error: Option<String>,
    acks_refused: u64,
    shopper_marks: u64,
    /// Wall clock steps reported in the last state sent.
    clock_jumps: u32,
    status_tx: watch::Sender<UplinkStatus>,
}

pub(super) async fn run<S: OutboxSource>(
    cfg: UplinkConfig,
    mut opts: MqttOptions,
    links: UplinkLinks<S>,
    controls: ControlsRx,
    status_tx: watch::Sender<UplinkStatus>,
) -> Result<(), UplinkError> {
    let ControlsRx {
        mut config_version,
        mut report,
        mut policy,
        config_acks: mut config_acks_rx,
    } = controls;
    let UplinkLinks {
        source,
        wake,
        shoppers,
        mut shutdown,
        clock,
        inbound,
        config,
    } = links;
    let epoch = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || source.epoch()).await?
    };
    let state_topic = topics::state(&cfg.fleet, &cfg.device);
    let will = StateMessage {
        online: false,
        profile: cfg.profile.clone(),
        config_version: cfg.config_version,
        outbox_depth: None,
        last_error: Some("connection lost".into()),
        storage: None,
        stock: None,
        location: cfg.location,
        groups: cfg.groups.clone(),
        scene: cfg.scene.clone(),
        config: None,
        at: None,
        clock: None,
    };
    opts.set_last_will(LastWill::new(
        state_topic.clone(),
        will.to_json(),
        QoS::AtLeastOnce,
        true,
    ));
    // A persistent session: orders published while the device is offline wait at the broker.
    opts.set_clean_session(inbound.is_none() && config.is_none());
    opts.set_manual_acks(true);
    opts.set_max_packet_size(
        MAX_INCOMING_BYTES,
        crate::broker_url::DEFAULT_MAX_PACKET_BYTES,
    );
    let cap = cfg.core.max_in_flight * 2 + 16;
    let (client, mut eventloop) = AsyncClient::new(opts, cap);
    // Batches and acks are small request/response exchanges: Nagle's algorithm against the
    // peer's delayed ACK would hold each one back by tens of milliseconds.
    eventloop.network_options.set_tcp_nodelay(true);
    info!(device = %cfg.device, %epoch, broker = %cfg.broker, "uplink starting");
    let mut d = Driver {
        events_topic: topics::events(&cfg.fleet, &cfg.device),
        ack_topic: topics::ack(&cfg.fleet, &cfg.device),
        state_topic,
        orders_topic: topics::orders(&cfg.fleet, &cfg.device),
        inbound,
        config_topics: config_topics(&cfg),
        config_ack_topic: topics::config_ack(&cfg.fleet, &cfg.device),
        config,
        config_acks: VecDeque::new(),
        report: None,
        unacked: VecDeque::new(),
        backlog: VecDeque::new(),
        orders_received: 0,
        acks_waiting: VecDeque::new(),
        core: UplinkCore::new(cfg.core.clone(), epoch, clock.monotonic()),
        cfg,
        source,
        clock,
        client,
        read_job: None,
        trim_job: None,
        depth_job: None,
        state_wanted: false,
        depth: None,
        last_error: None,
        acks_refused: 0,
        shopper_marks: shoppers.count(),
        clock_jumps: 0,
        status_tx,
    };
    if *shutdown.borrow_and_update() {
        return Ok(());
    }
    loop {
        d.flush_acks();
        let now = d.clock.monotonic();
        d.note_shoppers(&shoppers, now);
        d.note_clock(now);
        while let Some(action) = d.core.poll_action(now) {
            d.execute(action);
        }
        d.publish_status();
        let wait = d.core.poll_timeout().map(|t| t.saturating_sub(now));
        let may_connect = d.core.may_connect(now);
        let sender = d.inbound.clone();
        tokio::select! {
            biased;
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
            r = join(&mut d.trim_job), if d.trim_job.is_some() => {
                d.trim_job = None;
                d.on_trimmed(flatten(r));
            }
            r = join(&mut d.read_job), if d.read_job.is_some() => {
                d.read_job = None;
                d.on_read(flatten(r));
            }
            r = join(&mut d.depth_job), if d.depth_job.is_some() => {
                d.depth_job = None;
                d.on_depth(flatten(r));
            }
            r = front(&mut d.unacked), if !d.unacked.is_empty() => d.on_inbound_done(r.is_ok()),
            permit = slot(sender.as_ref()), if !d.backlog.is_empty() => d.feed(permit),
            // While the agent is far behind on orders, the broker waits (TCP backpressure)
            // rather than being asked to deliver everything again.
            ev = eventloop.poll(), if may_connect && d.backlog.len() < MAX_BACKLOG => d.on_mqtt(ev),
            _ = wake.notified() => d.core.handle_wake(),
            r = config_version.changed() => if r.is_ok() {
                d.cfg.config_version = *config_version.borrow_and_update();
                d.core.request_state(d.clock.monotonic());
            },
            r = report.changed() => if r.is_ok() {
                d.report = report.borrow_and_update().clone();
                d.core.request_state(d.clock.monotonic());
            },
            r = policy.changed() => if r.is_ok()
                && let Some(core) = policy.borrow_and_update().clone()
            {
                info!(device = %d.cfg.device, "sync policy changed by config");
                d.core.set_config(core);
            },
            Some(ack) = config_acks_rx.recv() => d.queue_config_ack(ack),
            _ = sleep(wait), if wait.is_some() => {}
        }
    }
    d.shut_down(&mut eventloop).await;
    Ok(())
}

/// Waits for the job in `slot` (the caller guarantees there is one).
async fn join<T>(slot: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
    slot.as_mut().expect("job present").await
}

/// Waits for room in the agent's order queue.
async fn slot(sender: Option<&mpsc::Sender<Inbound>>) -> Option<mpsc::OwnedPermit<Inbound>> {
    match sender {
        Some(s) => s.clone().reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

/// Waits for the oldest unacknowledged order to be dealt with.
async fn front(unacked: &mut VecDeque<(Publish, oneshot::Receiver<()>)>) -> Result<(), ()> {
    match unacked.front_mut() {
        Some((_, done)) => done.await.map_err(|_| ()),
        None => std::future::pending().await,
    }
}

/// The config topics a device listens on, lowest layer first.
fn config_topics(cfg: &UplinkConfig) -> Vec<String> {
    let (fleet, device) = (cfg.fleet.as_str(), cfg.device.as_str());
    let mut topics = vec![topics::fleet_config(fleet)];
    topics.extend(
        cfg.groups
            .iter()
            .map(|g| topics::group_config(fleet, g.as_str())),
    );
    topics.push(topics::device_config(fleet, device));
    topics.push(topics::rollout_config(fleet, device));
    topics
}

async fn sleep(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

impl<S: OutboxSource> Driver<S> {
    /// Tells the core when shoppers were served since the last look.
    fn note_shoppers(&mut self, shoppers: &ShopperSignal, now: Duration) {
        let marks = shoppers.count();
        if marks != self.shopper_marks {
            self.shopper_marks = marks;
            self.core.handle_shopper_activity(now);
        }
    }

    /// A wall clock step is news for the fleet: the state goes out again.
    fn note_clock(&mut self, now: Duration) {
        if let Some(status) = self.clock.status()
            && status.jumps != self.clock_jumps
        {
            self.clock_jumps = status.jumps;
            self.core.request_state(now);
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Read { after, max } => {
                let source = self.source.clone();
                self.read_job = Some(tokio::task::spawn_blocking(move || {
                    source.read_after(after, max)
                }));
            }
            Action::Trim { through } => {
                let source = self.source.clone();
                let job = tokio::task::spawn_blocking(move || {
                    let deleted = source.trim_through(through)?;
                    Ok((through, deleted, source.depth().ok()))
                });
                self.trim_job = Some(job);
            }
            Action::Publish(batch) => self.publish_batch(batch),
            Action::PublishState => {
                self.state_wanted = true;
                if self.depth_job.is_none() {
                    let source = self.source.clone();
                    self.depth_job = Some(tokio::task::spawn_blocking(move || source.depth()));
                }
            }
        }
    }

    fn publish_batch(&mut self, b: BatchSend) {
        let device = &self.cfg.device;
        if b.attempt > 1 {
            info!(%device, first = b.first, last = b.last, attempt = b.attempt, "resending unacknowledged batch");
        } else {
            debug!(%device, first = b.first, last = b.last, events = b.events, "sending batch");
        }
        // A failed hand-off is not fatal: the batch goes again when its ack times out.
        if let Err(e) = self.client.try_publish(
            &self.events_topic,
            QoS::AtLeastOnce,
            false,
            b.payload.to_vec(),
        ) {
            warn!(%device, first = b.first, error = %e, "batch not queued");
        }
    }

    fn state_message(&self, online: bool) -> StateMessage {
        StateMessage {
            online,
            profile: self.cfg.profile.clone(),
            config_version: self.cfg.config_version,
            outbox_depth: self.depth,
            last_error: self.last_error.as_deref().map(StateMessage::error_text),
            storage: self.source.storage(),
            stock: None,
            location: self.cfg.location,
            groups: self.cfg.groups.clone(),
            scene: self.cfg.scene.clone(),
            config: self.report.clone(),
            at: jiff::Timestamp::from_millisecond(self.clock.now_ms()).ok(),
            clock: self.clock.status(),
        }
    }

    /// Keeps a config answer and sends what is kept when connected.
    fn queue_config_ack(&mut self, ack: ConfigAck) {
        if self.config_acks.len() >= super::CONFIG_ACKS {
            self.config_acks.pop_front();
        }
        self.config_acks.push_back(ack);
        self.send_config_acks();
    }

    fn send_config_acks(&mut self) {
        if !self.core.status().connected {
            return;
        }
        while let Some(ack) = self.config_acks.front() {
            let payload = ack.to_json();
            if self
                .client
                .try_publish(&self.config_ack_topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                break;
            }
            self.config_acks.pop_front();
        }
    }

    fn publish_state(&mut self) {
        self.state_wanted = false;
        if !self.core.status().connected {
            return;
        }
        let payload = self.state_message(true).to_json();
        if let Err(e) = self
            .client
            .try_publish(&self.state_topic, QoS::AtLeastOnce, true, payload)
        {
            warn!(device = %self.cfg.device, error = %e, "state not queued");
        }
    }

    fn store_error(&mut self, what: &str, error: String) {
        warn!(device = %self.cfg.device, %error, "outbox {what} failed");
        self.last_error = Some(format!("outbox {what}: {error}"));
    }

    fn on_read(&mut self, r: Result<Vec<OutboxRecord>, String>) {
        let now = self.clock.monotonic();
        match r {
            Ok(records) => self.core.handle_read(now, records),
            Err(e) => {
                self.store_error("read", e);
                self.core.handle_read_failed(now);
            }
        }
    }

    fn on_trimmed(&mut self, r: Result<Trimmed, String>) {
        match r {
            Ok((through, deleted, depth)) => {
                debug!(device = %self.cfg.device, through, deleted, "outbox trimmed");
                self.core.handle_trimmed(through);
                self.depth = depth.or(self.depth);
            }
            Err(e) => {
                self.store_error("trim", e);
                self.core.handle_trim_failed(self.clock.monotonic());
            }
        }
    }

    fn on_depth(&mut self, r: Result<i64, String>) {
        match r {
            Ok(depth) => self.depth = Some(depth),
            Err(e) => self.store_error("depth", e),
        }
        if self.state_wanted {
            self.publish_state();
        }
    }

    fn on_mqtt(&mut self, ev: Result<Event, rumqttc::ConnectionError>) {
        let now = self.clock.monotonic();
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!(device = %self.cfg.device, "connected to broker");
                // Orders handed out on the previous connection are delivered again.
                self.unacked.clear();
                self.acks_waiting.clear();
                self.backlog.clear();
                let mut topics = vec![self.ack_topic.clone()];
                if self.inbound.is_some() {
                    topics.push(self.orders_topic.clone());
                }
                if self.config.is_some() {
                    topics.extend(self.config_topics.iter().cloned());
                }
                for topic in topics {
                    if let Err(e) = self.client.try_subscribe(&topic, QoS::AtLeastOnce) {
                        warn!(device = %self.cfg.device, %topic, error = %e, "subscription not queued");
                    }
                }
                self.core.handle_connected(now);
                self.send_config_acks();
            }
            Ok(Event::Incoming(Packet::SubAck(ack)))
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure)) =>
            {
                // Without acks nothing is ever trimmed, without orders none is reserved; say
                // so loudly (usually a broker ACL).
                warn!(device = %self.cfg.device, "subscription refused by broker");
                self.last_error = Some("a subscription (acks or orders) was refused".into());
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == self.ack_topic => {
                self.on_ack(&p.payload);
                self.ack_delivery(&p);
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == self.orders_topic => {
                self.on_order(p)
            }
            Ok(Event::Incoming(Packet::Publish(p))) if self.config_topics.contains(&p.topic) => {
                self.on_config(p)
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                warn!(device = %self.cfg.device, topic = %crate::contract::ids::shown(&p.topic), "message on a topic not subscribed to, dropped");
                self.ack_delivery(&p);
            }
            Ok(_) => {}
            Err(e) => {
                self.unacked.clear();
                self.acks_waiting.clear();
                self.backlog.clear();
                let r = self.core.handle_connection_lost(now);
                warn!(device = %self.cfg.device, error = %e, attempt = r.attempt, retry_in_ms = r.delay.as_millis() as u64, "broker connection failed");
                self.last_error = Some(format!("mqtt: {e}"));
            }
        }
    }

    /// Acknowledges a delivery to the broker (manual acks: orders wait for the agent). An
    /// acknowledgement must never be lost: the broker would hold the message in its
    /// in-flight window for the rest of the connection and, once the window is full, send
    /// nothing more. One the client's queue cannot take now waits for the next turn.
    fn ack_delivery(&mut self, p: &Publish) {
        if !self.acks_waiting.is_empty() || self.client.try_ack(p).is_err() {
            self.acks_waiting.push_back(p.clone());
        }
    }

    /// Hands waiting acknowledgements to the client as its queue makes room.
    fn flush_acks(&mut self) {
        while let Some(p) = self.acks_waiting.front() {
            if self.client.try_ack(p).is_err() {
                break;
            }
            self.acks_waiting.pop_front();
        }
    }

    /// Hands an order message to the agent; its delivery is acknowledged once it is dealt
    /// with ([`Driver::on_inbound_done`]).
    fn on_order(&mut self, p: Publish) {
        let Some(inbound) = &self.inbound else {
            self.ack_delivery(&p);
            return;
        };
        let (message, done) = Inbound::new(OrderMessage::parse(&p.payload));
        self.orders_received += 1;
        if !self.backlog.is_empty() {
            self.hold_back(p, message, done);
            return;
        }
        match inbound.try_send(message) {
            Ok(()) => self.unacked.push_back((p, done)),
            Err(mpsc::error::TrySendError::Full(message)) => self.hold_back(p, message, done),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                warn!(device = %self.cfg.device, "the agent stopped taking orders; reconnecting so they are delivered again");
                self.reconnect_for_redelivery();
            }
        }
    }

    /// Hands a config document to the agent. Its delivery is acknowledged in turn at once:
    /// it is retained, so the broker sends it again on every connection. An empty payload
    /// (an operator clearing the topic) is not a document.
    fn on_config(&mut self, p: Publish) {
        let (done, rx) = oneshot::channel();
        let _ = done.send(());
        let sender = self.config.clone();
        self.unacked.push_back((p.clone(), rx));
        let Some(sender) = sender else { return };
        if p.payload.is_empty() {
            debug!(device = %self.cfg.device, topic = %p.topic, "config topic cleared");
            return;
        }
        let msg = ConfigIn {
            topic: p.topic.clone(),
            envelope: Envelope::parse(&p.payload),
        };
        if sender.try_send(msg).is_err() {
            warn!(device = %self.cfg.device, topic = %p.topic, "config document dropped (agent busy); it is read again on the next connection");
        }
    }

    /// Keeps an order until the agent's queue has room. At [`MAX_BACKLOG`] the uplink stops
    /// reading from the broker until the agent catches up.
    fn hold_back(&mut self, p: Publish, message: Inbound, done: oneshot::Receiver<()>) {
        if self.backlog.len() + 1 == MAX_BACKLOG {
            debug!(device = %self.cfg.device, held = MAX_BACKLOG, "agent behind on orders; reading from the broker paused");
        }
        self.backlog.push_back((p, message, done));
    }

    /// Hands the oldest held-back order to the agent.
    fn feed(&mut self, permit: Option<mpsc::OwnedPermit<Inbound>>) {
        let Some(permit) = permit else {
            self.reconnect_for_redelivery();
            return;
        };
        if let Some((p, message, done)) = self.backlog.pop_front() {
            permit.send(message);
            self.unacked.push_back((p, done));
        }
    }

    fn on_inbound_done(&mut self, stored: bool) {
        let Some((p, _)) = self.unacked.pop_front() else {
            return;
        };
        if stored {
            self.ack_delivery(&p);
        } else {
            warn!(device = %self.cfg.device, "an order was not stored; reconnecting so the broker delivers it again");
            self.reconnect_for_redelivery();
        }
    }

    /// Drops the connection without acknowledging what is pending; the persistent session
    /// makes the broker deliver it again.
    fn reconnect_for_redelivery(&mut self) {
        self.unacked.clear();
        self.acks_waiting.clear();
        self.backlog.clear();
        self.last_error = Some("an order could not be stored; it will be delivered again".into());
        let _ = self.client.try_disconnect();
    }

    fn on_ack(&mut self, payload: &[u8]) {
        let device = &self.cfg.device;
        let ack = match Ack::parse_verified(payload, &self.cfg.fleet, device, &self.cfg.ack_keys) {
            Ok(a) => a,
            Err(e) => {
                self.acks_refused += 1;
                // A flood of forgeries must not flood the log: the first few, then every
                // thousandth, each with the running count.
                if self.acks_refused <= 10 || self.acks_refused.is_multiple_of(1000) {
                    warn!(%device, reason = e.reason(), error = %e, refused = self.acks_refused, "acknowledgement refused; outbox untouched");
                }
                return;
            }
        };
        match self.core.handle_ack(ack.epoch, ack.seq) {
            AckOutcome::Advanced { to, .. } => debug!(%device, seq = to, "acknowledged"),
            AckOutcome::Clamped { claimed, to, .. } => {
                warn!(%device, claimed, seq = to, "ack beyond what was sent; took what was sent")
            }
            AckOutcome::Stale => {}
            AckOutcome::NotSent { claimed } => {
                warn!(%device, claimed, "ack for seqs not sent yet ignored")
            }
            AckOutcome::ForeignEpoch => {
                warn!(%device, epoch = %ack.epoch, "ack for another epoch ignored")
            }
        }
    }

    fn publish_status(&self) {
        let c = self.core.status();
        let status = UplinkStatus {
            connected: c.connected,
            acked_seq: c.acked,
            sent_seq: c.sent_through,
            batches_in_flight: c.batches_in_flight,
            batches_sent: c.batches_sent,
            batches_resent: c.batches_resent,
            connects: c.connects,
            failures: c.failures,
            acks_refused: self.acks_refused,
            orders_received: self.orders_received,
            outbox_depth: self.depth,
            last_error: self.last_error.clone(),
        };
        self.status_tx.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    /// Marks the device offline (retained), disconnects cleanly, and lets a running trim end.
    async fn shut_down(&mut self, eventloop: &mut EventLoop) {
        info!(device = %self.cfg.device, "uplink shutting down");
        if self.core.status().connected {
            self.last_error = None;
            let payload = self.state_message(false).to_json();
            let _ = self
                .client
                .try_publish(&self.state_topic, QoS::AtLeastOnce, true, payload);
            let _ = self.client.try_disconnect();
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, async {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
        if let Some(job) = self.trim_job.take()
            && let Ok(r) = tokio::time::timeout(SHUTDOWN_FLUSH, job).await
        {
            self.on_trimmed(flatten(r));
        }
        self.core.handle_disconnected();
        self.publish_status();
    }
}

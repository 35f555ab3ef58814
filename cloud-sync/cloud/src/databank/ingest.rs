//! The MQTT side of the data bank: subscribes to event batches and device state, hands
//! valid work to the writer, and after each commit publishes the acknowledgement and only
//! then PUBACKs the message (manual acks), so a crash before the commit means redelivery.

use std::sync::Arc;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::time::Duration;

use caidan_sync::backoff::{backoff, random_seed};
use caidan_sync::broker_url::{BrokerUrl, BrokerUrlError};
use caidan_sync::clock::Clock;
use caidan_sync::contract::{self, Ack, Limits, Name, StateMessage};
use caidan_sync::keys::SecretKey;
use caidan_sync::tls::TlsFiles;
use caidan_sync::topics;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};

use super::metrics::Metrics;
use super::store::Work;
use super::store::dead_letter::DeadLetter;
use super::timeline::Timeline;
use super::writer::{Done, WriterHandle};

/// Filter of every device's event batches.
pub const EVENTS_FILTER: &str = "caidan/v1/+/d/+/events";
/// Filter of every device's retained state.
pub const STATE_FILTER: &str = "caidan/v1/+/d/+/state";

/// First reconnect delay after the broker connection is lost; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the ingester connects and subscribes.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `mqtt://` or `mqtts://`, with credentials (see [`caidan_sync::broker_url`]).
    pub broker: BrokerUrl,
    /// TLS files; override those named in the URL.
    pub tls: TlsFiles,
    /// Stable per ingester, so the broker keeps its session across restarts.
    pub client_id: String,
    /// Shared-subscription group (`$share/{group}/...`); `None` subscribes plainly.
    pub shared_group: Option<String>,
    pub limits: Limits,
    /// Crash (abort) once this many batches are committed, before acknowledging: a test hook
    /// standing in for `kill -9` between store and ack.
    pub crash_after_commits: Option<u64>,
    /// Signs every acknowledgement; devices trust its public key.
    pub ack_key: SecretKey,
    /// Take event batches from this NATS server (`nats://host:port`) as one member of the
    /// queue group (`shared_group`, else `databank`) instead of subscribing to them over MQTT:
    /// NATS has no MQTT shared subscriptions. State and acknowledgements stay on MQTT.
    pub nats: Option<String>,
}

/// Where a message the writer handles came from, so it is confirmed the right way after the
/// commit.
#[derive(Debug)]
pub enum Origin {
    /// PUBACKed after the commit.
    Mqtt(Publish),
    /// A NATS core delivery: nothing to confirm; a batch lost before its commit comes again
    /// from the device, which resends until it is acknowledged.
    Nats,
}

/// NATS subject of every device's event batches (the MQTT topic with `.` for `/`).
pub const EVENTS_SUBJECT: &str = "caidan.v1.*.d.*.events";

impl IngestConfig {
    /// The NATS queue group event batches are shared in.
    pub fn queue_group(&self) -> String {
        self.shared_group
            .clone()
            .unwrap_or_else(|| "databank".into())
    }

    /// The events subscription filter, shared or plain.
    pub fn events_filter(&self) -> String {
        match &self.shared_group {
            Some(g) => format!("$share/{g}/{EVENTS_FILTER}"),
            None => EVENTS_FILTER.to_owned(),
        }
    }

    /// Connection options; fails on bad TLS files.
    pub fn mqtt_options(&self) -> Result<MqttOptions, BrokerUrlError> {
        let mut o = self.broker.mqtt_options(&self.client_id, &self.tls)?;
        o.set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000)
            // Far above the batch limit: an oversized batch must reach validation (and be
            // PUBACKed and dropped), not break the connection and come back forever.
            .set_max_packet_size((self.limits.max_batch_bytes * 4).max(16 << 20), 64 * 1024);
        Ok(o)
    }
}

/// Runs the ingester until `shutdown` turns true. Messages still in flight then are not
/// PUBACKed; the broker redelivers them to the next session and the store dedups them.
pub async fn run(
    cfg: IngestConfig,
    opts: MqttOptions,
    writer: WriterHandle<Origin>,
    done: mpsc::UnboundedReceiver<Done<Origin>>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    let timeline = Arc::new(std::sync::Mutex::new(Timeline::default()));
    let nats = cfg.nats.clone().map(|url| {
        tokio::spawn(nats_events(
            url,
            cfg.clone(),
            writer.clone(),
            metrics.clone(),
            (timeline.clone(), clock.clone()),
            shutdown.clone(),
        ))
    });
    // Acks go out one small message at a time: do not let Nagle's algorithm hold them.
    eventloop.network_options.set_tcp_nodelay(true);
    let acker = tokio::spawn(acknowledge(
        client.clone(),
        done,
        metrics.clone(),
        cfg.crash_after_commits,
        cfg.ack_key.clone(),
    ));
    let seed = random_seed(&cfg.client_id);
    let mut failures = 0u32;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                failures = 0;
                metrics.broker_connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(client_id = %cfg.client_id, session_present = c.session_present, "connected to broker");
                let mut filters = vec![(STATE_FILTER.to_owned(), QoS::AtLeastOnce)];
                if cfg.nats.is_none() {
                    filters.push((cfg.events_filter(), QoS::AtLeastOnce));
                }
                let subs = filters
                    .into_iter()
                    .map(|(path, qos)| rumqttc::SubscribeFilter::new(path, qos));
                if let Err(e) = client.try_subscribe_many(subs) {
                    tracing::error!(error = %e, "subscribe request failed");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                metrics.broker_subscribes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let now_ms = clock.now_ms();
                let work = {
                    let mut t = timeline.lock().unwrap_or_else(|e| e.into_inner());
                    work_of(&cfg, &metrics, (&mut t, now_ms), &p.topic, &p.payload)
                };
                let queued = match work {
                    Some(work) => writer.submit(work, Origin::Mqtt(p)).await,
                    // An empty retained message clears the retained state: nothing to store.
                    None => {
                        let _ = client.try_ack(&p);
                        true
                    }
                };
                if !queued {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = backoff(failures, INITIAL_BACKOFF, MAX_BACKOFF, seed);
                tracing::warn!(error = %e, attempt = failures, retry_in_ms = delay.as_millis() as u64, "broker connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        }
    }
    if let Some(n) = nats {
        let _ = n.await;
    }
    drop(writer);
    // Flush the acknowledgements of what was committed, briefly, then leave.
    let mut acker = acker;
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            tokio::select! {
                _ = &mut acker => break,
                r = eventloop.poll() => if r.is_err() { break },
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

/// What one incoming message is for the writer: data when it is valid, a dead letter with
/// its reason when not; `None` for an empty retained state (nothing to store). Either way the
/// message is confirmed only after the writer committed it, so nothing is lost and nothing
/// comes back in a loop.
fn work_of(
    cfg: &IngestConfig,
    metrics: &Metrics,
    (timeline, now_ms): (&mut Timeline, i64),
    topic: &str,
    payload: &[u8],
) -> Option<Work> {
    let work = {
        let set_aside = |reason: &'static str, detail: String| {
            metrics.reject(reason);
            Work::DeadLetter(DeadLetter::new(topic, reason, &detail, payload))
        };
        match topics::parse_device_topic(topic) {
            None => {
                tracing::warn!(topic = %contract::ids::shown(topic), "message on an unexpected topic, set aside");
                set_aside("unexpected_topic", "not a device topic".into())
            }
            Some((fleet, device, "events")) => {
                match contract::parse_batch(fleet, device, payload, cfg.limits) {
                    Ok(mut events) => {
                        let mut refs: Vec<_> = events.iter_mut().map(|r| &mut r.event).collect();
                        let moved = timeline.place(&mut refs, now_ms);
                        if moved > 0 {
                            metrics
                                .events_retimed
                                .fetch_add(moved as u64, Ordering::Relaxed);
                            tracing::info!(%fleet, %device, moved, "event times placed on the bank's clock (the device's clock is not believed)");
                        }
                        Work::Batch(events)
                    }
                    Err(e) => {
                        tracing::warn!(reason = e.reason(), error = %e, "batch rejected, set aside");
                        set_aside(e.reason(), e.to_string())
                    }
                }
            }
            Some((_, _, "state")) if payload.is_empty() => return None,
            Some((fleet, device, "state")) => match (Name::new(fleet), Name::new(device)) {
                (Ok(fleet), Ok(device)) => match StateMessage::parse(payload) {
                    Ok(state) => {
                        if let Some(c) = &state.clock {
                            timeline.note_state(fleet.as_str(), device.as_str(), c, now_ms);
                        }
                        Work::State {
                            fleet,
                            device,
                            state: Box::new(state),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%fleet, %device, error = %e, "state message set aside");
                        set_aside("garbled_state", e.to_string())
                    }
                },
                _ => set_aside(
                    "garbled_state",
                    "fleet or device is not a valid name".into(),
                ),
            },
            Some(_) => set_aside("unexpected_topic", "not a topic the data bank reads".into()),
        }
    };
    Some(work)
}

/// Takes event batches from NATS as one member of the queue group until `shutdown`; every
/// batch goes to exactly one member. Reconnects on its own (the client's backoff).
async fn nats_events(
    url: String,
    cfg: IngestConfig,
    writer: WriterHandle<Origin>,
    metrics: Arc<Metrics>,
    (timeline, clock): (Arc<std::sync::Mutex<Timeline>>, Arc<dyn Clock>),
    mut shutdown: watch::Receiver<bool>,
) {
    use futures_util::StreamExt as _;
    let options = async_nats::ConnectOptions::new()
        .name(&cfg.client_id)
        .retry_on_initial_connect();
    let client = match options.connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%url, error = %e, "NATS connection failed: no event batches will be taken");
            return;
        }
    };
    let group = cfg.queue_group();
    let mut subscription = match client.queue_subscribe(EVENTS_SUBJECT, group.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%url, error = %e, "NATS queue subscription failed");
            return;
        }
    };
    // The server has the subscription once a flush round trip is back.
    let _ = client.flush().await;
    metrics.nats_subscribed.store(1, Ordering::Relaxed);
    tracing::info!(%url, subject = EVENTS_SUBJECT, %group, "taking event batches from NATS as a queue group member");
    loop {
        let message = tokio::select! {
            m = subscription.next() => m,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let Some(message) = message else { break };
        let topic = message.subject.as_str().replace('.', "/");
        let now_ms = clock.now_ms();
        let work = {
            let mut t = timeline.lock().unwrap_or_else(|e| e.into_inner());
            work_of(&cfg, &metrics, (&mut t, now_ms), &topic, &message.payload)
        };
        if let Some(work) = work
            && !writer.submit(work, Origin::Nats).await
        {
            break;
        }
    }
    let _ = subscription.unsubscribe().await;
}

/// After each commit: publish the signed acknowledgements, then PUBACK the stored message.
async fn acknowledge(
    client: AsyncClient,
    mut done: mpsc::UnboundedReceiver<Done<Origin>>,
    metrics: Arc<Metrics>,
    crash_after_commits: Option<u64>,
    key: SecretKey,
) {
    while let Some((result, publish)) = done.recv().await {
        match result {
            Ok(outcome) => {
                if crash_after_commits.is_some_and(|n| metrics.batches_stored.load(Relaxed) >= n) {
                    tracing::error!("crash hook: aborting between store and acknowledgement");
                    std::process::abort();
                }
                for p in outcome.acks {
                    let ack = Ack::signed(&p.fleet, &p.device, p.epoch, p.seq, &key);
                    let payload = ack.to_json();
                    tracing::debug!(fleet = %p.fleet, device = %p.device, epoch = %ack.epoch, seq = ack.seq, "ack");
                    if client
                        .publish(
                            topics::ack(&p.fleet, &p.device),
                            QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .await
                        .is_err()
                    {
                        return;
                    }
                    metrics.acks_published.fetch_add(1, Relaxed);
                }
                if let Origin::Mqtt(publish) = &publish
                    && client.ack(publish).await.is_err()
                {
                    return;
                }
            }
            Err(e) => {
                // Not PUBACKed: the broker redelivers it on the next session.
                tracing::error!(error = %e, "batch not stored; left unacknowledged");
            }
        }
    }
}

//! The operator's broker connection. One task owns rumqttc's event loop and the bookkeeping
//! of what the broker acknowledged; a command holds a [`Connection`] handle that publishes
//! (retained, QoS 1, returning once the broker's PUBACK is in), subscribes (once the SUBACK
//! is in) and reads what arrives. A lost connection ends the command: an operator command is
//! short and says what it did; it does not carry on blind.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::tls::TlsFiles;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS, SubscribeReasonCode};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::FleetError;

/// How long to wait for the broker to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a PUBACK or a SUBACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests rumqttc buffers between this handle and its event loop.
const REQUESTS: usize = 256;

/// A message as the broker delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Delivered because it was retained (on subscribing), not published just now.
    pub retain: bool,
}

enum Inbound {
    Message(Message),
    Lost(String),
}

type SubResult = Result<(), ()>;

/// Waiters for broker acknowledgements, in the order their requests went to rumqttc, which
/// hands out packet ids in that same order.
#[derive(Default)]
struct Waiters {
    publishes: VecDeque<oneshot::Sender<()>>,
    subscribes: VecDeque<oneshot::Sender<SubResult>>,
}

/// A handle on the connection.
pub struct Connection {
    url: String,
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    /// Held from queueing a waiter until its request is in rumqttc's channel, so both
    /// queues keep one order.
    order: tokio::sync::Mutex<()>,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    task: tokio::task::JoinHandle<()>,
}

/// A client id no other operator session uses.
pub fn client_id() -> String {
    format!(
        "caidan-operator-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl Connection {
    /// Connects to `broker` and waits until the broker accepts.
    pub async fn open(broker: &BrokerUrl, tls: &TlsFiles) -> Result<Connection, FleetError> {
        let url = broker.to_string();
        let mut opts = broker.mqtt_options(&client_id(), tls)?;
        opts.set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30));
        let (client, eventloop) = AsyncClient::new(opts, REQUESTS);
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let (up_tx, up_rx) = oneshot::channel();
        let task = tokio::spawn(drive(eventloop, waiters.clone(), inbound_tx, up_tx));
        match tokio::time::timeout(CONNECT_TIMEOUT, up_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(reason))) => return Err(FleetError::Connect { url, reason }),
            Ok(Err(_)) => {
                return Err(FleetError::Connect {
                    url,
                    reason: "the connection task ended".into(),
                });
            }
            Err(_) => {
                task.abort();
                return Err(FleetError::ConnectTimeout {
                    url,
                    secs: CONNECT_TIMEOUT.as_secs(),
                });
            }
        }
        Ok(Connection {
            url,
            client,
            waiters,
            order: tokio::sync::Mutex::new(()),
            inbound,
            task,
        })
    }

    /// The broker, as printed (no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Subscribes to `filters` at QoS 1; returns once the broker granted every one.
    pub async fn subscribe(&self, filters: &[String]) -> Result<(), FleetError> {
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.order.lock().await;
            self.waiters
                .lock()
                .expect("waiters")
                .subscribes
                .push_back(tx);
            let subs = filters
                .iter()
                .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
            self.client
                .subscribe_many(subs)
                .await
                .map_err(|e| FleetError::ConnectionLost(e.to_string()))?;
        }
        let what = || filters.join(", ");
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(()))) => Err(FleetError::SubscribeRefused(what())),
            Ok(Err(_)) => Err(FleetError::ConnectionLost(format!(
                "while subscribing to {}",
                what()
            ))),
            Err(_) => Err(FleetError::BrokerTimeout {
                what: format!("the subscription to {}", what()),
                secs: ACK_TIMEOUT.as_secs(),
            }),
        }
    }

    /// Queues a retained QoS 1 publish; await the returned [`Published`] for its PUBACK.
    /// An empty payload clears what the topic retains.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<Published, FleetError> {
        let (tx, rx) = oneshot::channel();
        let _order = self.order.lock().await;
        self.waiters
            .lock()
            .expect("waiters")
            .publishes
            .push_back(tx);
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .map_err(|e| FleetError::ConnectionLost(e.to_string()))?;
        Ok(Published {
            topic: topic.to_owned(),
            rx,
        })
    }

    /// Publishes retained and waits for the broker's PUBACK.
    pub async fn publish_acked(&self, topic: &str, payload: Vec<u8>) -> Result<(), FleetError> {
        self.publish(topic, payload).await?.acked().await
    }

    /// The next message, or `None` once `until` passes.
    pub async fn next(&mut self, until: Instant) -> Result<Option<Message>, FleetError> {
        match tokio::time::timeout_at(until, self.inbound.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(Inbound::Message(m))) => Ok(Some(m)),
            Ok(Some(Inbound::Lost(reason))) => Err(FleetError::ConnectionLost(reason)),
            Ok(None) => Err(FleetError::ConnectionLost(
                "the connection task ended".into(),
            )),
        }
    }

    /// Everything that arrives until nothing has for `quiet`, or `total` has passed: the
    /// retained messages of what was just subscribed to.
    pub async fn collect(
        &mut self,
        quiet: Duration,
        total: Duration,
    ) -> Result<Vec<Message>, FleetError> {
        let end = Instant::now() + total;
        let mut out = Vec::new();
        loop {
            let until = (Instant::now() + quiet).min(end);
            match self.next(until).await? {
                Some(m) => out.push(m),
                None => return Ok(out),
            }
        }
    }

    /// Disconnects cleanly (everything acknowledged was already waited for); the task ends
    /// when the broker closes the socket.
    pub async fn close(self) {
        let _ = self.client.disconnect().await;
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// A publish on its way; [`Published::acked`] returns once the broker has it.
pub struct Published {
    topic: String,
    rx: oneshot::Receiver<()>,
}

impl Published {
    pub async fn acked(self) -> Result<(), FleetError> {
        match tokio::time::timeout(ACK_TIMEOUT, self.rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(FleetError::ConnectionLost(format!(
                "before the broker acknowledged {}",
                self.topic
            ))),
            Err(_) => Err(FleetError::BrokerTimeout {
                what: format!("the publish to {}", self.topic),
                secs: ACK_TIMEOUT.as_secs(),
            }),
        }
    }
}

/// Owns the event loop: matches acknowledgements to waiters and forwards messages.
async fn drive(
    mut eventloop: EventLoop,
    waiters: Arc<Mutex<Waiters>>,
    inbound: mpsc::UnboundedSender<Inbound>,
    up: oneshot::Sender<Result<(), String>>,
) {
    let mut up = Some(up);
    let mut publishes: HashMap<u16, oneshot::Sender<()>> = HashMap::new();
    let mut subscribes: HashMap<u16, oneshot::Sender<SubResult>> = HashMap::new();
    loop {
        let event = match eventloop.poll().await {
            Ok(e) => e,
            Err(e) => {
                let reason = e.to_string();
                match up.take() {
                    Some(up) => {
                        let _ = up.send(Err(reason));
                    }
                    None => {
                        let _ = inbound.send(Inbound::Lost(reason));
                    }
                }
                // Dropping the waiters tells everyone still waiting that it is over.
                return;
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                if let Some(up) = up.take() {
                    let _ = up.send(if ack.code == rumqttc::ConnectReturnCode::Success {
                        Ok(())
                    } else {
                        Err(format!("refused: {:?}", ack.code))
                    });
                }
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(w) = waiters.lock().expect("waiters").publishes.pop_front() {
                    publishes.insert(pkid, w);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(w) = publishes.remove(&ack.pkid) {
                    let _ = w.send(());
                }
            }
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if let Some(w) = waiters.lock().expect("waiters").subscribes.pop_front() {
                    subscribes.insert(pkid, w);
                }
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                if let Some(w) = subscribes.remove(&ack.pkid) {
                    let granted = ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                    let _ = w.send(if granted { Ok(()) } else { Err(()) });
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                let _ = inbound.send(Inbound::Message(Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                }));
            }
            _ => {}
        }
    }
}

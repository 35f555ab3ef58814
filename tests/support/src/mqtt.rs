//! Publishing as a cloud service would (the order system, an operator): one message at
//! QoS 1 from a fresh client, confirmed by the broker's PUBACK before returning.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

static CLIENTS: AtomicU64 = AtomicU64::new(0);

/// Publishes `payload` on `topic` of the broker on 127.0.0.1:`port` and waits (10 s at
/// most) for the broker to confirm it.
pub async fn publish_confirmed(port: u16, topic: &str, payload: Vec<u8>, retain: bool) {
    let id = format!(
        "test-publisher-{}-{}",
        std::process::id(),
        CLIENTS.fetch_add(1, Ordering::Relaxed)
    );
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .expect("publish queued");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) =
                eventloop.poll().await.expect("broker reachable")
            {
                return;
            }
        }
    })
    .await
    .expect("the broker confirmed the message");
}

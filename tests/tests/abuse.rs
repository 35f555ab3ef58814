//! A hostile world against the real agent and broker: forged acknowledgements on an open
//! broker, and a 2 MB retained junk message on the ack topic. The outbox is never trimmed
//! by anything but the data bank's signed acknowledgement, the connection holds, and the
//! backlog still reaches the data bank exactly once.

use std::time::Duration;

use caidan_e2e::{Agent, Databank, Mosquitto, agent_outbox, claim_many, metric, wait_until};
use caidan_sync::contract::Ack;
use caidan_sync::keys::SecretKey;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const DEVICE: &str = "demo-cinema-01";
const ACK_TOPIC: &str = "caidan/v1/demo/d/demo-cinema-01/ack";

/// A plain MQTT client on `port`, connected before it returns.
async fn attacker(port: u16) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut o = MqttOptions::new("attacker", "127.0.0.1", port);
    o.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(ev) = eventloop.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = ev {
                let _ = tx.take().map(|t| t.send(()));
            }
        }
    });
    rx.await.expect("attacker connected");
    (client, task)
}

fn demo_bank_key() -> SecretKey {
    SecretKey::load(&caidan_testkit::repo::demo_ack_key()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_acknowledgements_leave_the_outbox_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    let broker = Mosquitto::plain(dir.path());
    // A backlog, then the agent online with no data bank: nothing may be trimmed.
    let offline = Agent::start(&data, None);
    assert_eq!(claim_many(&offline, "forge", 1_000, 8).await, 1_000);
    drop(offline);
    // The claims and the catalogue's first stock count.
    let backlog = agent_outbox(&data).0;
    assert!(backlog > 1_000, "{backlog}");
    let agent = Agent::start(&data, Some(&broker.url()));
    let sent = || metric(&agent, "caidan_uplink_batches_sent").unwrap_or(0.0);
    assert!(
        wait_until(Duration::from_secs(20), || sent() > 0.0),
        "never sent"
    );
    let epoch: uuid::Uuid = caidan_testkit::agent_epoch(&data).parse().unwrap();

    let (mqtt, task) = attacker(broker.port).await;
    let forgeries = [
        // Unsigned, exactly as in the report that found the hole.
        format!(r#"{{"epoch":"{epoch}","seq":999999999}}"#).into_bytes(),
        // Signed, but by a key the device does not trust.
        Ack::signed("demo", DEVICE, epoch, 999_999_999, &SecretKey::generate()).to_json(),
        // A genuine data bank signature, made for another device and replayed here.
        Ack::signed(
            "demo",
            "demo-cinema-02",
            epoch,
            999_999_999,
            &demo_bank_key(),
        )
        .to_json(),
        // A genuine signature with its seq raised.
        {
            let mut a = Ack::signed("demo", DEVICE, epoch, 1, &demo_bank_key());
            a.seq = 999_999_999;
            a.to_json()
        },
    ];
    for f in &forgeries {
        mqtt.publish(ACK_TOPIC, QoS::AtLeastOnce, false, f.clone())
            .await
            .unwrap();
    }
    let refused = || metric(&agent, "caidan_uplink_acks_refused").unwrap_or(0.0);
    assert!(
        wait_until(Duration::from_secs(10), || refused() >= 4.0),
        "the agent did not see the forgeries: {}",
        refused()
    );
    assert_eq!(
        agent_outbox(&data).0,
        backlog,
        "a forgery trimmed the outbox"
    );
    assert_eq!(metric(&agent, "caidan_uplink_acked_seq"), Some(0.0));
    task.abort();

    // The real data bank then drains it, once.
    let bank = Databank::start(dir.path(), &broker.url(), &[]);
    assert!(
        wait_until(Duration::from_secs(60), || agent_outbox(&data).0 == 0
            && bank.counts().events == agent_outbox(&data).1),
        "not drained: {:?}",
        bank.counts()
    );
    let c = bank.counts();
    assert_eq!((c.claims, c.duplicate_seqs), (1_000, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2mb_retained_junk_ack_does_not_cut_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    let broker = Mosquitto::plain(dir.path());
    let (mqtt, task) = attacker(broker.port).await;
    mqtt.publish(ACK_TOPIC, QoS::AtLeastOnce, true, vec![b'x'; 2 << 20])
        .await
        .unwrap();
    let bank = Databank::start(dir.path(), &broker.url(), &[]);
    let agent = Agent::start(&data, Some(&broker.url()));
    assert_eq!(claim_many(&agent, "junk", 500, 8).await, 500);
    assert!(
        wait_until(Duration::from_secs(60), || agent_outbox(&data).0 == 0
            && bank.counts().claims == 500),
        "not synced: {:?}, outbox {:?}\n{}",
        bank.counts(),
        agent_outbox(&data),
        agent.proc.log_text()
    );
    assert!(metric(&agent, "caidan_uplink_acks_refused").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        metric(&agent, "caidan_uplink_connects"),
        Some(1.0),
        "the junk cost a reconnect"
    );
    task.abort();
}

//! The shipped broker ACL (`examples/mosquitto/acl`) on a real Mosquitto with mutual TLS,
//! where the certificate's common name is the user: every publish the ACL forbids is
//! dropped, every one it allows arrives. A test-only auditor reads everything; each client
//! publishes its forbidden messages, then an allowed marker, and Mosquitto keeps one
//! client's messages in order, so once the markers are in, the forbidden ones would be too.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::tls::TlsFiles;
use caidan_testkit::{Mosquitto, TestPki};
use rumqttc::{AsyncClient, Event, Packet, QoS};

/// Messages received, as (topic, payload).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A connected client with identity `name`, recording what it receives.
struct Client {
    client: AsyncClient,
    seen: Received,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(url: &str, pki: &TestPki, name: &str, subscribe: &[&str]) -> Client {
        let id = pki.issue(name, &[]);
        let tls = TlsFiles {
            ca: Some(id.ca),
            client_cert: Some(id.cert),
            client_key: Some(id.key),
        };
        let url: BrokerUrl = url.parse().unwrap();
        let opts = url
            .mqtt_options(&format!("acl-{}", name.replace('/', "-")), &tls)
            .unwrap();
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (sink, c, filters) = (
            seen.clone(),
            client.clone(),
            subscribe.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut pending = filters.len();
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            c.subscribe(f, QoS::AtLeastOnce).await.unwrap();
                        }
                        if filters.is_empty() {
                            let _ = ready.take().map(|r| r.send(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        pending = pending.saturating_sub(1);
                        if pending == 0 {
                            let _ = ready.take().map(|r| r.send(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => sink
                        .lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec())),
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("connected and subscribed")
            .unwrap();
        Client { client, seen, task }
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    fn topics(&self) -> HashSet<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(t, p)| format!("{t} {}", String::from_utf8_lossy(p)))
            .collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_acl_refuses_every_forbidden_publish() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    // The shipped ACL, plus a test-only auditor that reads everything.
    let acl = dir.path().join("acl");
    let shipped = caidan_testkit::repo::read("cloud-sync/cloud/examples/mosquitto/acl");
    std::fs::write(&acl, format!("{shipped}\nuser auditor\ntopic read #\n")).unwrap();
    let extra = format!(
        "{}use_identity_as_username true\nallow_anonymous false\nacl_file {}",
        pki.mosquitto_tls(true),
        acl.display()
    );
    let broker = Mosquitto::start(dir.path(), &extra);
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let auditor = Client::connect(&url, &pki, "auditor", &["#"]).await;
    let kiosk2 = Client::connect(
        &url,
        &pki,
        "demo/d/kiosk-2",
        &["caidan/v1/demo/d/kiosk-1/#"],
    )
    .await;
    let kiosk1 = Client::connect(
        &url,
        &pki,
        "demo/d/kiosk-1",
        &["caidan/v1/demo/d/kiosk-1/ack"],
    )
    .await;
    let bank = Client::connect(&url, &pki, "databank", &[]).await;
    let orders = Client::connect(&url, &pki, "orders", &[]).await;
    let operator = Client::connect(&url, &pki, "operator", &[]).await;

    let d = |device: &str, leaf: &str| format!("caidan/v1/demo/d/{device}/{leaf}");
    // What each identity may not publish, then one message it may: its marker.
    let plan: Vec<(&Client, Vec<String>, String)> = vec![
        (
            &kiosk1,
            vec![
                d("kiosk-2", "events"),
                d("kiosk-2", "state"),
                d("kiosk-2", "config/ack"),
                d("kiosk-1", "ack"),
                d("kiosk-1", "orders"),
                d("kiosk-1", "config"),
                d("kiosk-1", "config/rollout"),
                "caidan/v1/demo/config".into(),
                "caidan/v1/demo/g/shanghai/config".into(),
                "caidan/v1/other/d/kiosk-1/events".into(),
                "caidan/v1/other/d/kiosk-1/state".into(),
            ],
            d("kiosk-1", "events"),
        ),
        (
            &bank,
            vec![
                d("kiosk-1", "events"),
                d("kiosk-1", "config"),
                d("kiosk-1", "config/rollout"),
                d("kiosk-1", "orders"),
            ],
            d("kiosk-1", "ack"),
        ),
        (
            &orders,
            vec![
                d("kiosk-1", "ack"),
                d("kiosk-1", "config"),
                "caidan/v1/demo/config".into(),
            ],
            d("kiosk-1", "orders"),
        ),
        (
            &operator,
            vec![
                d("kiosk-1", "ack"),
                d("kiosk-1", "orders"),
                d("kiosk-1", "events"),
            ],
            "caidan/v1/demo/config".into(),
        ),
    ];
    for (client, forbidden, marker) in &plan {
        for topic in forbidden {
            client.publish(topic, "forbidden").await;
        }
        client.publish(marker, "marker").await;
    }
    // The device's own state and config result are allowed too.
    kiosk1.publish(&d("kiosk-1", "state"), "allowed").await;
    kiosk1.publish(&d("kiosk-1", "config/ack"), "allowed").await;

    let expected: HashSet<String> = plan
        .iter()
        .map(|(_, _, m)| format!("{m} marker"))
        .chain([
            format!("{} allowed", d("kiosk-1", "state")),
            format!("{} allowed", d("kiosk-1", "config/ack")),
        ])
        .collect();
    assert!(
        caidan_testkit::eventually(Duration::from_secs(10), || auditor
            .topics()
            .is_superset(&expected))
        .await,
        "allowed messages missing: {:?}",
        expected.difference(&auditor.topics()).collect::<Vec<_>>()
    );
    let leaked: Vec<String> = auditor
        .topics()
        .into_iter()
        .filter(|t| t.ends_with(" forbidden"))
        .collect();
    assert!(leaked.is_empty(), "the ACL let these through: {leaked:?}");

    // Reads: kiosk-1 got the bank's acknowledgement; kiosk-2 sees nothing of kiosk-1's.
    assert!(
        caidan_testkit::eventually(Duration::from_secs(10), || kiosk1
            .topics()
            .contains(&format!("{} marker", d("kiosk-1", "ack"))))
        .await
    );
    assert!(
        kiosk2.topics().is_empty(),
        "kiosk-2 read kiosk-1's topics: {:?}",
        kiosk2.topics()
    );
}

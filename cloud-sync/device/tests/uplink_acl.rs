//! The example ACL (`cloud-sync/cloud/examples/mosquitto/acl`) on a mutual-TLS Mosquitto listener where the
//! certificate CN is the username: a device reaches the data bank under its own topics and
//! nothing it publishes under another device's topics arrives.

mod common;

use std::sync::Arc;
use std::time::Duration;

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::topics;
use common::*;
use rumqttc::{AsyncClient, Event, Packet, QoS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_cannot_publish_under_another_devices_topic() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let kiosk1 = tls(&pki.issue("kiosk-1", &[]));
    let databank = tls(&pki.issue("databank", &[]));
    let acl = caidan_testkit::repo::root().join("cloud-sync/cloud/examples/mosquitto/acl");
    let extra = format!(
        "{}use_identity_as_username true\nallow_anonymous false\nacl_file {}",
        pki.mosquitto_tls(true),
        acl.display()
    );
    let broker = Mosquitto::start(dir.path(), &extra);
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let broker_url: BrokerUrl = url.parse().unwrap();
    let bank = FakeBank::start(&url, &databank);

    // A second ingester on a shared subscription, as the data bank runs in production.
    let mut opts = broker_url
        .mqtt_options("databank-shared", &databank)
        .unwrap();
    opts.set_clean_session(true);
    let (shared, mut shared_loop) = AsyncClient::new(opts, 100);
    let shared_seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = shared_seen.clone();
    let shared_task = tokio::spawn(async move {
        loop {
            match shared_loop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = shared
                        .try_subscribe("$share/ingest/caidan/v1/+/d/+/events", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => seen.lock().unwrap().push(p.topic),
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });

    // The real uplink of kiosk-1 syncs under its own topics, acks included.
    let outbox = FakeOutbox::new("kiosk-1");
    outbox.append(100);
    let mut cfg = test_config("kiosk-1", &url);
    cfg.tls = kiosk1.clone();
    let up = Running::start(cfg, &outbox);
    assert!(
        wait_until(20, || outbox.len() == 0).await,
        "own topics blocked? {:?}",
        up.handle.status()
    );

    // kiosk-1 forges under kiosk-2's events, state and ack topics, then publishes a marker
    // under its own topic. Mosquitto processes one client's messages in order, so once the
    // marker arrives, the forgeries would have too.
    let mut opts = broker_url
        .mqtt_options("caidan-demo-kiosk-1-forger", &kiosk1)
        .unwrap();
    opts.set_clean_session(true);
    let (forger, mut forger_loop) = AsyncClient::new(opts, 100);
    let forged_events = topics::events(FLEET, "kiosk-2");
    forger
        .publish(&forged_events, QoS::AtLeastOnce, false, b"[]".to_vec())
        .await
        .unwrap();
    forger
        .publish(
            topics::state(FLEET, "kiosk-2"),
            QoS::AtLeastOnce,
            true,
            br#"{"online":false}"#.to_vec(),
        )
        .await
        .unwrap();
    let marker = topics::events(FLEET, "kiosk-1");
    forger
        .publish(&marker, QoS::AtLeastOnce, false, b"[]".to_vec())
        .await
        .unwrap();
    let forger_task = tokio::spawn(async move { while forger_loop.poll().await.is_ok() {} });

    let marker_seen =
        |b: &mut BankState| b.deliveries_by_device.get("kiosk-1").copied().unwrap_or(0);
    let before = bank.with(marker_seen);
    assert!(before >= 2, "kiosk-1's own batches arrived");
    assert!(
        wait_until(10, || bank.with(marker_seen) > before
            || bank.with(|b| b.rejected) > 0)
        .await,
        "the marker under kiosk-1's own topic arrives"
    );
    bank.with(|b| {
        assert_eq!(
            b.deliveries_by_device.get("kiosk-2"),
            None,
            "forged events arrived"
        );
        assert!(!b.states.contains_key("kiosk-2"), "forged state arrived");
    });
    assert!(wait_until(10, || shared_seen.lock().unwrap().contains(&marker)).await);
    assert!(!shared_seen.lock().unwrap().contains(&forged_events));

    up.shutdown().await;
    forger_task.abort();
    shared_task.abort();
}

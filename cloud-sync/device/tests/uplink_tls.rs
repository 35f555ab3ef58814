//! The uplink over `mqtts://` against Mosquitto TLS listeners, with certificates made here.

mod common;

use std::time::Duration;

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::tls::TlsFiles;
use caidan_sync::uplink::UplinkConfig;
use common::*;
use rumqttc::{AsyncClient, Event, Packet};

/// Delivers 300 events from `device` with `tls` through `url`; the bank connects with
/// `bank_url` and `bank_tls`.
async fn delivers(url: &str, device: &str, tls: TlsFiles, bank_url: &str, bank_tls: &TlsFiles) {
    let bank = FakeBank::start(bank_url, bank_tls);
    let outbox = FakeOutbox::new(device);
    outbox.append(300);
    let mut cfg = test_config(device, url);
    cfg.tls = tls;
    let up = Running::start(cfg, &outbox);
    let epoch = outbox.epoch_str();
    assert!(
        wait_until(20, || outbox.len() == 0).await,
        "not drained over TLS: {:?}",
        up.handle.status()
    );
    bank.with(|b| assert_eq!(b.contiguous(device, &epoch), 300));
    up.shutdown().await;
}

/// Starts an uplink expected never to connect; returns its last error.
async fn never_connects(cfg: UplinkConfig) -> String {
    let outbox = FakeOutbox::new(&cfg.device);
    outbox.append(3);
    let up = Running::start(cfg, &outbox);
    // Three refused attempts in a row, each after its backoff.
    assert!(wait_until(10, || up.handle.status().failures >= 3).await);
    let status = up.handle.status();
    assert_eq!(status.connects, 0, "{status:?}");
    assert_eq!(outbox.len(), 3);
    up.shutdown().await;
    status.last_error.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_tls_verifies_server_against_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let extra = format!("{}allow_anonymous true", pki.mosquitto_tls(false));
    let broker = Mosquitto::start(dir.path(), &extra);
    // IP address SAN for the uplink, DNS name SAN for the bank.
    let ip_url = format!("mqtts://127.0.0.1:{}", broker.port);
    let name_url = format!(
        "mqtts://localhost:{}?ca={}",
        broker.port,
        pki.ca().display()
    );
    delivers(
        &ip_url,
        "kiosk-t1",
        ca_only(&pki),
        &name_url,
        &TlsFiles::default(),
    )
    .await;

    // A CA that did not sign the server certificate: the uplink refuses the broker.
    let other = tempfile::tempdir().unwrap();
    let other_pki = TestPki::new(other.path());
    let mut cfg = test_config("kiosk-t2", &ip_url);
    cfg.tls = ca_only(&other_pki);
    let err = never_connects(cfg).await;
    assert!(err.contains("ertificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_mutual_tls_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let device = tls(&pki.issue("kiosk-m1", &[]));
    let bank = tls(&pki.issue("databank", &[]));
    let extra = format!("{}allow_anonymous true", pki.mosquitto_tls(true));
    let broker = Mosquitto::start(dir.path(), &extra);
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    delivers(&url, "kiosk-m1", device, &url, &bank).await;

    // Same CA, no client certificate: the TLS handshake is refused.
    let mut cfg = test_config("kiosk-m2", &url);
    cfg.tls = ca_only(&pki);
    never_connects(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client_is_refused_by_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let extra = format!("{}allow_anonymous true", pki.mosquitto_tls(false));
    let broker = Mosquitto::start(dir.path(), &extra);
    let plain = format!("mqtt://127.0.0.1:{}", broker.port);

    let url: BrokerUrl = plain.parse().unwrap();
    let mut opts = url
        .mqtt_options("plain-probe", &TlsFiles::default())
        .unwrap();
    opts.set_keep_alive(Duration::from_secs(5));
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    let first = tokio::time::timeout(Duration::from_secs(15), eventloop.poll())
        .await
        .expect("the broker answers (by closing) within 15 s");
    assert!(
        !matches!(first, Ok(Event::Incoming(Packet::ConnAck(_)))),
        "plaintext CONNECT accepted: {first:?}"
    );

    never_connects(test_config("kiosk-p1", &plain)).await;
}

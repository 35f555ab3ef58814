//! The uplink over `mqtts://` against Mosquitto TLS listeners, with certificates made here.

mod uplink_support;

use std::sync::Arc;
use std::time::Duration;

use caidan_cloud_sync::transport::{TlsFiles, mqtt_options};
use caidan_cloud_sync::uplink::{UplinkConfig, UplinkHandle, spawn_uplink};
use rumqttc::{AsyncClient, Event, Packet};
use tokio::sync::{Notify, watch};
use uplink_support::*;

fn start(cfg: UplinkConfig, outbox: &Arc<FakeOutbox>) -> (UplinkHandle, watch::Sender<bool>) {
    let (stop, stopped) = watch::channel(false);
    let handle = spawn_uplink(cfg, outbox.clone(), Arc::new(Notify::new()), stopped).unwrap();
    (handle, stop)
}

async fn stop(handle: UplinkHandle, stop: watch::Sender<bool>) {
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), handle.join())
        .await
        .unwrap()
        .unwrap();
}

/// Delivers 300 events from `device` with `tls` through `url`; the bank connects with
/// `bank_url` and `bank_tls`.
async fn delivers(url: &str, device: &str, tls: TlsFiles, bank_url: &str, bank_tls: &TlsFiles) {
    let bank = FakeBank::start(bank_url, bank_tls);
    let outbox = FakeOutbox::new(device);
    outbox.append(300);
    let mut cfg = test_config(device, url);
    cfg.tls = tls;
    let (handle, s) = start(cfg, &outbox);
    let epoch = outbox.epoch_str().to_owned();
    assert!(
        wait_until(20, || outbox.len() == 0).await,
        "not drained over TLS: {:?}",
        handle.status()
    );
    bank.with(|b| assert_eq!(b.contiguous(device, &epoch), 300));
    stop(handle, s).await;
}

/// Starts an uplink expected never to connect; returns its last error.
async fn never_connects(cfg: UplinkConfig) -> String {
    let outbox = FakeOutbox::new(&cfg.device);
    outbox.append(3);
    let (handle, s) = start(cfg, &outbox);
    assert!(wait_until(10, || handle.status().last_error.is_some()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = handle.status();
    assert_eq!(status.connects, 0, "{status:?}");
    assert_eq!(outbox.len(), 3);
    stop(handle, s).await;
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
        pki.ca_only(),
        &name_url,
        &TlsFiles::default(),
    )
    .await;

    // A CA that did not sign the server certificate: the uplink refuses the broker.
    let other = tempfile::tempdir().unwrap();
    let other_pki = TestPki::new(other.path());
    let mut cfg = test_config("kiosk-t2", &ip_url);
    cfg.tls = other_pki.ca_only();
    let err = never_connects(cfg).await;
    assert!(err.contains("ertificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_mutual_tls_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let device = pki.issue("kiosk-m1", &[]);
    let bank = pki.issue("databank", &[]);
    let extra = format!("{}allow_anonymous true", pki.mosquitto_tls(true));
    let broker = Mosquitto::start(dir.path(), &extra);
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    delivers(&url, "kiosk-m1", device, &url, &bank).await;

    // Same CA, no client certificate: the TLS handshake is refused.
    let mut cfg = test_config("kiosk-m2", &url);
    cfg.tls = pki.ca_only();
    never_connects(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client_is_refused_by_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let extra = format!("{}allow_anonymous true", pki.mosquitto_tls(false));
    let broker = Mosquitto::start(dir.path(), &extra);
    let plain = format!("mqtt://127.0.0.1:{}", broker.port);

    let mut opts = mqtt_options(&plain, "plain-probe", &TlsFiles::default()).unwrap();
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

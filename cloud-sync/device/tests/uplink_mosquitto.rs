//! The uplink against a real Mosquitto process and a fake data bank: delivery, trimming only
//! on acknowledgement, resends, broker restarts, resume after an uplink restart, state.

mod common;

use std::sync::Arc;
use std::time::Duration;

use caidan_sync::clock::SystemClock;
use caidan_sync::contract::Name;
use caidan_sync::tls::TlsFiles;
use caidan_sync::uplink::{ShopperSignal, UplinkLinks, spawn_uplink};
use common::*;
use tokio::sync::{Notify, watch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_delivers_everything_and_trims_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let bank = FakeBank::start(&broker.url(), &TlsFiles::default());
    let outbox = FakeOutbox::new("kiosk-1");
    outbox.append(1_000);
    let up = Running::start(test_config("kiosk-1", &broker.url()), &outbox);
    // More commits while it runs, each followed by a wake as the agent does.
    for _ in 0..20 {
        outbox.append(25);
        up.wake.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let epoch = outbox.epoch_str().to_owned();
    assert!(
        wait_until(30, || outbox.len() == 0).await,
        "outbox not drained: {} left, bank has {}",
        outbox.len(),
        bank.with(|s| s.count("kiosk-1", &epoch))
    );
    bank.with(|s| {
        assert_eq!(s.contiguous("kiosk-1", &epoch), 1_500);
        assert_eq!(s.count("kiosk-1", &epoch), 1_500);
        assert_eq!(
            s.rejected, 0,
            "every batch passes the data bank's validation"
        );
    });
    let trims = outbox.trims();
    assert!(
        trims.windows(2).all(|t| t[0] < t[1]),
        "trims move forward: {trims:?}"
    );
    assert_eq!(trims.last(), Some(&1_500));
    assert_eq!(up.handle.status().acked_seq, 1_500);
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_never_trims_without_ack() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let bank = FakeBank::start(&broker.url(), &TlsFiles::default());
    bank.with(|s| s.ack = false);
    let outbox = FakeOutbox::new("kiosk-2");
    outbox.append(120);
    let up = Running::start(test_config("kiosk-2", &broker.url()), &outbox);
    let epoch = outbox.epoch_str().to_owned();
    // The broker PUBACKs and the bank stores every batch, but no acknowledgement comes.
    assert!(wait_until(10, || bank.with(|s| s.count("kiosk-2", &epoch)) == 120).await);
    // Each batch's ack timeout has passed once (a resend proves it): still nothing trimmed.
    assert!(
        wait_until(10, || up.handle.status().batches_resent >= 3).await,
        "unacked batches are resent"
    );
    assert_eq!(outbox.len(), 120);
    assert!(outbox.trims().is_empty());
    // Acks start: the next resend is acknowledged and the outbox drains.
    bank.with(|s| s.ack = true);
    assert!(wait_until(10, || outbox.len() == 0).await);
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_resends_batch_whose_ack_never_came() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let bank = FakeBank::start(&broker.url(), &TlsFiles::default());
    // The first two deliveries vanish after PUBACK, as when a broker drops queued messages.
    bank.with(|s| s.ignore_next = 2);
    let outbox = FakeOutbox::new("kiosk-3");
    outbox.append(200);
    let up = Running::start(test_config("kiosk-3", &broker.url()), &outbox);
    let epoch = outbox.epoch_str().to_owned();
    assert!(wait_until(20, || outbox.len() == 0).await);
    bank.with(|s| assert_eq!(s.contiguous("kiosk-3", &epoch), 200));
    let status = up.handle.status();
    assert!(status.batches_resent >= 1, "{status:?}");
    assert!(
        status.connected && status.connects == 1,
        "resent while connected: {status:?}"
    );
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_survives_broker_restart_without_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::plain(dir.path());
    let bank = FakeBank::start(&broker.url(), &TlsFiles::default());
    bank.with(|s| s.delay = Duration::from_millis(15));
    let outbox = FakeOutbox::new("kiosk-4");
    outbox.append(3_000);
    let up = Running::start(test_config("kiosk-4", &broker.url()), &outbox);
    let epoch = outbox.epoch_str().to_owned();
    assert!(wait_until(20, || bank.with(|s| s.count("kiosk-4", &epoch)) >= 300).await);
    broker.kill();
    assert!(
        bank.with(|s| s.count("kiosk-4", &epoch)) < 3_000,
        "restart happens mid-sync"
    );
    outbox.append(500);
    up.wake.notify_one();
    assert!(
        wait_until(10, || !up.handle.status().connected).await,
        "the uplink noticed the broker is gone"
    );
    broker.restart();
    assert!(
        wait_until(60, || outbox.len() == 0).await,
        "outbox not drained after the restart: {} left",
        outbox.len()
    );
    bank.with(|s| {
        assert_eq!(s.contiguous("kiosk-4", &epoch), 3_500);
        assert_eq!(s.count("kiosk-4", &epoch), 3_500);
    });
    assert!(up.handle.status().connects >= 2);
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_resumes_where_acknowledged_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let bank = FakeBank::start(&broker.url(), &TlsFiles::default());
    bank.with(|s| s.delay = Duration::from_millis(10));
    let outbox = FakeOutbox::new("kiosk-5");
    outbox.append(2_000);
    let epoch = outbox.epoch_str().to_owned();
    let up = Running::start(test_config("kiosk-5", &broker.url()), &outbox);
    assert!(wait_until(20, || !outbox.trims().is_empty()).await);
    up.shutdown().await;
    let left = outbox.len();
    assert!(
        left > 0 && left < 2_000,
        "stopped mid-sync with {left} left"
    );
    // A new process with the same outbox starts from its lowest record.
    let up = Running::start(test_config("kiosk-5", &broker.url()), &outbox);
    assert!(wait_until(30, || outbox.len() == 0).await);
    bank.with(|s| {
        assert_eq!(s.contiguous("kiosk-5", &epoch), 2_000);
        // Only batches unacknowledged at the stop may arrive twice.
        assert!(s.duplicates <= 8 * 50, "duplicates: {}", s.duplicates);
    });
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_publishes_retained_state_and_offline_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let bank = FakeBank::start(&broker.url(), &TlsFiles::default());
    let outbox = FakeOutbox::new("kiosk-6");
    outbox.append(5);
    let mut cfg = test_config("kiosk-6", &broker.url());
    cfg.config_version = Some(3);
    let up = Running::start(cfg, &outbox);
    let online = |v: &serde_json::Value| v["online"].as_bool();
    assert!(
        wait_until(10, || bank
            .with(|s| s.states.get("kiosk-6").and_then(online))
            == Some(true))
        .await
    );
    bank.with(|s| {
        let st = &s.states["kiosk-6"];
        assert_eq!(st["profile"], "kiosk-test");
        assert_eq!(st["config_version"], 3);
        assert!(st.get("outbox_depth").is_some() && st.get("last_error").is_some());
    });
    up.handle.set_config_version(Some(4));
    assert!(
        wait_until(10, || bank
            .with(|s| s.states["kiosk-6"]["config_version"] == 4))
        .await
    );
    up.shutdown().await;
    assert!(
        wait_until(10, || bank
            .with(|s| s.states.get("kiosk-6").and_then(online))
            == Some(false))
        .await
    );
}

/// The last will: an uplink whose process dies without a clean disconnect is marked offline.
#[test]
fn uplink_last_will_marks_device_offline() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::plain(dir.path());
    let outbox = FakeOutbox::new("kiosk-7");
    let device_rt = tokio::runtime::Runtime::new().unwrap();
    let (_stop, stopped) = watch::channel(false);
    let handle = {
        let _guard = device_rt.enter();
        let mut cfg = test_config("kiosk-7", &broker.url());
        cfg.profile = Name::new("vending").unwrap();
        let links = UplinkLinks {
            source: outbox.clone(),
            wake: Arc::new(Notify::new()),
            shoppers: Arc::new(ShopperSignal::default()),
            shutdown: stopped,
            clock: Arc::new(SystemClock::new()),
            inbound: None,
            config: None,
        };
        spawn_uplink(cfg, links).unwrap()
    };
    let test_rt = tokio::runtime::Runtime::new().unwrap();
    test_rt.block_on(async {
        let bank = FakeBank::start(&broker.url(), &TlsFiles::default());
        let online =
            |s: &mut BankState| s.states.get("kiosk-7").and_then(|v| v["online"].as_bool());
        assert!(wait_until(10, || bank.with(online) == Some(true)).await);
        assert!(handle.status().connected);
        // Dropping the runtime closes the socket without DISCONNECT, like a crash.
        device_rt.shutdown_background();
        assert!(wait_until(10, || bank.with(online) == Some(false)).await);
        bank.with(|s| {
            assert_eq!(s.states["kiosk-7"]["profile"], "vending");
            assert_eq!(s.states["kiosk-7"]["last_error"], "connection lost");
        });
    });
}

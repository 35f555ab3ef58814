//! The uplink's async driver on paused tokio time: no real sleeps, the timers jump. With no
//! broker listening, every connection attempt fails at once, so the time between attempts is
//! exactly the core's backoff schedule.

mod common;

use std::sync::Arc;
use std::time::Duration;

use caidan_sync::backoff::backoff;
use caidan_sync::clock::TokioClock;
use common::*;

const SEED: u64 = 42;

/// A loopback address nothing listens on.
fn closed_port_url() -> String {
    format!("mqtt://127.0.0.1:{}", caidan_testkit::free_port())
}

#[tokio::test(start_paused = true)]
async fn reconnect_attempts_follow_the_backoff_schedule_in_virtual_time() {
    let outbox = FakeOutbox::new("paused-1");
    outbox.append(5);
    let mut cfg = test_config("paused-1", &closed_port_url());
    cfg.core.backoff_seed = SEED;
    cfg.core.initial_backoff = Duration::from_secs(1);
    cfg.core.max_backoff = Duration::from_secs(60);
    let started = tokio::time::Instant::now();
    let up = Running::start_clocked(cfg.clone(), &outbox, Arc::new(TokioClock::new()));
    let mut status = up.handle.watch_status();
    // Attempt n+1 comes backoff(n) after failure n: the failures counter marks each.
    let mut expected = Duration::ZERO;
    for attempt in 1..=6u32 {
        status
            .wait_for(|s| s.failures >= attempt)
            .await
            .expect("uplink running");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= expected && elapsed < expected + Duration::from_millis(50),
            "failure {attempt} at {elapsed:?}, expected {expected:?}"
        );
        expected += backoff(
            attempt,
            cfg.core.initial_backoff,
            cfg.core.max_backoff,
            SEED,
        );
    }
    assert!(
        started.elapsed() > Duration::from_secs(15),
        "backoff doubled"
    );
    assert_eq!(up.handle.status().connects, 0);
    assert_eq!(outbox.len(), 5, "nothing trimmed without a data bank");
    // Shutdown while disconnected ends at once, without waiting out the backoff.
    let before = tokio::time::Instant::now();
    up.shutdown().await;
    assert!(before.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_clean_shutdown_before_any_connection_leaves_the_outbox_alone() {
    let outbox = FakeOutbox::new("paused-2");
    outbox.append(3);
    let cfg = test_config("paused-2", &closed_port_url());
    let up = Running::start_clocked(cfg, &outbox, Arc::new(TokioClock::new()));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let status = up.handle.status();
    assert!(
        status.failures >= 5,
        "an hour of virtual retries: {status:?}"
    );
    assert!(status.last_error.is_some());
    up.shutdown().await;
    assert_eq!(outbox.len(), 3);
    assert!(outbox.trims().is_empty());
}

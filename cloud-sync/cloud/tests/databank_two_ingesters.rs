//! Two data banks (ingesters) on ONE SQLite store file, splitting one MQTT shared
//! subscription: batches of one device land on both, and each acknowledges the store's true
//! highest contiguous seq, merged with what the other committed, without any resend.
//!
//! Ordering: each ingester's own acks never move backwards, and in lockstep (one batch in
//! flight) the device sees exactly 10, 20, 30, ... But the two ingesters publish on two
//! broker connections, and MQTT orders nothing across publishers: during the burst an ack
//! committed earlier by one ingester may reach the device after a higher one from the other
//! (the uplink ignores it as stale). So the burst checks what is guaranteed: no ack ahead of
//! the store, one ack per batch, and the highest reaching the end promptly.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::{Mosquitto, TestClient};

const DEVICE: &str = "t1";
const EPOCH: &str = "0195a0c4-0000-7000-8000-0000000000f1";
const BATCHES: u64 = 200;
const PER_BATCH: u64 = 10;
/// Batches published one at a time, each waiting for its ack (no overlap between the two
/// ingesters); the rest are published at once (concurrent transactions on the file).
const LOCKSTEP: u64 = 50;

fn batch_seqs(i: u64) -> std::ops::RangeInclusive<u64> {
    (i - 1) * PER_BATCH + 1..=i * PER_BATCH
}

/// Waits (briefly: no resends happen in this test) until an ack reaches `seq`.
async fn ack_reaches(tc: &TestClient, seq: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let acks = tc.acks_for(DEVICE);
        if acks
            .iter()
            .any(|a| a.epoch.to_string() == EPOCH && a.seq >= seq)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no ack reached {seq} within {within:?} (without resends); last acks {:?}",
            &acks[acks.len().saturating_sub(5)..]
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ingesters_one_store_ack_the_merged_prefix() {
    let m = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_in(&dir);
    let a = common::start_databank(m.addr, &store, Some("databank"), "caidan-databank-a").await;
    let b = common::start_databank(m.addr, &store, Some("databank"), "caidan-databank-b").await;
    let tc = TestClient::connect(m.addr, "test-device-t1", Some(store.clone())).await;

    // Both ingesters subscribed (the retained state arrives with the same SUBSCRIBE as the
    // shared events filter).
    common::publish_state(&tc, DEVICE).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.metrics().state_updates.load(Relaxed) == 0
        || b.metrics().state_updates.load(Relaxed) == 0
    {
        assert!(Instant::now() < deadline, "both ingesters subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Lockstep: the broker alternates the batches between the ingesters, so each ingester
    // sees every other batch; each ack must still cover the other's batches. (With progress
    // cached per ingester, batch 3 was acknowledged as 10 and the device stalled.)
    for i in 1..=LOCKSTEP {
        tc.publish(DEVICE, common::batch(DEVICE, EPOCH, batch_seqs(i)))
            .await;
        ack_reaches(&tc, i * PER_BATCH, Duration::from_secs(3)).await;
    }
    let lockstep: Vec<u64> = tc.acks_for(DEVICE).iter().map(|a| a.seq).collect();
    let expected: Vec<u64> = (1..=LOCKSTEP).map(|i| i * PER_BATCH).collect();
    assert_eq!(
        lockstep, expected,
        "one ack per batch, exact and increasing"
    );
    let (a_batches, b_batches) = (
        a.metrics().batches_stored.load(Relaxed),
        b.metrics().batches_stored.load(Relaxed),
    );
    assert!(
        a_batches > 0 && b_batches > 0,
        "the share group split the batches: {a_batches} + {b_batches}"
    );

    // Burst: the rest at once, both writers committing concurrently on the file.
    let started = Instant::now();
    for i in LOCKSTEP + 1..=BATCHES {
        tc.publish(DEVICE, common::batch(DEVICE, EPOCH, batch_seqs(i)))
            .await;
    }
    ack_reaches(&tc, BATCHES * PER_BATCH, Duration::from_secs(5)).await;
    eprintln!(
        "burst of {} batches acknowledged in {:?}",
        BATCHES - LOCKSTEP,
        started.elapsed()
    );

    // Every ack sent by then has arrived: one per stored batch.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tc.acks_for(DEVICE).len() < BATCHES as usize {
        assert!(Instant::now() < deadline, "an ack per batch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acks = tc.acks.lock().unwrap().clone();
    let topic = caidan_sync::topics::ack(common::FLEET, DEVICE);
    let mut high = 0;
    for (_, ack, prefix_at_arrival) in acks.iter().filter(|(t, _, _)| *t == topic) {
        assert_eq!(ack.epoch.to_string(), EPOCH);
        assert!(
            *prefix_at_arrival >= ack.seq,
            "ack {ack:?} ahead of the store ({prefix_at_arrival})"
        );
        high = high.max(ack.seq);
    }
    assert_eq!(high, BATCHES * PER_BATCH);
    assert_eq!(
        tc.acks_for(DEVICE).len(),
        BATCHES as usize,
        "one ack per batch"
    );
    assert_eq!(
        common::stored(&store, DEVICE),
        (BATCHES * PER_BATCH, BATCHES * PER_BATCH)
    );
    assert_eq!(
        common::stored_prefix(&store, DEVICE, EPOCH),
        BATCHES * PER_BATCH
    );
    let stored_by_both =
        a.metrics().events_stored.load(Relaxed) + b.metrics().events_stored.load(Relaxed);
    assert_eq!(
        stored_by_both,
        BATCHES * PER_BATCH,
        "no duplicates, no resends"
    );
    assert_eq!(
        a.metrics().store_errors.load(Relaxed) + b.metrics().store_errors.load(Relaxed),
        0,
        "no SQLITE_BUSY between the two writers"
    );

    drop(tc);
    a.shutdown().await;
    b.shutdown().await;
}

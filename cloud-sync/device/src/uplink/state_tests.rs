//! Unit and property tests of [`UplinkCore`] against a simulated outbox, link and data bank.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const EPOCH: Uuid = Uuid::from_u128(0x0190e0c8_0000_7000_8000_000000000001);
const OTHER_EPOCH: Uuid = Uuid::from_u128(0x0190e0c8_0000_7000_8000_0000000000ff);

fn cfg() -> CoreConfig {
    CoreConfig {
        batch_max_events: 3,
        batch_max_bytes: 1024,
        linger: Duration::from_millis(100),
        ack_timeout: Duration::from_secs(2),
        max_in_flight: 2,
        state_interval: Duration::from_secs(30),
        store_retry: Duration::from_millis(500),
        initial_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(8),
        backoff_seed: 7,
        shopper_window: Duration::from_secs(1),
        shopper_yield: Duration::from_millis(20),
        stable_after: Duration::from_secs(30),
    }
}

/// The outbox, the broker link and the data bank, all in memory.
#[derive(Default)]
struct World {
    outbox: Vec<OutboxRecord>,
    appended: i64,
    /// Batches published and not yet delivered or dropped.
    wire: Vec<Vec<i64>>,
    stored: BTreeSet<i64>,
    trims: Vec<i64>,
    publishes: usize,
    /// When each outbox read was issued.
    reads: Vec<Duration>,
}

impl World {
    fn append(&mut self, n: usize) {
        for _ in 0..n {
            self.appended += 1;
            let seq = self.appended;
            self.outbox.push(OutboxRecord {
                seq,
                json: format!(r#"{{"seq":{seq},"epoch":"{EPOCH}"}}"#),
            });
        }
    }

    fn contiguous(&self) -> i64 {
        let mut n = 0;
        while self.stored.contains(&(n + 1)) {
            n += 1;
        }
        n
    }

    /// Runs every due action; reads and trims complete at once.
    fn drive(&mut self, core: &mut UplinkCore, now: Instant) {
        while let Some(a) = core.poll_action(now) {
            match a {
                Action::Read { after, max } => {
                    self.reads.push(now);
                    let rows = self
                        .outbox
                        .iter()
                        .filter(|r| r.seq > after)
                        .take(max)
                        .cloned()
                        .collect();
                    core.handle_read(now, rows);
                }
                Action::Trim { through } => {
                    assert!(through <= core.acked(), "trim past the ack");
                    assert!(through <= self.contiguous(), "trim of unstored records");
                    self.outbox.retain(|r| r.seq > through);
                    self.trims.push(through);
                    core.handle_trimmed(through);
                }
                Action::Publish(b) => {
                    let items: Vec<serde_json::Value> =
                        serde_json::from_slice(&b.payload).expect("batch payload is a JSON array");
                    let seqs: Vec<i64> = items.iter().map(|v| v["seq"].as_i64().unwrap()).collect();
                    assert_eq!(seqs.len(), b.events);
                    assert_eq!((seqs[0], *seqs.last().unwrap()), (b.first, b.last));
                    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap in a batch");
                    self.wire.push(seqs);
                    self.publishes += 1;
                }
                Action::PublishState => {}
            }
        }
    }

    /// Delivers the oldest batch on the wire; the data bank stores it and acks.
    fn deliver(&mut self, core: &mut UplinkCore, ack_lost: bool) -> Option<AckOutcome> {
        if self.wire.is_empty() {
            return None;
        }
        let seqs = self.wire.remove(0);
        self.stored.extend(seqs);
        (!ack_lost).then(|| core.handle_ack(EPOCH, self.contiguous() as u64))
    }
}

/// A core connected at time zero, over an empty world.
fn connected() -> (Duration, World, UplinkCore) {
    let t0 = Duration::ZERO;
    let mut core = UplinkCore::new(cfg(), EPOCH, t0);
    core.handle_connected(t0);
    (t0, World::default(), core)
}

#[test]
fn full_batch_goes_at_once_and_partial_after_linger() {
    let (t0, mut w, mut core) = connected();
    w.append(4);
    w.drive(&mut core, t0);
    assert_eq!(w.wire, vec![vec![1, 2, 3]]);
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    w.drive(&mut core, t0 + Duration::from_millis(100));
    assert_eq!(w.wire, vec![vec![1, 2, 3], vec![4]]);
}

#[test]
fn trims_only_after_ack_and_ignores_foreign_and_unsent_acks() {
    let (t0, mut w, mut core) = connected();
    w.append(3);
    w.drive(&mut core, t0);
    assert!(w.trims.is_empty());
    assert_eq!(core.handle_ack(OTHER_EPOCH, 3), AckOutcome::ForeignEpoch);
    w.drive(&mut core, t0);
    assert!(w.trims.is_empty());
    w.deliver(&mut core, false);
    w.drive(&mut core, t0);
    assert_eq!(w.trims, vec![3]);
    assert_eq!(core.handle_ack(EPOCH, 2), AckOutcome::Stale);
    assert_eq!(
        core.handle_ack(EPOCH, 9),
        AckOutcome::NotSent { claimed: 9 }
    );
    assert_eq!(core.acked(), 3);
}

#[test]
fn ack_beyond_sent_is_clamped() {
    let (t0, mut w, mut core) = connected();
    w.append(3);
    w.drive(&mut core, t0);
    assert_eq!(
        core.handle_ack(EPOCH, 50),
        AckOutcome::Clamped {
            claimed: 50,
            from: 0,
            to: 3
        }
    );
}

#[test]
fn resends_after_ack_timeout_while_connected() {
    let (t0, mut w, mut core) = connected();
    w.append(3);
    w.drive(&mut core, t0);
    w.wire.clear(); // the broker dropped it after PUBACK
    w.drive(&mut core, t0 + Duration::from_millis(1999));
    assert!(w.wire.is_empty());
    let t1 = t0 + Duration::from_secs(2);
    assert_eq!(core.poll_timeout(), Some(t1));
    w.drive(&mut core, t1);
    assert_eq!(w.wire, vec![vec![1, 2, 3]]);
    assert_eq!(core.status().batches_resent, 1);
}

#[test]
fn reconnect_resends_everything_unacked_in_order() {
    let (t0, mut w, mut core) = connected();
    w.append(7);
    w.drive(&mut core, t0);
    assert_eq!(w.wire, vec![vec![1, 2, 3], vec![4, 5, 6]]);
    core.handle_disconnected();
    w.wire.clear();
    w.drive(&mut core, t0 + Duration::from_secs(5));
    assert!(w.wire.is_empty(), "nothing is sent while offline");
    core.handle_connected(t0 + Duration::from_secs(6));
    w.drive(&mut core, t0 + Duration::from_secs(6));
    assert_eq!(w.wire, vec![vec![1, 2, 3], vec![4, 5, 6]]);
}

#[test]
fn wake_during_read_is_not_lost() {
    let t0 = Duration::ZERO;
    let mut core = UplinkCore::new(cfg(), EPOCH, t0);
    assert_eq!(
        core.poll_action(t0),
        Some(Action::Read { after: 0, max: 3 })
    );
    core.handle_wake();
    core.handle_read(t0, vec![]);
    assert_eq!(
        core.poll_action(t0),
        Some(Action::Read { after: 0, max: 3 })
    );
    core.handle_read(t0, vec![]);
    assert_eq!(core.poll_action(t0), None);
}

#[test]
fn store_failures_retry_after_a_pause() {
    let t0 = Duration::ZERO;
    let mut core = UplinkCore::new(cfg(), EPOCH, t0);
    assert!(matches!(core.poll_action(t0), Some(Action::Read { .. })));
    core.handle_read_failed(t0);
    assert_eq!(core.poll_action(t0), None);
    let t1 = t0 + Duration::from_millis(500);
    assert_eq!(core.poll_timeout(), Some(t1));
    assert!(matches!(core.poll_action(t1), Some(Action::Read { .. })));
}

#[test]
fn byte_limit_splits_batches_but_sends_big_records_alone() {
    let t0 = Duration::ZERO;
    let mut c = cfg();
    c.batch_max_bytes = 40;
    let mut core = UplinkCore::new(c, EPOCH, t0);
    core.handle_connected(t0);
    let rec = |seq, n| OutboxRecord {
        seq,
        json: "x".repeat(n),
    };
    assert!(matches!(core.poll_action(t0), Some(Action::Read { .. })));
    core.handle_read(t0, vec![rec(1, 15), rec(2, 15), rec(3, 100)]);
    let Some(Action::Publish(b)) = core.poll_action(t0) else {
        panic!("expected a batch")
    };
    assert_eq!((b.first, b.last, b.payload.len()), (1, 2, 33));
    let Some(Action::Publish(b)) = core.poll_action(t0) else {
        panic!("expected a batch")
    };
    assert_eq!((b.first, b.last, b.payload.len()), (3, 3, 102));
}

#[test]
fn reconnects_back_off_with_jitter_and_reset_on_success() {
    let t0 = Duration::ZERO;
    let c = cfg();
    let mut core = UplinkCore::new(c.clone(), EPOCH, t0);
    assert!(core.may_connect(t0), "the first attempt is immediate");
    let mut now = t0;
    let mut ceiling = c.initial_backoff;
    for attempt in 1..=8u32 {
        let r = core.handle_connection_lost(now);
        assert_eq!(r.attempt, attempt);
        assert!(
            r.delay >= ceiling / 2 && r.delay <= ceiling,
            "{r:?} vs {ceiling:?}"
        );
        assert!(!core.may_connect(now + r.delay - Duration::from_millis(1)));
        assert_eq!(core.poll_timeout(), Some(now + r.delay));
        now += r.delay;
        assert!(core.may_connect(now));
        core.poll_action(now);
        assert_eq!(
            core.poll_timeout(),
            None,
            "once due, the reconnect is no deadline to spin on"
        );
        ceiling = (ceiling * 2).min(c.max_backoff);
    }
    // A connection dropped at once (the broker accepts, then drops us) is no success.
    core.handle_connected(now);
    let r = core.handle_connection_lost(now + Duration::from_secs(1));
    assert_eq!(r.attempt, 9, "an unstable connection keeps doubling");
    now += Duration::from_secs(1) + r.delay;
    // One that lasted starts the doubling again.
    core.handle_connected(now);
    let r = core.handle_connection_lost(now + c.stable_after);
    assert_eq!(
        r.attempt, 1,
        "a stable connection starts the doubling again"
    );
}

#[test]
fn reads_step_aside_while_shoppers_claim() {
    let (t0, mut w, mut core) = connected();
    core.handle_shopper_activity(t0);
    w.append(30);
    w.drive(&mut core, t0);
    assert_eq!(
        w.reads,
        vec![t0],
        "one read, then the next waits for shoppers"
    );
    while w.deliver(&mut core, false).is_some() {}
    w.drive(&mut core, t0 + Duration::from_millis(5));
    assert_eq!(w.reads.len(), 1, "held back");
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(20)));
    w.drive(&mut core, t0 + Duration::from_millis(20));
    assert_eq!(w.reads.len(), 2);
    // Once the shopper window has passed, reads run back to back again.
    let later = t0 + Duration::from_secs(2);
    while w.deliver(&mut core, false).is_some() {}
    w.drive(&mut core, later);
    while w.deliver(&mut core, false).is_some() {
        w.drive(&mut core, later);
    }
    assert!(
        w.reads.iter().filter(|r| **r == later).count() >= 2,
        "{:?}",
        w.reads
    );
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Advance(u64),
    Connect,
    Disconnect,
    Deliver { ack_lost: bool },
    Drop,
    StaleOrForeignAck(bool),
    Shopper,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..8).prop_map(Op::Append),
        3 => (1u64..3000).prop_map(Op::Advance),
        1 => Just(Op::Connect),
        1 => Just(Op::Disconnect),
        4 => any::<bool>().prop_map(|ack_lost| Op::Deliver { ack_lost }),
        1 => Just(Op::Drop),
        1 => any::<bool>().prop_map(Op::StaleOrForeignAck),
        2 => Just(Op::Shopper),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the interleaving of commits, outages, lost batches, lost acks and shoppers:
    /// the acknowledged seq never moves backwards, trims never pass it (checked in `drive`),
    /// no reconnect comes before its backoff delay, reads step aside while shoppers claim,
    /// and once the link is good every record reaches the data bank and leaves the outbox.
    #[test]
    fn acked_monotonic_trim_bounded_all_delivered(
        ops in proptest::collection::vec(op(), 1..120),
        max_in_flight in 1usize..4,
        batch_max_events in 1usize..5,
    ) {
        let t0 = Duration::ZERO;
        let mut now = t0;
        let mut c = cfg();
        c.max_in_flight = max_in_flight;
        c.batch_max_events = batch_max_events;
        let mut w = World::default();
        let mut core = UplinkCore::new(c, EPOCH, t0);
        let mut connected = false;
        let mut last_acked = 0;
        let mut retry_at = Duration::ZERO;
        let mut last_shopper: Option<Duration> = None;
        for op in ops {
            match op {
                Op::Append(n) => { w.append(n); core.handle_wake(); }
                Op::Advance(ms) => now += Duration::from_millis(ms),
                Op::Connect if !connected => {
                    prop_assert_eq!(core.may_connect(now), now >= retry_at);
                    if core.may_connect(now) {
                        connected = true;
                        core.handle_connected(now);
                    }
                }
                Op::Disconnect if connected => {
                    connected = false;
                    w.wire.clear();
                    let r = core.handle_connection_lost(now);
                    prop_assert!(r.delay <= cfg().max_backoff);
                    retry_at = now + r.delay;
                }
                Op::Shopper => {
                    core.handle_shopper_activity(now);
                    last_shopper = Some(now);
                }
                Op::Connect | Op::Disconnect => {}
                Op::Deliver { ack_lost } => { w.deliver(&mut core, ack_lost); }
                Op::Drop => { if !w.wire.is_empty() { w.wire.remove(0); } }
                Op::StaleOrForeignAck(foreign) => {
                    let epoch = if foreign { OTHER_EPOCH } else { EPOCH };
                    core.handle_ack(epoch, (core.acked() - 1).max(0) as u64);
                }
            }
            let reads_before = w.reads.len();
            w.drive(&mut core, now);
            let read_now = w.reads.len() > reads_before && reads_before > 0;
            if let Some(s) = last_shopper.filter(|s| read_now && now < *s + cfg().shopper_window) {
                let prev = w.reads[reads_before - 1];
                prop_assert!(now >= prev + cfg().shopper_yield, "a read did not step aside from {s:?}");
            }
            prop_assert!(core.acked() >= last_acked, "acked moved backwards");
            prop_assert!(core.acked() <= w.contiguous());
            last_acked = core.acked();
        }
        // Heal the link and let time pass: everything must arrive and be trimmed.
        if !connected {
            now = now.max(retry_at);
            prop_assert!(core.may_connect(now));
            core.handle_connected(now);
        }
        for _ in 0..(w.appended as usize * 4 + 20) {
            w.drive(&mut core, now);
            while w.deliver(&mut core, false).is_some() {
                w.drive(&mut core, now);
            }
            now += Duration::from_millis(500);
            w.drive(&mut core, now);
        }
        prop_assert_eq!(w.contiguous(), w.appended);
        prop_assert_eq!(core.acked(), w.appended);
        prop_assert!(w.outbox.is_empty());
        prop_assert!(w.trims.windows(2).all(|t| t[0] < t[1]));
    }
}

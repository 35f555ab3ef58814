//! Every event reaches the data bank exactly once, whatever came between: an offline
//! backlog, kill -9 of the agent mid-sync, a broker restarted without persistence, a broker
//! dropping queued messages for a slow data bank, a wiped device. Real processes: the
//! `caidan-agent` and `caidan-cloud` binaries and a Mosquitto (or NATS) on a free port.

use std::time::Duration;

use caidan_e2e::{
    Agent, Databank, Mosquitto, Nats, agent_outbox, claim_many, free_port, wait_until,
};

const DRAIN: Duration = Duration::from_secs(180);

/// Builds a backlog: the agent serves `n` shoppers with no broker configured, then stops.
async fn offline_backlog(data: &std::path::Path, prefix: &str, n: usize) {
    let agent = Agent::start(data, None);
    assert_eq!(claim_many(&agent, prefix, n, 16).await, n);
}

/// Asserts the outbox drained into the data bank with exactly `claims` claims, no seq twice.
fn assert_exactly_once(data: &std::path::Path, bank: &Databank, claims: i64) {
    assert!(
        drained(data, bank),
        "not drained: {:?}, outbox {:?}",
        bank.counts(),
        agent_outbox(data)
    );
    let c = bank.counts();
    assert_eq!(c.claims, claims);
    assert_eq!(c.duplicate_seqs, 0);
}

/// Waits until the data bank holds every event the agent ever wrote and the outbox is empty.
fn drained(data: &std::path::Path, bank: &Databank) -> bool {
    wait_until(DRAIN, || {
        let (depth, last) = agent_outbox(data);
        depth == 0 && bank.counts().events == last
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_backlog_of_10000_claims_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    let port = free_port();
    let url = format!("mqtt://127.0.0.1:{port}");
    // The broker is not up yet: the agent serves shoppers offline.
    let agent = Agent::start(&data, Some(&url));
    assert_eq!(claim_many(&agent, "offline", 10_000, 16).await, 10_000);
    let broker = Mosquitto::start_on(dir.path(), port, "allow_anonymous true");
    let bank = Databank::start(dir.path(), &broker.url(), &[]);
    assert_exactly_once(&data, &bank, 10_000);
    // The retained state tells the fleet how full the device's store is.
    let storage = |bank: &Databank| {
        bank.device_state("demo-cinema-01")
            .map(|s| s["storage"].clone())
    };
    assert!(
        wait_until(Duration::from_secs(10), || storage(&bank).is_some_and(
            |s| s["fill"] == "normal" && s["used_bytes"].as_u64() > Some(0)
        )),
        "state: {:?}",
        bank.device_state("demo-cinema-01")
    );
    assert_eq!(
        storage(&bank).unwrap()["budget_bytes"],
        1024 * 1024 * 1024,
        "the cinema-screen profile's budget"
    );
    drop(agent);
}

/// NATS with MQTT enabled is a standard broker too. NATS (2.9) has no MQTT shared
/// subscriptions, so the data bank runs as one ingester with `--share-group none`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_backlog_arrives_exactly_once_through_nats_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    offline_backlog(&data, "nats", 2_000).await;
    let nats = Nats::start(dir.path());
    let bank = Databank::start(dir.path(), &nats.url(), &["--share-group", "none"]);
    let agent = Agent::start(&data, Some(&nats.url()));
    assert_eq!(claim_many(&agent, "nats-online", 200, 8).await, 200);
    assert_exactly_once(&data, &bank, 2_200);
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_mid_sync_20_times_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    let broker = Mosquitto::plain(dir.path());
    // Build a backlog offline, then let the agent sync in short lives ended by kill -9.
    offline_backlog(&data, "k", 4_000).await;
    let bank = Databank::start(dir.path(), &broker.url(), &[]);
    let mut mid_sync = 0;
    for round in 0..20u64 {
        let stored = bank.counts().events;
        let mut agent = Agent::start(&data, Some(&broker.url()));
        // Shoppers keep coming while it syncs.
        claim_many(&agent, &format!("round{round}"), 20, 4).await;
        // Kill once this life has delivered something, or right away once nothing is left.
        wait_until(Duration::from_secs(20), || {
            bank.counts().events > stored || agent_outbox(&data).0 == 0
        });
        agent.proc.kill9();
        if agent_outbox(&data).0 > 0 && bank.counts().events > stored {
            mid_sync += 1;
        }
    }
    assert!(mid_sync >= 5, "only {mid_sync} kills came mid-sync");
    let _agent = Agent::start(&data, Some(&broker.url()));
    assert_exactly_once(&data, &bank, 4_000 + 20 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_without_persistence_mid_sync_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    let mut broker = Mosquitto::plain(dir.path());
    offline_backlog(&data, "b", 6_000).await;
    let bank = Databank::start(dir.path(), &broker.url(), &[]);
    let _agent = Agent::start(&data, Some(&broker.url()));
    assert!(
        wait_until(DRAIN, || bank.counts().events > 200),
        "sync never started"
    );
    broker.restart();
    assert!(
        bank.counts().events < 6_000,
        "the restart came before the backlog was through"
    );
    assert_exactly_once(&data, &bank, 6_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_dropping_queued_messages_for_a_slow_data_bank_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    // Mosquitto drops QoS 1 messages queued beyond 10 for a subscriber that lags.
    let broker = Mosquitto::start(
        dir.path(),
        "allow_anonymous true\nmax_queued_messages 10\nmax_inflight_messages 1",
    );
    offline_backlog(&data, "q", 10_000).await;
    let bank = Databank::start(dir.path(), &broker.url(), &[]);
    let _agent = Agent::start(&data, Some(&broker.url()));
    // Make the data bank slower than the agent: freeze it while the backlog drains, until
    // the broker says it dropped messages queued for it.
    let dropped = |b: &Mosquitto| b.log().contains("Outgoing messages are being dropped");
    for _ in 0..60 {
        if dropped(&broker) {
            break;
        }
        bank.proc.signal("STOP");
        wait_until(Duration::from_millis(300), || dropped(&broker));
        bank.proc.signal("CONT");
    }
    assert!(
        dropped(&broker),
        "the broker never dropped a queued message"
    );
    assert!(bank.counts().events < 10_000, "dropped before the end");
    assert_exactly_once(&data, &bank, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_device_starts_a_new_epoch_and_all_its_new_events_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("agent");
    let broker = Mosquitto::plain(dir.path());
    let bank = Databank::start(dir.path(), &broker.url(), &[]);
    let mut agent = Agent::start(&data, Some(&broker.url()));
    assert_eq!(claim_many(&agent, "before", 100, 4).await, 100);
    assert!(drained(&data, &bank));
    agent.proc.kill9();
    let before = bank.counts();
    std::fs::remove_dir_all(&data).unwrap();
    let agent = Agent::start(&data, Some(&broker.url()));
    assert_eq!(claim_many(&agent, "after", 50, 4).await, 50);
    assert!(wait_until(DRAIN, || agent_outbox(&data).0 == 0
        && bank.counts().claims == 150));
    let c = bank.counts();
    assert_eq!(c.epochs, 2);
    assert_eq!(c.claims, before.claims + 50);
    assert_eq!(c.duplicate_seqs, 0);
}

//! Drain of one offline backlog end to end (agent outbox → uplink → broker → data bank store
//! → acknowledgement → outbox trimmed) through a 3-node NATS cluster with JetStream and MQTT,
//! beside the same backlog through one Mosquitto, in one run. On the cluster the agent
//! connects to node 1 and the data bank to node 3, so every batch and every acknowledgement
//! crosses a cluster route, and MQTT QoS 1 messages and sessions live in JetStream streams
//! replicated over the nodes; Mosquitto keeps them in memory (persistence off).
//!
//! `DRAIN_EVENTS` (default 200,000; each leg gets its own backlog of that size),
//! `DRAIN_KIND=scan` for scans instead of claims. Run with
//! `cargo bench -p caidan-e2e --bench cluster_drain`.
#![forbid(unsafe_code)]

mod common;

use std::time::Duration;

use caidan_cloud::databank::Databank;
use caidan_testkit::NatsCluster;
use common::{Agent, Fact, Result, figure, rate};

fn main() -> Result<()> {
    common::runtime().block_on(run())
}

async fn run() -> Result<()> {
    let n = common::env_usize("DRAIN_EVENTS", 200_000);
    let fact = Fact::from_env("DRAIN_KIND");
    let limit = Duration::from_secs(common::env_usize("DRAIN_TIMEOUT_SECS", 900) as u64);
    let dir = common::scratch("cluster-drain")?;
    println!(
        "# drain: {n} events ({}) a leg, {} events a batch, scratch {}",
        fact.name(),
        common::BATCH_EVENTS,
        dir.path().display()
    );

    // One Mosquitto.
    let mosquitto_rate = {
        let leg = dir.path().join("mosquitto");
        let (agent, n) = backlog(&leg, fact, n).await?;
        let broker = common::start_broker(&leg);
        let bank = common::subscribed_databank(&leg, broker.port).await?;
        let r = leg_rate("one Mosquitto", &agent, &bank, &broker.url(), n, limit).await?;
        stop(agent, bank).await;
        r
    };

    // The cluster: agent on node 1, data bank on node 3 (no shared subscriptions on NATS).
    let cluster_rate = {
        let leg = dir.path().join("nats");
        let (agent, n) = backlog(&leg, fact, n).await?;
        let cluster_dir = leg.join("cluster");
        std::fs::create_dir_all(&cluster_dir)?;
        let cluster = NatsCluster::start(&cluster_dir);
        println!(
            "# nats-server cluster of 3, JetStream and MQTT on each; agent on node 1, data bank on node 3"
        );
        let bank = common::start_databank(
            leg.join("databank.db"),
            cluster.nodes[2].mqtt_port,
            "bench-databank",
            None,
        )
        .await?;
        if !bank.wait_subscribed(Duration::from_secs(60)).await {
            return Err("data bank did not subscribe on the cluster within 60 s".into());
        }
        let r = leg_rate(
            "3-node NATS cluster",
            &agent,
            &bank,
            &cluster.nodes[0].url(),
            n,
            limit,
        )
        .await?;
        stop(agent, bank).await;
        drop(cluster);
        r
    };

    figure(
        "NATS cluster / one Mosquitto",
        cluster_rate / mosquitto_rate,
        "ratio",
    );
    Ok(())
}

/// An agent store holding the events of `n` facts, undelivered, and how many those are (a
/// claim of a product egg also writes its hold's order event).
async fn backlog(dir: &std::path::Path, fact: Fact, n: usize) -> Result<(Agent, usize)> {
    let agent = Agent::open(&dir.join("agent")).await?;
    agent.facts(fact, 0, n).await?;
    let (records, _) = agent.outbox_size()?;
    if records < n as u64 {
        return Err(format!("outbox holds {records} records, expected at least {n}").into());
    }
    Ok((agent, records as usize))
}

async fn leg_rate(
    name: &str,
    agent: &Agent,
    bank: &Databank,
    url: &str,
    n: usize,
    limit: Duration,
) -> Result<f64> {
    let d = common::drain_end_to_end(agent, bank, url, n as u64, limit).await?;
    if !d.drained {
        return Err(format!(
            "{name}: not drained within {limit:?}: {} of {n} stored, outbox depth {}",
            d.stored,
            agent.writer.outbox_depth()
        )
        .into());
    }
    let r = rate(n as u64, d.took);
    figure(
        &format!("drain end to end (acknowledged and trimmed), through {name}"),
        r,
        "events/s",
    );
    println!(
        "# {name}: batches sent {}, resent {}; duplicates stored {}",
        d.status.batches_sent,
        d.status.batches_resent,
        bank.metrics()
            .events_duplicate
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(r)
}

async fn stop(agent: Agent, bank: Databank) {
    let _ = tokio::time::timeout(Duration::from_secs(10), bank.shutdown()).await;
    agent.close().await;
}

//! Claims per second at the agent while its uplink drains a backlog through Mosquitto to an
//! in-process data bank, beside the same number of claims with the uplink idle (no broker
//! configured), same process and same store. Target: draining ≥ 80% of idle.
//!
//! `BACKLOG_EVENTS` (default 200,000), `CLAIMS` (default 20,000, from 64 concurrent tasks
//! calling the agent writer). Run with `cargo bench -p caidan-e2e --bench claims_while_draining`.
#![forbid(unsafe_code)]

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::{Agent, Fact, Result, TASKS, figure, rate};

fn main() -> Result<()> {
    common::runtime().block_on(run())
}

async fn run() -> Result<()> {
    let backlog = common::env_usize("BACKLOG_EVENTS", 200_000);
    let claims = common::env_usize("CLAIMS", 20_000);
    let limit = Duration::from_secs(common::env_usize("DRAIN_TIMEOUT_SECS", 600) as u64);
    let dir = common::scratch("claims-while-draining")?;
    println!(
        "# claims while draining: backlog {backlog} claim events, {claims} claims per phase from {TASKS} tasks, scratch {}",
        dir.path().display()
    );
    let agent = Agent::open(&dir.path().join("agent")).await?;
    let built = agent.facts(Fact::Claim, 0, backlog).await?;
    figure(
        "backlog build (claims through the agent writer)",
        rate(backlog as u64, built),
        "events/s",
    );

    // Uplink idle: no broker configured, the backlog just sits in the outbox.
    let idle = agent.facts(Fact::Claim, 1 << 40, claims).await?;
    let idle_rate = rate(claims as u64, idle);
    figure(
        "claims with the uplink idle (no broker)",
        idle_rate,
        "claims/s",
    );

    let broker = common::start_broker(dir.path());
    let bank = common::subscribed_databank(dir.path(), broker.port).await?;
    let metrics = bank.metrics().clone();
    let start = Instant::now();
    let uplink = agent.start_uplink(&broker.url())?;
    let draining = agent.facts(Fact::Claim, 2 << 40, claims).await?;
    let stored_during = metrics.events_stored.load(Relaxed);
    let depth_after = agent.writer.outbox_depth();
    let drain_rate = rate(claims as u64, draining);
    figure(
        "claims while the uplink drains the backlog",
        drain_rate,
        "claims/s",
    );
    figure(
        "claims draining / idle (target ≥ 0.80)",
        drain_rate / idle_rate,
        "ratio",
    );
    let backlog_left = (backlog as u64 + claims as u64).saturating_sub(stored_during);
    println!(
        "# at the end of the draining phase ({:.2} s): data bank held {stored_during} events, outbox depth {depth_after}, backlog {}",
        draining.as_secs_f64(),
        if backlog_left > 0 {
            "still draining (valid comparison)"
        } else {
            "already drained before the claims ended: raise BACKLOG_EVENTS"
        }
    );

    let total = (backlog + 2 * claims) as u64;
    let drained = common::wait_for(limit, || {
        metrics.events_stored.load(Relaxed) >= total && agent.writer.outbox_depth() == 0
    })
    .await;
    let took = start.elapsed();
    if drained {
        figure(
            "drain with shoppers claiming (whole outbox, end to end)",
            rate(total, took),
            "events/s",
        );
    } else {
        println!(
            "# NOT DRAINED within {limit:?}: data bank stored {} of {total}, outbox depth {}",
            metrics.events_stored.load(Relaxed),
            agent.writer.outbox_depth()
        );
    }
    uplink.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), bank.shutdown()).await;
    agent.close().await;
    drop(broker);
    Ok(())
}

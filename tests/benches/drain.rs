//! Drain rate of an offline backlog through a real Mosquitto on loopback, end to end (agent
//! outbox → uplink → broker → data bank store → acknowledgement → outbox trimmed), beside the
//! two raw limits it is judged by, all in one run:
//! (a) a bare rumqttc QoS 1 publisher and subscriber moving the same bytes in the same batch
//!     size through the same broker, nothing stored;
//! (b) the data bank's store inserting the same rows in 100-row transactions with the same
//!     durability (WAL, `synchronous=FULL`), nothing on the wire.
//!
//! `DRAIN_EVENTS` (default 1,000,000) sets the backlog; `DRAIN_KIND=scan` fills it with scans
//! instead of claims (faster to build, smaller events). Run with
//! `cargo bench -p caidan-e2e --bench drain`.
#![forbid(unsafe_code)]

mod common;

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use caidan_cloud::databank::store::{Store, Work};
use caidan_sync::clock::SystemClock;
use caidan_sync::contract::{Limits, parse_batch};
use common::{Agent, BATCH_EVENTS, Fact, Result, figure, rate};
use rumqttc::{Event, Packet, QoS};

/// Events per second the issue asks for, end to end.
const TARGET: f64 = 100_000.0;

fn main() -> Result<()> {
    common::runtime().block_on(run())
}

async fn run() -> Result<()> {
    let n = common::env_usize("DRAIN_EVENTS", 1_000_000);
    let fact = Fact::from_env("DRAIN_KIND");
    let limit = Duration::from_secs(common::env_usize("DRAIN_TIMEOUT_SECS", 900) as u64);
    let dir = common::scratch("drain")?;
    println!(
        "# drain: {n} events ({}), {BATCH_EVENTS} events a batch, Mosquitto on loopback, scratch {}",
        fact.name(),
        dir.path().display()
    );

    let agent = Agent::open(&dir.path().join("agent")).await?;
    let built = agent.facts(fact, 0, n).await?;
    figure(
        &format!(
            "backlog build ({} through the agent writer, 64 tasks)",
            fact.name()
        ),
        rate(n as u64, built),
        "events/s",
    );
    let (records, json_bytes) = agent.outbox_size()?;
    // A claim of a product egg also writes its hold's order event.
    if records < n as u64 {
        return Err(format!("outbox holds {records} records, expected at least {n}").into());
    }
    let n = records as usize;
    let messages = n.div_ceil(BATCH_EVENTS);
    // A batch is `[e1,e2,...]`: the events' JSON, a comma between each, two brackets.
    let payload_len = ((json_bytes + n as u64 + messages as u64) / messages as u64) as usize;
    println!(
        "# mean event {} bytes, mean batch payload {payload_len} bytes",
        json_bytes / n as u64
    );

    // (b) the data bank's store alone.
    let (stored, spent) = store_alone(
        &agent.store_path(),
        &dir.path().join("store-alone.db"),
        agent.fleet(),
        agent.device(),
    )?;
    let store_rate = rate(stored, spent);
    figure(
        "(b) data bank store alone, 100-row transactions, WAL synchronous=FULL",
        store_rate,
        "rows/s",
    );

    let broker = common::start_broker(dir.path());

    // (a) bare MQTT through the same broker.
    let wire = bare_mqtt(broker.port, messages, payload_len, limit).await?;
    let wire_rate = rate(n as u64, wire);
    figure(
        "(a) bare rumqttc QoS 1 pub/sub through Mosquitto, same bytes and batch size",
        wire_rate,
        "events/s",
    );
    figure(
        "(a) bare rumqttc QoS 1 pub/sub, messages",
        rate(messages as u64, wire),
        "messages/s",
    );

    // End to end.
    let bank = common::subscribed_databank(dir.path(), broker.port).await?;
    let metrics = bank.metrics().clone();
    let d = common::drain_end_to_end(&agent, &bank, &broker.url(), n as u64, limit).await?;
    let (took, stored, status) = (d.took, d.stored, d.status);
    if !d.drained {
        println!(
            "# NOT DRAINED within {limit:?}: data bank stored {stored} of {n}, outbox depth {}",
            agent.writer.outbox_depth()
        );
    }
    let drain_rate = rate(stored.min(n as u64), took);
    figure(
        "drain end to end (acknowledged and trimmed), through Mosquitto",
        drain_rate,
        "events/s",
    );
    if let Some(at) = d.all_stored_at {
        println!(
            "# data bank held every event after {:.2} s, outbox empty after {:.2} s",
            at.as_secs_f64(),
            took.as_secs_f64()
        );
    }
    let transactions = metrics.transactions.load(Relaxed).max(1);
    println!(
        "# uplink batches sent {}, resent {}; data bank {} batches in {} transactions ({:.0} events a transaction), duplicates {}",
        status.batches_sent,
        status.batches_resent,
        metrics.batches_stored.load(Relaxed),
        transactions,
        stored as f64 / transactions as f64,
        metrics.events_duplicate.load(Relaxed),
    );
    let lower = wire_rate.min(store_rate);
    figure(
        "drain / min(a, b) (target ≥ 0.50)",
        drain_rate / lower,
        "ratio",
    );
    figure(
        "drain / 100,000 events/s target (target ≥ 1.00)",
        drain_rate / TARGET,
        "ratio",
    );

    let _ = tokio::time::timeout(Duration::from_secs(10), bank.shutdown()).await;
    agent.close().await;
    drop(broker);
    Ok(())
}

/// Inserts the outbox's events into a fresh data bank store, one 100-event batch per
/// transaction, as the data bank parses them; returns rows inserted and the time spent in
/// `Store::apply` alone (reading and parsing are not counted).
fn store_alone(agent_db: &Path, path: &Path, fleet: &str, device: &str) -> Result<(u64, Duration)> {
    let src = rusqlite::Connection::open_with_flags(
        agent_db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut read =
        src.prepare("SELECT seq, json FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let mut store = Store::open(path, SystemClock::shared())?;
    let (mut after, mut rows, mut spent) = (0i64, 0u64, Duration::ZERO);
    loop {
        let batch = read
            .query_map((after, BATCH_EVENTS as i64), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = *last;
        let jsons: Vec<&str> = batch.iter().map(|(_, j)| j.as_str()).collect();
        let payload = format!("[{}]", jsons.join(","));
        let events = parse_batch(fleet, device, payload.as_bytes(), Limits::default())?;
        let t = Instant::now();
        let out = store.apply(&[Work::Batch(events)])?;
        spent += t.elapsed();
        rows += out.iter().map(|o| o.inserted).sum::<u64>();
    }
    Ok((rows, spent))
}

/// Publishes `messages` payloads of `len` bytes at QoS 1 and waits until a QoS 1 subscriber
/// has received them all; returns the time from the first publish to the last receipt.
async fn bare_mqtt(port: u16, messages: usize, len: usize, limit: Duration) -> Result<Duration> {
    const TOPIC: &str = "bench/raw/batches";
    let (sub, mut sub_loop) = common::connect("bench-raw-sub", port, 64).await?;
    sub.subscribe(TOPIC, QoS::AtLeastOnce).await?;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await? {
                return Ok::<_, common::BoxError>(());
            }
        }
    })
    .await??;
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while got < messages {
            if let Event::Incoming(Packet::Publish(_)) = sub_loop.poll().await? {
                got += 1;
            }
        }
        Ok::<_, rumqttc::ConnectionError>(Instant::now())
    });
    let (publisher, mut pub_loop) = common::connect("bench-raw-pub", port, 1000).await?;
    let driver = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let payload = vec![b'x'; len];
    let start = Instant::now();
    let sent = tokio::time::timeout(limit, async {
        for _ in 0..messages {
            publisher
                .publish(TOPIC, QoS::AtLeastOnce, false, payload.clone())
                .await?;
        }
        Ok::<_, rumqttc::ClientError>(())
    })
    .await;
    let received = match sent {
        Ok(r) => {
            r?;
            tokio::time::timeout(limit.saturating_sub(start.elapsed()), receiver).await
        }
        Err(e) => Err(e),
    };
    driver.abort();
    match received {
        Ok(done) => Ok(done?? - start),
        Err(_) => {
            Err(format!("bare MQTT: not all {messages} messages arrived within {limit:?}").into())
        }
    }
}

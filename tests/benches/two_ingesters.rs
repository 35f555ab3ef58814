//! Data bank ingest rate on a shared subscription (`$share/databank/...`) through Mosquitto:
//! one ingester, then two, fed the same valid event batches by a rumqttc QoS 1 publisher.
//!
//! Two layouts of two ingesters are measured, each with its own `Databank` in process and its
//! own MQTT client id:
//! - separate SQLite files (each store sees about half of every device's batches);
//! - one shared SQLite file (two writer connections on one WAL database).
//!
//! The publisher keeps at most `WINDOW` batches unstored, as uplinks keep a few batches in
//! flight, so Mosquitto never drops queued messages (its default `max_queued_messages` is 1000).
//! `INGEST_EVENTS` (default 200,000), `INGEST_DEVICES` (default 100). Run with
//! `cargo bench -p caidan-e2e --bench two_ingesters`.
#![forbid(unsafe_code)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use caidan_cloud::databank::Databank;
use caidan_cloud::databank::metrics::Metrics;
use caidan_sync::topics;
use common::{BATCH_EVENTS, Result, figure, rate};
use rumqttc::QoS;
use serde_json::json;

/// Batches published but not yet stored, at most.
const WINDOW: u64 = 500;
const FLEET: &str = "demo";

fn main() -> Result<()> {
    common::runtime().block_on(run())
}

async fn run() -> Result<()> {
    let events = common::env_usize("INGEST_EVENTS", 200_000);
    let devices = common::env_usize("INGEST_DEVICES", 100);
    let limit = Duration::from_secs(common::env_usize("INGEST_TIMEOUT_SECS", 300) as u64);
    let dir = common::scratch("two-ingesters")?;
    let batches = batches(events, devices);
    let n: u64 = batches.iter().map(|b| b.events).sum();
    let bytes: usize = batches.iter().map(|b| b.payload.len()).sum();
    println!(
        "# ingest: {n} claim events from {devices} devices in {} batches of {BATCH_EVENTS} (mean payload {} bytes), scratch {}",
        batches.len(),
        bytes / batches.len(),
        dir.path().display()
    );

    let layouts: [(&str, &[&str]); 3] = [
        ("one ingester", &["a.db"]),
        ("two ingesters, separate SQLite files", &["a.db", "b.db"]),
        ("two ingesters, one shared SQLite file", &["a.db", "a.db"]),
    ];
    for (i, (name, stores)) in layouts.into_iter().enumerate() {
        let run_dir = dir.path().join(format!("run{i}"));
        std::fs::create_dir_all(&run_dir)?;
        // A fresh broker each time: no session or subscription of an earlier run remains.
        let broker = common::start_broker(&run_dir);
        let mut banks = Vec::new();
        for (k, store) in stores.iter().enumerate() {
            let client = format!("bench-ingester-{k}");
            banks.push(
                common::start_databank(run_dir.join(store), broker.port, &client, Some("databank"))
                    .await?,
            );
        }
        let refs: Vec<&Databank> = banks.iter().collect();
        common::wait_subscribed(broker.port, &refs).await?;
        let metrics: Vec<Arc<Metrics>> = banks.iter().map(|b| b.metrics().clone()).collect();
        let outcome = ingest(broker.port, &batches, &metrics, n, limit).await?;
        match outcome {
            Ok(took) => figure(&format!("ingest, {name}"), rate(n, took), "events/s"),
            Err(stored) => println!(
                "# ingest, {name}: NOT COMPLETE within {limit:?}: {stored} of {n} events stored"
            ),
        }
        let per: Vec<String> = metrics
            .iter()
            .map(|m| {
                format!(
                    "{} events in {} transactions, {} duplicates, {} store errors",
                    m.events_stored.load(Relaxed),
                    m.transactions.load(Relaxed),
                    m.events_duplicate.load(Relaxed),
                    m.store_errors.load(Relaxed)
                )
            })
            .collect();
        println!("#   per ingester: {}", per.join(" | "));
        if stores.len() == 2 && stores[0] != stores[1] {
            println!(
                "#   stores: {:?} events",
                stores
                    .iter()
                    .map(|s| count(run_dir.join(s)))
                    .collect::<Vec<_>>()
            );
        }
        for b in banks {
            let _ = tokio::time::timeout(Duration::from_secs(10), b.shutdown()).await;
        }
        drop(broker);
    }
    Ok(())
}

/// Publishes every batch at QoS 1, at most [`WINDOW`] ahead of what the ingesters stored, and
/// returns the time until they stored `n` events, or how many they stored by `limit`.
async fn ingest(
    port: u16,
    batches: &[Batch],
    metrics: &[Arc<Metrics>],
    n: u64,
    limit: Duration,
) -> Result<std::result::Result<Duration, u64>> {
    let stored_batches = || -> u64 { metrics.iter().map(|m| m.batches_stored.load(Relaxed)).sum() };
    let stored_events = || -> u64 { metrics.iter().map(|m| m.events_stored.load(Relaxed)).sum() };
    let (client, mut eventloop) = common::connect("bench-publisher", port, 1000).await?;
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let start = Instant::now();
    let deadline = start + limit;
    for (i, b) in batches.iter().enumerate() {
        while i as u64 >= stored_batches() + WINDOW {
            if Instant::now() > deadline {
                driver.abort();
                return Ok(Err(stored_events()));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        client
            .publish(&b.topic, QoS::AtLeastOnce, false, b.payload.clone())
            .await?;
    }
    let done = common::wait_for(deadline.saturating_duration_since(Instant::now()), || {
        stored_events() >= n
    })
    .await;
    let took = start.elapsed();
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    Ok(if done { Ok(took) } else { Err(stored_events()) })
}

struct Batch {
    topic: String,
    payload: Vec<u8>,
    events: u64,
}

/// Valid claim batches (docs/events.md) of `devices` devices, each with its own epoch and
/// seqs from 1; devices take turns so every device's batches spread over the whole run.
fn batches(events: usize, devices: usize) -> Vec<Batch> {
    let per_device = events.div_ceil(devices);
    let per_device_batches = per_device.div_ceil(BATCH_EVENTS);
    let epochs: Vec<String> = (0..devices)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let mut out = Vec::with_capacity(devices * per_device_batches);
    for b in 0..per_device_batches {
        for (d, epoch) in epochs.iter().enumerate() {
            let device = format!("bench-{d:04}");
            let first = b * BATCH_EVENTS + 1;
            let last = ((b + 1) * BATCH_EVENTS).min(per_device);
            let batch: Vec<serde_json::Value> = (first..=last)
                .map(|seq| claim_event(&device, epoch, seq))
                .collect();
            out.push(Batch {
                topic: topics::events(FLEET, &device),
                payload: serde_json::to_vec(&batch).expect("JSON"),
                events: batch.len() as u64,
            });
        }
    }
    out
}

fn claim_event(device: &str, epoch: &str, seq: usize) -> serde_json::Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": format!("/caidan/{FLEET}/d/{device}"),
        "type": "com.caidan.claim",
        "time": "2025-06-01T12:34:56.789Z",
        "datacontenttype": "application/json",
        "subject": "lumi-cola-3off",
        "fleet": FLEET,
        "device": device,
        "epoch": epoch,
        "seq": seq,
        "brand": "lumi-cola",
        "data": {
            "scene": "cinema",
            "uptime_ms": seq * 37,
            "shopper": format!("{seq:032x}"),
            "offer": "lumi-cola-3off",
            "brand": "lumi-cola",
            "kind": "coupon",
            "claim_code": format!("{:08X}", seq),
            "fallback": false,
            "expires_at": "2025-06-03T12:34:56.789Z",
            "local_hour": 20
        }
    })
}

fn count(path: PathBuf) -> i64 {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM events", [], |r| r.get(0)))
        .unwrap_or(-1)
}

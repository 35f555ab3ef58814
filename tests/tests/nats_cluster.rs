//! A clustered broker: three NATS nodes with JetStream and MQTT, agents on two of them, the
//! data bank on the third. One node is killed (`kill -9`) mid-sync and comes back; every
//! event still arrives exactly once. Agents speak plain MQTT and know nothing of the cluster.
//! NATS (2.9) has no MQTT shared subscriptions, so a data bank runs with
//! `--share-group none` here, and two data banks split the load as members of a NATS queue
//! group (`--nats`) while the agents stay plain MQTT.

use std::path::{Path, PathBuf};
use std::time::Duration;

use caidan_e2e::{Agent, Databank, NatsCluster, agent_outbox, claim_many, wait_until};
use caidan_testkit::agent::AgentOptions;

const DRAIN: Duration = Duration::from_secs(180);
const BACKLOG: usize = 2_000;
/// The demo operator's token (fleet-wide data bank routes).
const OPERATOR: &str = "demo-operator-token";

/// A demo agent named `device`, its store in `data`, syncing to `mqtt` (offline when `None`).
fn agent(data: &Path, device: &str, mqtt: Option<&str>) -> Agent {
    Agent::start_with(
        data,
        AgentOptions {
            config_edits: vec![(
                "id = \"demo-cinema-01\"".into(),
                format!("id = \"{device}\""),
            )],
            ..AgentOptions::fast_sync(mqtt)
        },
    )
}

/// Whether every agent's outbox is empty and the data bank holds every event they wrote.
fn all_drained(datas: &[PathBuf], bank: &Databank) -> bool {
    let (depth, written) = datas
        .iter()
        .map(|d| agent_outbox(d))
        .fold((0, 0), |(a, b), (d, l)| (a + d, b + l));
    depth == 0 && bank.counts().events == written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_sync_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let datas = [dir.path().join("agent-a"), dir.path().join("agent-b")];
    let devices = ["nats-kiosk-a", "nats-kiosk-b"];
    // Each agent builds a backlog offline.
    for (data, device) in datas.iter().zip(devices) {
        let a = agent(data, device, None);
        assert_eq!(claim_many(&a, device, BACKLOG, 16).await, BACKLOG);
    }
    let mut cluster = NatsCluster::start(dir.path());
    let bank = Databank::start(
        &dir.path().join("bank"),
        &cluster.nodes[2].url(),
        &["--share-group", "none"],
    );
    let agents: Vec<Agent> = datas
        .iter()
        .zip(devices)
        .enumerate()
        .map(|(i, (data, device))| agent(data, device, Some(&cluster.nodes[i].url())))
        .collect();
    assert!(
        wait_until(DRAIN, || bank.counts().events > 300),
        "sync never started: {:?}",
        bank.counts()
    );
    // Mid-sync, the node agent A is connected to dies; shoppers keep being served.
    cluster.kill9(0);
    let stored_at_kill = bank.counts().events;
    assert!(
        stored_at_kill < 2 * BACKLOG as i64,
        "the kill came after the backlog was through"
    );
    for (a, device) in agents.iter().zip(devices) {
        assert_eq!(claim_many(a, &format!("{device}-during"), 50, 4).await, 50);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(0);
    for (a, device) in agents.iter().zip(devices) {
        assert_eq!(claim_many(a, &format!("{device}-after"), 50, 4).await, 50);
    }
    assert!(
        wait_until(DRAIN, || all_drained(&datas, &bank)),
        "not drained: bank {:?}, outboxes {:?}",
        bank.counts(),
        datas.iter().map(|d| agent_outbox(d)).collect::<Vec<_>>()
    );
    let c = bank.counts();
    assert_eq!(c.claims, 2 * (BACKLOG as i64 + 100));
    assert_eq!(c.duplicate_seqs, 0, "a seq stored twice");
    assert_eq!(c.epochs, 2);
    drop(agents);
}

/// `caidan_databank_events_stored_total` of a data bank process.
async fn stored_by(bank: &Databank) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", bank.http))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("caidan_databank_events_stored_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no events_stored in\n{text}"))
}

/// Publishes `payload` on `subject` over the plain NATS protocol, as any client of the
/// cluster could; returns the server's answer to the PING after it (`PONG`), or the error it
/// closed the connection with (it does so on a payload over its limit, mid-write).
fn nats_publish(port: u16, subject: &str, payload: &[u8]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap(); // INFO
    let mut w = s;
    write!(
        w,
        "CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n",
        payload.len()
    )
    .unwrap();
    let _ = w
        .write_all(payload)
        .and_then(|()| w.write_all(b"\r\nPING\r\n"));
    line.clear();
    let _ = r.read_line(&mut line);
    line
}

/// Dead letters a data bank process kept, by reason.
async fn dead_letter_reasons(bank: &Databank) -> Vec<String> {
    let url = format!("{}/api/v1/dead-letters", bank.http);
    let v = caidan_testkit::get_json(&reqwest::Client::new(), &url, Some(OPERATOR)).await;
    v["dead_letters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["reason"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_data_banks_split_the_load_as_a_nats_queue_group() {
    let dir = tempfile::tempdir().unwrap();
    let datas = [dir.path().join("agent-a"), dir.path().join("agent-b")];
    let devices = ["queue-kiosk-a", "queue-kiosk-b"];
    for (data, device) in datas.iter().zip(devices) {
        let a = agent(data, device, None);
        assert_eq!(claim_many(&a, device, BACKLOG, 16).await, BACKLOG);
    }
    let cluster = NatsCluster::start(dir.path());
    // Two data banks on one store, on nodes 2 and 3, each a member of the NATS queue group
    // for event batches; device state and acknowledgements over MQTT on the same node.
    let store = dir.path().join("databank.db");
    let banks: Vec<Databank> = [1, 2]
        .into_iter()
        .map(|i| {
            let node = &cluster.nodes[i];
            let nats = format!("nats://127.0.0.1:{}", node.port);
            Databank::start_on_store(
                &dir.path().join(format!("bank-{i}")),
                &store,
                &format!("queue-databank-{i}"),
                &node.url(),
                &["--share-group", "none", "--nats", &nats],
            )
        })
        .collect();
    let agents: Vec<Agent> = datas
        .iter()
        .zip(devices)
        .map(|(data, device)| agent(data, device, Some(&cluster.nodes[0].url())))
        .collect();
    for (a, device) in agents.iter().zip(devices) {
        assert_eq!(claim_many(a, &format!("{device}-online"), 50, 4).await, 50);
    }
    assert!(
        wait_until(DRAIN, || all_drained(&datas, &banks[0])),
        "not drained: bank {:?}, outboxes {:?}",
        banks[0].counts(),
        datas.iter().map(|d| agent_outbox(d)).collect::<Vec<_>>()
    );
    let c = banks[0].counts();
    assert_eq!(c.claims, 2 * (BACKLOG as i64 + 50));
    assert_eq!(c.duplicate_seqs, 0, "a seq stored twice");
    // Each bank stored part of the batches, and together each event once.
    let (a, b) = (stored_by(&banks[0]).await, stored_by(&banks[1]).await);
    assert!(a > 0 && b > 0, "one bank took everything: {a} and {b}");
    assert_eq!(
        a + b,
        c.events as u64,
        "{a} + {b} stored, {} held",
        c.events
    );

    // A stranger on the NATS side: junk and an empty batch on a device's subject are set
    // aside once each, an oversized one NATS itself refuses (its 1 MB max_payload, the
    // batch limit too), nothing is stored, and the banks go on taking batches.
    let subject = "caidan.v1.demo.d.queue-kiosk-a.events";
    let port = cluster.nodes[1].port;
    assert!(nats_publish(port, subject, b"{not json").starts_with("PONG"));
    assert!(nats_publish(port, subject, b"[]").starts_with("PONG"));
    let refused = nats_publish(port, subject, &vec![b'['; 2 << 20]);
    assert!(refused.contains("Maximum Payload"), "NATS said {refused:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let mut r = dead_letter_reasons(&banks[0]).await;
        r.sort();
        if r.len() >= 2 || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seen, ["empty", "garbled"], "{seen:?}");
    assert_eq!(banks[0].counts().events, c.events, "junk stored nothing");
    assert_eq!(claim_many(&agents[0], "after-junk", 20, 4).await, 20);
    assert!(
        wait_until(DRAIN, || all_drained(&datas, &banks[0])),
        "not drained after the junk"
    );
    drop(agents);
}

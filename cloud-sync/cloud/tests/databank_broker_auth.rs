//! The `caidan-cloud databank` binary through `mqtts://` with a user name and password, to a
//! Mosquitto that requires both: the password comes from the environment, the ack comes back,
//! and no log line carries the password.

mod common;

use std::process::Command;
use std::time::Duration;

use caidan_sync::broker_url::BrokerUrl;
use caidan_sync::contract::Ack;
use caidan_sync::tls::TlsFiles;
use caidan_sync::topics;
use caidan_testkit::{DatabankProc, Mosquitto, TestPki};
use rumqttc::{AsyncClient, Event, Packet, QoS};

const BANK_PASSWORD: &str = "bank-s3cret-never-logged";
const DEVICE_PASSWORD: &str = "dev1ce-pw";

fn add_user(file: &std::path::Path, user: &str, password: &str) {
    let mut cmd = Command::new(caidan_testkit::proc::require(
        "mosquitto_passwd",
        "mosquitto",
    ));
    if !file.exists() {
        cmd.arg("-c");
    }
    let ok = cmd
        .arg("-b")
        .arg(file)
        .args([user, password])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mosquitto_passwd {user}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databank_connects_with_tls_user_and_password_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let passwords = dir.path().join("passwords");
    add_user(&passwords, "databank", BANK_PASSWORD);
    add_user(&passwords, "auth-d1", DEVICE_PASSWORD);
    let extra = format!(
        "{}allow_anonymous false\npassword_file {}",
        pki.mosquitto_tls(false),
        passwords.display()
    );
    let broker = Mosquitto::start(dir.path(), &extra);
    let ca = pki.ca();

    // Without the password the broker refuses the data bank; it keeps retrying, never
    // crashing, and says why.
    let url = format!("mqtts://databank@127.0.0.1:{}", broker.port);
    let refused = DatabankProc::start_env(
        &dir.path().join("refused"),
        &url,
        &["--mqtt-ca", ca.to_str().unwrap()],
        &[],
    );
    assert!(
        caidan_testkit::eventually(Duration::from_secs(10), || refused
            .proc
            .log_text()
            .contains("broker connection lost"))
        .await,
        "{}",
        refused.proc.log_text()
    );
    drop(refused);

    let bank = DatabankProc::start_env(
        dir.path(),
        &url,
        &["--mqtt-ca", ca.to_str().unwrap()],
        &[("CAIDAN_MQTT_PASSWORD", BANK_PASSWORD)],
    );

    // A device with its own credentials publishes a batch and waits for the ack.
    let device_url: BrokerUrl = format!(
        "mqtts://auth-d1:{DEVICE_PASSWORD}@localhost:{}",
        broker.port
    )
    .parse()
    .unwrap();
    let tls = TlsFiles {
        ca: Some(ca.clone()),
        ..TlsFiles::default()
    };
    let (client, mut eventloop) =
        AsyncClient::new(device_url.mqtt_options("auth-d1", &tls).unwrap(), 100);
    let epoch = common::epoch(0xa1);
    let ack_topic = topics::ack(common::FLEET, "auth-d1");
    let batch = common::batch("auth-d1", &epoch, 1..=20);
    // Like the uplink, the device sends again until acknowledged: the data bank may not have
    // subscribed yet when the first copy goes out.
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                let topic = topics::events(common::FLEET, "auth-d1");
                let _ = client
                    .publish(topic, QoS::AtLeastOnce, false, batch.clone())
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let acked = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(&ack_topic, QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                    let ack = Ack::parse_verified(
                        &p.payload,
                        common::FLEET,
                        "auth-d1",
                        &common::demo_trust(),
                    )
                    .unwrap();
                    if ack.seq == 20 {
                        return ack;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("device connection: {e}"),
            }
        }
    })
    .await
    .expect("an ack within 60 s: the data bank is subscribed through TLS with its password");
    sender.abort();
    assert_eq!(acked.epoch.to_string(), epoch);
    assert_eq!(bank.counts().events, 20);

    let log = bank.proc.log_text();
    assert!(log.contains("data bank started"), "{log}");
    assert!(
        log.contains("mqtts://databank:***@127.0.0.1"),
        "the broker is named, its password replaced: {log}"
    );
    assert!(
        !log.contains(BANK_PASSWORD),
        "the password is in the log:\n{log}"
    );
}

//! The data bank against the in-process development broker (rumqttd) on a free port.

mod common;

use caidan_cloud::broker;
use common::contract;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_with_plain_subscription() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_ne!(b.local_addr().port(), 0);
    contract::exercise_contract(b.local_addr(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_with_shared_subscription() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    contract::exercise_contract(b.local_addr(), Some("databank")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_store_and_ack_no_duplicates() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    contract::kill_between_store_and_ack(b.local_addr(), "none").await;
}

// Not tested with a shared subscription on purpose: rumqttd 0.20 panics in its router
// ("group must exists", router/routing.rs:512) when a persistent-session member of a shared
// group disconnects with messages in flight, which is exactly this crash. `caidan-cloud dev`
// therefore subscribes plainly; see broker.rs.

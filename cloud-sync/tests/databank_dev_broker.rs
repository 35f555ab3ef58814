//! The data bank against the in-process development broker (rumqttd) on a free port.

#[path = "databank_helpers.rs"]
mod helpers;

use caidan_cloud_sync::broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_with_plain_subscription() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_ne!(b.local_addr().port(), 0);
    helpers::exercise_contract(b.local_addr(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_with_shared_subscription() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    helpers::exercise_contract(b.local_addr(), Some("databank")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_store_and_ack_no_duplicates() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    helpers::kill_between_store_and_ack(b.local_addr(), "none").await;
}

// Not tested with a shared subscription on purpose: rumqttd 0.20 panics in its router
// ("group must exists", router/routing.rs:512) when a persistent-session member of a shared
// group disconnects with messages in flight, which is exactly this crash. `caidan-cloud dev`
// therefore subscribes plainly; see broker.rs.

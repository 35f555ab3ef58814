//! The data bank against a real Mosquitto process (own config, free port).

#[path = "databank_helpers.rs"]
mod helpers;

use helpers::Mosquitto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_with_shared_subscription() {
    let m = Mosquitto::start();
    helpers::exercise_contract(m.addr, Some("databank")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_store_and_ack_no_duplicates() {
    let m = Mosquitto::start();
    helpers::kill_between_store_and_ack(m.addr, "databank").await;
}

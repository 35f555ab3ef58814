//! The data bank against a real Mosquitto process (own config, free port).

mod common;

use common::{Mosquitto, contract};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_with_shared_subscription() {
    let m = Mosquitto::start();
    contract::exercise_contract(m.addr, Some("databank")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_store_and_ack_no_duplicates() {
    let m = Mosquitto::start();
    contract::kill_between_store_and_ack(m.addr, "databank").await;
}

//! Opening stores written by other versions: newer ones are refused by name, older ones
//! migrate, and readers never migrate behind the writer's back.

use std::sync::Arc;

use caidan_agent::config::AgentConfig;
use caidan_agent::runtime::{open_writer, store_path};
use caidan_agent::store::{Reader, StoreError};
use caidan_sync::clock::{Clock, ManualClock};
use tokio::sync::Notify;

fn open(dir: &std::path::Path) -> Result<(), caidan_agent::runtime::AgentError> {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_795_399_200_000));
    let (writer, thread) = open_writer(
        &AgentConfig::demo(),
        dir,
        clock,
        Arc::new(Notify::new()),
        None,
    )?;
    drop(writer);
    thread.join().unwrap();
    Ok(())
}

#[test]
fn a_store_from_a_newer_agent_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).unwrap();
    let conn = rusqlite::Connection::open(store_path(dir.path())).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("schema v99") && err.contains("newer") && err.contains("upgrade caidan-agent"),
        "{err}"
    );
    let err = Reader::open(&store_path(dir.path())).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn an_empty_older_store_is_migrated_and_readers_say_when_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    // A file SQLite knows but our schema has never touched: version 0.
    rusqlite::Connection::open(store_path(dir.path()))
        .unwrap()
        .execute_batch("CREATE TABLE unrelated (x);")
        .unwrap();
    let err = Reader::open(&store_path(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("schema v0") && err.contains("older"), "{err}");
    open(dir.path()).unwrap();
    let reader = Reader::open(&store_path(dir.path())).unwrap();
    assert_eq!(reader.epoch().unwrap().to_string().len(), 36);
    assert_eq!(reader.epoch().unwrap().get_version_num(), 7);
}

#[test]
fn a_missing_store_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = Reader::open(&store_path(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no agent store at") && err.contains("agent.db"),
        "{err}"
    );
}

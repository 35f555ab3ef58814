//! Fleet config in the store: a layer applied with everything it changes in one
//! transaction, or a refusal recorded.

use caidan_sync::contract::{ConfigAck, ConfigData, EventData};
use rusqlite::{Connection, params};

use super::{Now, write_event};
use crate::catalogue::Catalogue;
use crate::events::NewEvent;
use crate::store::StoreError;
use crate::store::state::State;

/// Meta key of the trusted config keys after a rotation (JSON array of public keys).
pub const META_TRUST: &str = "config_trust";
/// Meta key of the digest of the catalogue the config layers last imported.
pub const META_CATALOGUE: &str = "config_catalogue";
/// Meta key of the last refused document's answer (JSON).
pub const META_REJECTION: &str = "config_rejection";

/// One verified layer to apply, with what it changes.
#[derive(Debug)]
pub struct ConfigApply {
    pub layer: &'static str,
    pub target: String,
    pub version: u64,
    pub digest: String,
    /// The signed payload (JSON).
    pub document: String,
    /// The merged catalogue, when it changed, and its digest.
    pub catalogue: Option<(Catalogue, String)>,
    /// The next trusted key set, when the layer rotates it.
    pub trust: Option<Vec<String>>,
    pub answer: ConfigAck,
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn config_event(st: &State, answer: &ConfigAck) -> NewEvent {
    NewEvent {
        subject: None,
        brand: None,
        data: EventData::Config(ConfigData {
            answer: answer.clone(),
            scene: st.events.source().scene,
        }),
    }
}

/// Stores the layer, imports the catalogue it brings, rotates keys, and records the answer.
pub fn apply_config(
    conn: &Connection,
    st: &mut State,
    now: Now,
    plan: &ConfigApply,
) -> Result<(), StoreError> {
    if let Some((catalogue, digest)) = &plan.catalogue {
        super::import(conn, st, now, catalogue)?;
        set_meta(conn, META_CATALOGUE, digest)?;
    }
    conn.execute(
        "INSERT INTO config_layers (layer, target, version, digest, document, applied_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (layer, target) DO UPDATE SET version = excluded.version,
           digest = excluded.digest, document = excluded.document, applied_ms = excluded.applied_ms",
        params![
            plan.layer,
            plan.target,
            plan.version as i64,
            plan.digest,
            plan.document,
            now.ms
        ],
    )?;
    if let Some(keys) = &plan.trust {
        set_meta(
            conn,
            META_TRUST,
            &serde_json::to_string(keys).unwrap_or_default(),
        )?;
    }
    write_event(conn, st, now, config_event(st, &plan.answer))
}

/// Records a refused document: the answer in the outbox and as the last refusal.
pub fn reject_config(
    conn: &Connection,
    st: &mut State,
    now: Now,
    answer: &ConfigAck,
) -> Result<(), StoreError> {
    set_meta(
        conn,
        META_REJECTION,
        &serde_json::to_string(answer).unwrap_or_default(),
    )?;
    write_event(conn, st, now, config_event(st, answer))
}

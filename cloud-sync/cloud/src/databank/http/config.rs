//! `GET /api/v1/fleets/{fleet}/devices/{device}/config`: a device's config answers as the
//! data bank stored them (`com.caidan.config` events), and the versions in force, per
//! layer, before a given sequence number: which config served a claim. Operators only.

use std::collections::BTreeMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Json;
use caidan_sync::contract::{ConfigAck, ConfigStatus, EventData, EventType, Layer, Name};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::stock::bounded;
use super::{ApiError, ApiState};

/// Answers listed at most, newest kept.
const MAX_HISTORY: usize = 500;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigParams {
    /// With `before_seq`: the device's store epoch the sequence number belongs to.
    epoch: Option<uuid::Uuid>,
    /// The versions in force for the event at this sequence number (say a claim's).
    before_seq: Option<i64>,
}

/// The fleet and device a path names.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct DevicePath {
    fleet: String,
    device: String,
}

/// A device's config answers, oldest first, and the versions in force.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct DeviceConfig {
    fleet: String,
    device: String,
    /// Per layer (`fleet`, `scene:{scene}`, `device:{device}`, ...): the version applied last
    /// (before `before_seq`, when given).
    in_force: BTreeMap<String, u64>,
    /// The newest 500 answers.
    history: Vec<ConfigAnswer>,
}

/// One stored config answer.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct ConfigAnswer {
    epoch: String,
    seq: i64,
    time_ms: i64,
    answer: ConfigAck,
}

pub(super) async fn device_config(
    State(s): State<ApiState>,
    path: Result<Path<DevicePath>, PathRejection>,
    params: Result<Query<ConfigParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<DeviceConfig>, ApiError> {
    let Path(DevicePath { fleet, device }) = path.map_err(|e| bounded(e.body_text()))?;
    let Query(params) = params.map_err(|e| bounded(e.body_text()))?;
    s.operator(&headers)?;
    let name =
        |what: &str, v: &str| Name::new(v).map_err(|e| ApiError::BadQuery(format!("{what}: {e}")));
    let (fleet, device) = (name("fleet", &fleet)?, name("device", &device)?);
    if params.before_seq.is_some() != params.epoch.is_some() {
        return Err(ApiError::BadQuery(
            "before_seq and epoch go together".into(),
        ));
    }
    let (f, d) = (fleet.to_string(), device.to_string());
    let (f2, d2) = (f.clone(), d.clone());
    let rows = s
        .read(
            move |c| crate::databank::store::config_events(c, &f, &d),
            move |c| crate::databank::store::pg::read::config_events(c, &f2, &d2),
        )
        .await?;
    let mut history = Vec::new();
    let mut in_force: BTreeMap<String, u64> = BTreeMap::new();
    for (epoch, seq, time_ms, body) in rows {
        let Some(answer) = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| EventData::parse(EventType::Config, &b["data"].to_string()).ok())
            .and_then(|d| match d {
                EventData::Config(c) => Some(c.answer),
                _ => None,
            })
        else {
            continue;
        };
        let before = match (params.epoch, params.before_seq) {
            (Some(e), Some(n)) => epoch == e.to_string() && seq < n,
            _ => true,
        };
        if before
            && answer.status == ConfigStatus::Applied
            && let (Some(layer), Some(target), Some(version)) =
                (answer.layer, &answer.target, answer.version)
        {
            let key = match layer {
                Layer::Fleet => "fleet".to_owned(),
                l => format!("{}:{target}", l.as_str()),
            };
            in_force.insert(key, version);
        }
        history.push(ConfigAnswer {
            epoch,
            seq,
            time_ms,
            answer,
        });
    }
    let skip = history.len().saturating_sub(MAX_HISTORY);
    Ok(Json(DeviceConfig {
        fleet: fleet.to_string(),
        device: device.to_string(),
        in_force,
        history: history.split_off(skip),
    }))
}

//! What `fleet status` shows of each device's retained state: one row per device, as a table
//! for people or as JSON for scripts.

use std::collections::BTreeMap;

use caidan_sync::contract::{ConfigAck, StateMessage};
use serde::Serialize;

/// The longest last-rejection text in the table; `--json` has it whole.
const REJECTION_WIDTH: usize = 60;

/// One device, as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub device: String,
    pub groups: Vec<String>,
    pub scene: Option<String>,
    pub profile: String,
    pub online: bool,
    pub fleet_version: Option<u64>,
    pub group_versions: BTreeMap<String, u64>,
    pub device_version: Option<u64>,
    pub last_rejection: Option<RejectionView>,
    pub outbox_depth: Option<i64>,
    pub storage: Option<StorageView>,
    pub last_error: Option<String>,
    /// Device time of the state (RFC 3339).
    pub at: Option<jiff::Timestamp>,
    /// Seconds between `at` and now, by this machine's clock.
    pub age_secs: Option<i64>,
}

/// The last document a device refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectionView {
    pub layer: Option<String>,
    pub target: Option<String>,
    pub version: Option<u64>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub digest: String,
}

/// The store against its budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageView {
    pub used_bytes: u64,
    pub budget_bytes: u64,
    pub percent: u64,
    pub fill: String,
}

impl Row {
    /// The row of `device` from its state, aged against `now`.
    pub fn new(device: &str, state: &StateMessage, now: jiff::Timestamp) -> Row {
        let report = state.config.clone().unwrap_or_default();
        Row {
            device: device.to_owned(),
            groups: state.groups.iter().map(|g| g.to_string()).collect(),
            scene: state.scene.as_ref().map(|s| s.to_string()),
            profile: state.profile.to_string(),
            online: state.online,
            fleet_version: report.fleet,
            group_versions: report
                .groups
                .iter()
                .map(|(g, v)| (g.to_string(), *v))
                .collect(),
            device_version: report.device,
            last_rejection: report.last_rejection.as_ref().map(rejection),
            outbox_depth: state.outbox_depth,
            storage: state.storage.as_ref().map(|s| StorageView {
                used_bytes: s.used_bytes,
                budget_bytes: s.budget_bytes,
                percent: (s.used_bytes.saturating_mul(100))
                    .checked_div(s.budget_bytes)
                    .unwrap_or(0),
                fill: s.fill.as_str().to_owned(),
            }),
            last_error: state.last_error.clone(),
            at: state.at,
            age_secs: state.at.map(|at| now.duration_since(at).as_secs()),
        }
    }
}

fn rejection(ack: &ConfigAck) -> RejectionView {
    RejectionView {
        layer: ack.layer.map(|l| l.as_str().to_owned()),
        target: ack.target.as_ref().map(|t| t.to_string()),
        version: ack.version,
        code: ack.reason.as_ref().map(|r| r.code.as_str().to_owned()),
        message: ack.reason.as_ref().map(|r| r.message.clone()),
        digest: ack.digest.clone(),
    }
}

/// `layer:version code: message`, cut to `width` characters.
fn rejection_text(r: &RejectionView, width: usize) -> String {
    let layer = r.layer.as_deref().unwrap_or("?");
    let version = r.version.map_or_else(|| "?".to_owned(), |v| v.to_string());
    let text = format!(
        "{layer}:{version} {}: {}",
        r.code.as_deref().unwrap_or("rejected"),
        r.message.as_deref().unwrap_or("")
    );
    cut(&text, width)
}

/// `text` cut to `width` characters, an ellipsis marking the cut.
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let head: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{head}…")
}

/// A duration in seconds as a short age: `42s`, `5m`, `3h`, `2d`.
pub fn age(secs: i64) -> String {
    match secs {
        s if s < 0 => "ahead".to_owned(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

const HEADERS: [&str; 12] = [
    "DEVICE",
    "GROUPS",
    "SCENE",
    "PROFILE",
    "ONLINE",
    "FLEET",
    "GROUP",
    "DEVICE",
    "LAST REJECTION",
    "OUTBOX",
    "STORAGE",
    "SEEN",
];

fn cells(row: &Row) -> [String; 12] {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(",")
        }
    };
    let groups: Vec<String> = row
        .group_versions
        .iter()
        .map(|(g, v)| format!("{g}={v}"))
        .collect();
    [
        row.device.clone(),
        list(&row.groups),
        opt(row.scene.clone()),
        row.profile.clone(),
        if row.online { "yes" } else { "no" }.to_owned(),
        opt(row.fleet_version.map(|v| v.to_string())),
        list(&groups),
        opt(row.device_version.map(|v| v.to_string())),
        opt(row
            .last_rejection
            .as_ref()
            .map(|r| rejection_text(r, REJECTION_WIDTH))),
        opt(row.outbox_depth.map(|v| v.to_string())),
        opt(row
            .storage
            .as_ref()
            .map(|s| format!("{}% {}", s.percent, s.fill))),
        opt(row.age_secs.map(|s| format!("{} ago", age(s)))),
    ]
}

/// The rows as an aligned table, header first, one line per device.
pub fn table(rows: &[Row]) -> String {
    let body: Vec<[String; 12]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for r in &body {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            out.push_str(c);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&HEADERS.map(str::to_owned));
    for r in &body {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: serde_json::Value) -> StateMessage {
        StateMessage::parse(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    #[test]
    fn rows_show_versions_rejection_storage_and_age() {
        let s = state(serde_json::json!({
            "online": true, "profile": "kiosk", "config_version": 7, "outbox_depth": 12,
            "last_error": null, "groups": ["north", "promo"], "scene": "cinema",
            "storage": {"used_bytes": 850, "budget_bytes": 1000, "fill": "warning"},
            "config": {"fleet": 3, "groups": {"north": 7}, "device": 1,
                "last_rejection": {"layer": "group", "target": "promo", "version": 4,
                    "status": "rejected", "digest": "ab",
                    "reason": {"code": "invalid_for_profile", "message": "the profile has no printer for the coupon offers of this long, long layer"}}},
            "at": "2026-12-01T10:00:00Z"
        }));
        let now: jiff::Timestamp = "2026-12-01T10:05:30Z".parse().unwrap();
        let row = Row::new("k01", &s, now);
        assert_eq!(row.age_secs, Some(330));
        assert_eq!(row.storage.as_ref().unwrap().percent, 85);
        let text = table(std::slice::from_ref(&row));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("DEVICE  GROUPS"), "{text}");
        for want in [
            "k01",
            "north,promo",
            "cinema",
            "north=7",
            "group:4 invalid_for_profile: the profile",
            "85% warning",
            "5m ago",
            " 12 ",
        ] {
            assert!(lines[1].contains(want), "{want:?} in {text}");
        }
        assert!(lines[1].contains('…'), "long reasons are cut: {text}");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["last_rejection"]["code"], "invalid_for_profile");
        assert_eq!(json["group_versions"]["north"], 7);
    }

    #[test]
    fn a_bare_state_shows_dashes() {
        let s = state(serde_json::json!({
            "online": false, "profile": "locker", "config_version": null,
            "outbox_depth": null, "last_error": null
        }));
        let row = Row::new("k02", &s, jiff::Timestamp::now());
        let line = table(&[row]).lines().nth(1).unwrap().to_owned();
        assert!(line.starts_with("k02 "), "{line}");
        assert!(line.contains(" no "), "{line}");
        assert_eq!(
            line.matches(" - ").count() + usize::from(line.ends_with('-')),
            9,
            "{line}"
        );
    }

    #[test]
    fn ages() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(125), "2m");
        assert_eq!(age(7200), "2h");
        assert_eq!(age(3 * 86_400 + 5), "3d");
        assert_eq!(age(-3), "ahead");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}

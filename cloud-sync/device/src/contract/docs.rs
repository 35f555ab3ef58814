//! `docs/events.md` generated from the contract types, so the document cannot drift from the
//! code: a test regenerates the marked part of the file and fails when it differs
//! (`UPDATE_DOCS=1 cargo test -p caidan-sync docs` rewrites it).

use std::fmt::Write as _;

use schemars::JsonSchema;
use serde_json::Value;

use super::{
    Ack, CancelOrder, ClaimData, EventType, ImpressionData, OrderData, PickupOrder, RedemptionData,
    RejectionData, ScanData, SetStock, StateMessage, StockData,
};

/// First line of the generated part of `docs/events.md`.
pub const BEGIN: &str = "<!-- generated from the caidan-sync contract types; UPDATE_DOCS=1 cargo test -p caidan-sync docs -->";
/// Last line of the generated part.
pub const END: &str = "<!-- end of generated part -->";

/// The JSON Schema of each event type's `data`.
pub fn data_schema(ty: EventType) -> Value {
    fn of<T: JsonSchema>() -> Value {
        schemars::schema_for!(T).to_value()
    }
    match ty {
        EventType::Impression => of::<ImpressionData>(),
        EventType::Scan => of::<ScanData>(),
        EventType::Claim => of::<ClaimData>(),
        EventType::Redemption => of::<RedemptionData>(),
        EventType::Rejection => of::<RejectionData>(),
        EventType::Order => of::<OrderData>(),
        EventType::Stock => of::<StockData>(),
        EventType::Config => of::<super::ConfigData>(),
    }
}

/// The generated part: one table per event type's `data`, then the acknowledgement and the
/// state message.
pub fn generated() -> String {
    let mut out = String::new();
    out.push_str("## Types and `data`\n\n| type | AIPL |\n| --- | --- |\n");
    for ty in EventType::ALL {
        let _ = writeln!(
            out,
            "| [`{ty}`](#{}) | {} |",
            anchor(ty.as_str()),
            ty.stage_text()
        );
    }
    for ty in EventType::ALL {
        let schema = data_schema(ty);
        let _ = write!(out, "\n### `{ty}`\n\n");
        if let Some(d) = schema.get("description").and_then(Value::as_str) {
            // Data types are documented as "`type`: what it records."
            let what = d.split_once(": ").map_or(d, |(_, rest)| rest);
            let _ = writeln!(out, "{}\n", capitalised(what));
        }
        out.push_str(&fields_table(&schema));
    }
    out.push_str("\n## Acknowledgement\n\n");
    out.push_str(
        "Published by the data bank on `caidan/v1/{fleet}/d/{device}/ack` (QoS 1) after the \
         batch is committed.\n\n",
    );
    out.push_str(&fields_table(&schemars::schema_for!(Ack).to_value()));
    out.push_str("\n## State\n\n");
    out.push_str(
        "Retained on `caidan/v1/{fleet}/d/{device}/state` (QoS 1); the last will sets \
         `online: false`.\n\n",
    );
    out.push_str(&fields_table(
        &schemars::schema_for!(StateMessage).to_value(),
    ));
    out.push_str("\n## Orders\n\n");
    out.push_str(
        "Published by the order system on `caidan/v1/{fleet}/d/{device}/orders` (QoS 1; the \
         device keeps a persistent session, so orders wait at the broker while it is \
         offline). One JSON object of at most 16 KiB, tagged by `type`. The device answers \
         with `com.caidan.order` and `com.caidan.stock` events through its outbox.\n",
    );
    for (ty, schema) in [
        ("order", schemars::schema_for!(PickupOrder).to_value()),
        ("cancel", schemars::schema_for!(CancelOrder).to_value()),
        ("set_stock", schemars::schema_for!(SetStock).to_value()),
    ] {
        let _ = write!(out, "\n### `\"type\": \"{ty}\"`\n\n");
        if let Some(d) = schema.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{d}\n");
        }
        out.push_str(&fields_table(&schema));
    }
    out.push_str("\n## Config\n\n");
    out.push_str(
        "Published by operators, retained (QoS 1), on `caidan/v1/{fleet}/config` (the fleet \
         layer), `caidan/v1/{fleet}/g/{group}/config` (a group's) and \
         `caidan/v1/{fleet}/d/{device}/config` (one device's); a staged rollout hands a device \
         a fleet or group layer on `caidan/v1/{fleet}/d/{device}/config/rollout` first. Each \
         is a DSSE envelope (`payloadType` `application/vnd.caidan.config+json`, at most \
         1 MiB) whose Ed25519 signatures cover the DSSE pre-authentication encoding of the \
         payload; docs/fleet.md lists the settings a layer may hold.\n\n",
    );
    for (what, schema) in [
        (
            "Envelope",
            schemars::schema_for!(super::Envelope).to_value(),
        ),
        (
            "Document (the payload)",
            schemars::schema_for!(super::ConfigDocument).to_value(),
        ),
        (
            "Answer, on `.../d/{device}/config/ack` (QoS 1)",
            schemars::schema_for!(super::ConfigAck).to_value(),
        ),
    ] {
        let _ = write!(out, "\n### {what}\n\n");
        out.push_str(&fields_table(&schema));
    }
    out
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    let first = chars.next().map(|c| c.to_uppercase().to_string());
    format!("{}{}", first.unwrap_or_default(), chars.as_str())
}

fn anchor(title: &str) -> String {
    title
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_lowercase()
}

/// `| field | type | meaning |` for the properties of an object schema.
fn fields_table(schema: &Value) -> String {
    let mut out = String::from("| field | type | meaning |\n| --- | --- | --- |\n");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props {
            let mut ty = type_text(prop, schema);
            if !required.contains(&name.as_str()) {
                ty.push_str(", optional");
            }
            let meaning = description(prop, schema).replace('|', "\\|");
            let _ = writeln!(out, "| `{name}` | {ty} | {meaning} |");
        }
    }
    out
}

fn resolve<'a>(v: &'a Value, root: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| root["$defs"].get(name))
            .unwrap_or(v),
        None => v,
    }
}

fn description(prop: &Value, root: &Value) -> String {
    prop.get("description")
        .or_else(|| resolve(prop, root).get("description"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .replace('\n', " ")
}

/// A human reading of a property's schema.
fn type_text(prop: &Value, root: &Value) -> String {
    let v = resolve(prop, root);
    if let Some(any) = v.get("anyOf").and_then(Value::as_array) {
        let parts: Vec<String> = any
            .iter()
            .filter(|s| s["type"] != "null")
            .map(|s| type_text(s, root))
            .collect();
        return parts.join(" or ");
    }
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .map(|n| format!("`{}`", n.as_str().unwrap_or("?")))
            .collect();
        return names.join(", ");
    }
    if let Some(one) = v.get("oneOf").and_then(Value::as_array) {
        let names: Vec<String> = one
            .iter()
            .flat_map(|s| {
                let listed = s["enum"].as_array().cloned().unwrap_or_default();
                listed.into_iter().chain(s.get("const").cloned())
            })
            .map(|n| format!("`{}`", n.as_str().unwrap_or("?")))
            .collect();
        return names.join(", ");
    }
    let ty = match &v["type"] {
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("any")
            .to_owned(),
        Value::String(t) => t.clone(),
        _ => "any".to_owned(),
    };
    match ty.as_str() {
        "string" => match v["format"].as_str() {
            Some("date-time") => "RFC 3339 time".into(),
            Some("uuid") => "UUID".into(),
            _ => match (
                v["minLength"].as_u64(),
                v["maxLength"].as_u64(),
                v["pattern"].as_str(),
            ) {
                (Some(min), Some(max), Some(p)) => {
                    let class = p.trim_start_matches('^').trim_end_matches("+$");
                    if min == max {
                        format!("{max} of `{class}`")
                    } else {
                        format!("{min}-{max} of `{class}`")
                    }
                }
                _ => "text".into(),
            },
        },
        "integer" => match (v["minimum"].as_u64(), v["maximum"].as_u64()) {
            (Some(0), Some(max)) => format!("integer 0-{max}"),
            (Some(0), None) => "integer ≥ 0".into(),
            _ => "integer".into(),
        },
        "boolean" => "boolean".into(),
        "array" => format!("array of {}", type_text(&v["items"], root)),
        "object" => {
            let values = v["patternProperties"]
                .as_object()
                .and_then(|p| p.values().next())
                .or_else(|| v.get("additionalProperties").filter(|a| a.is_object()));
            match (values, v["properties"].as_object()) {
                (Some(values), _) => format!("map of id to {}", type_text(values, root)),
                (None, Some(props)) => {
                    let names: Vec<String> = props.keys().map(|k| format!("`{k}`")).collect();
                    format!("object of {}", names.join(", "))
                }
                (None, None) => "object".into(),
            }
        }
        other => other.into(),
    }
}

/// `text` with its generated part replaced by [`generated`].
pub fn splice(text: &str) -> Option<String> {
    let start = text.find(BEGIN)?;
    let end = text.find(END)?;
    Some(format!(
        "{}{BEGIN}\n\n{}\n{}",
        &text[..start],
        generated(),
        &text[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_md() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md")
    }

    #[test]
    fn docs_events_md_matches_the_contract_types() {
        let path = events_md();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = splice(&text).expect("docs/events.md has the generated markers");
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &expected).unwrap();
            return;
        }
        assert!(
            text == expected,
            "docs/events.md is out of date with the contract types: run \
             UPDATE_DOCS=1 cargo test -p caidan-sync docs\n--- expected generated part ---\n{}",
            generated()
        );
    }

    #[test]
    fn every_type_and_field_is_documented() {
        let text = generated();
        for ty in EventType::ALL {
            assert!(text.contains(&format!("### `{ty}`")), "{ty}");
            let schema = data_schema(ty);
            for (field, prop) in schema["properties"].as_object().unwrap() {
                assert!(text.contains(&format!("| `{field}` |")), "{ty}.{field}");
                assert!(
                    !description(prop, &schema).is_empty(),
                    "{ty}.{field} has no doc comment"
                );
            }
        }
    }
}

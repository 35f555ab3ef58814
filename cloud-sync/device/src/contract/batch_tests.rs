//! Batches checked against their topic, and every way a record can be wrong.

use serde_json::json;

use super::*;
use crate::contract::{EventData, EventType};

const SHOPPER: &str = "0123456789abcdef0123456789abcdef";

fn event(fleet: &str, device: &str, seq: u64) -> serde_json::Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": format!("/caidan/{fleet}/d/{device}"),
        "type": "com.caidan.scan",
        "time": "2025-03-01T10:15:00.123Z",
        "datacontenttype": "application/json",
        "fleet": fleet,
        "device": device,
        "epoch": "0195a0c4-0000-7000-8000-000000000001",
        "seq": seq,
        "data": {"scene": "cinema", "uptime_ms": 5, "shopper": SHOPPER, "brands": ["acme"]}
    })
}

fn bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn accepts_a_valid_batch() {
    let batch = json!([event("demo", "d1", 1), event("demo", "d1", 2)]);
    let events = parse_batch("demo", "d1", &bytes(&batch), Limits::default()).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event.seq, 2);
    assert_eq!(events[0].event.time.as_millisecond(), 1_740_824_100_123);
    assert_eq!(events[0].event.event_type(), EventType::Scan);
    let data = &events[0].event.data;
    assert_eq!(data.shopper().map(|s| s.as_str()), Some(SHOPPER));
    assert_eq!(
        data.brands().iter().map(|b| b.as_str()).collect::<Vec<_>>(),
        ["acme"]
    );
    assert_eq!(data.scene().as_str(), "cinema");
    assert!(matches!(data, EventData::Scan(_)));
    assert!(events[0].raw.contains("com.caidan.scan"));
}

#[test]
fn rejects_garbled_payloads() {
    for payload in [&b"not json"[..], b"{\"a\":1}", b"[1,2]", b"[{", b"\xff\xfe"] {
        let err = parse_batch("demo", "d1", payload, Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "garbled", "{payload:?}: {err}");
    }
    let err = parse_batch("demo", "d1", b"[]", Limits::default()).unwrap_err();
    assert_eq!(err.reason(), "empty");
}

#[test]
fn rejects_oversized_before_parsing() {
    let batch = bytes(&json!([event("demo", "d1", 1)]));
    let limits = Limits {
        max_batch_bytes: batch.len() - 1,
    };
    let err = parse_batch("demo", "d1", &batch, limits).unwrap_err();
    assert!(matches!(err, BatchError::Oversized { .. }), "{err}");
}

#[test]
fn one_foreign_source_rejects_the_whole_batch() {
    let batch = json!([event("demo", "d1", 1), event("demo", "d2", 2)]);
    let err = parse_batch("demo", "d1", &bytes(&batch), Limits::default()).unwrap_err();
    match err {
        BatchError::ForeignSource {
            device,
            index,
            source_attr,
        } => {
            assert_eq!(device, "\"d1\"");
            assert_eq!(index, 1);
            assert_eq!(source_attr, "\"/caidan/demo/d/d2\"");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn rejects_device_or_fleet_mismatch() {
    let mut e = event("demo", "d1", 1);
    e["device"] = json!("d2");
    let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
    assert_eq!(err.reason(), "wrong_device");

    let mut e = event("demo", "d1", 1);
    e["fleet"] = json!("other");
    let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
    assert_eq!(err.reason(), "wrong_fleet");

    // Published on another fleet's topic: the source no longer matches.
    let e = event("demo", "d1", 1);
    let err = parse_batch("other", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
    assert_eq!(err.reason(), "foreign_source");
}

#[test]
fn rejects_invalid_envelopes() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("specversion", json!("0.3")),
        ("id", json!("not-a-uuid")),
        ("seq", json!(0)),
        ("seq", json!(-3)),
        ("seq", json!("7")),
        ("seq", json!(1.5)),
        ("time", json!("yesterday")),
        ("epoch", json!("")),
        ("epoch", json!("x".repeat(70_000))),
        ("type", json!("")),
        ("type", json!("com.caidan.unknown")),
        ("data", json!([1])),
        ("datacontenttype", json!("text/plain")),
        ("subject", json!("a b")),
    ];
    for (field, value) in cases {
        let mut e = event("demo", "d1", 1);
        e[field] = value.clone();
        let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "invalid_event", "{field}={value}: {err}");
        assert!(err.to_string().len() < 400, "a bounded error: {err}");
    }
    for field in ["id", "epoch", "seq", "type", "time", "specversion", "data"] {
        let mut e = event("demo", "d1", 1);
        e.as_object_mut().unwrap().remove(field);
        let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "invalid_event", "missing {field}: {err}");
    }
    let mut e = event("demo", "d1", 1);
    e["extra"] = json!(1);
    let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
    assert_eq!(err.reason(), "invalid_event", "unknown attribute: {err}");
}

#[test]
fn rejects_data_outside_its_bounds() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("shopper", json!("ab")),
        ("shopper", json!(SHOPPER.to_uppercase())),
        ("brands", json!(vec!["acme"; 200])),
        ("brands", json!(["no spaces"])),
        ("scene", json!("mall")),
        ("pad", json!("x")),
    ];
    for (field, value) in cases {
        let mut e = event("demo", "d1", 1);
        e["data"][field] = value.clone();
        let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
        assert_eq!(err.reason(), "invalid_event", "{field}={value}: {err}");
    }
    let mut e = event("demo", "d1", 1);
    e["data"]["brands"] = json!(["x".repeat(20_000)]);
    let err = parse_batch("demo", "d1", &bytes(&json!([e])), Limits::default()).unwrap_err();
    assert!(
        err.to_string().contains("16384"),
        "an oversized record: {err}"
    );
}

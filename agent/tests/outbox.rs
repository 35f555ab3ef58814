//! Every fact lands in the outbox as a valid CloudEvents 1.0 record with a gapless sequence.

mod common;

use caidan_agent::store::read::Table;
use common::{TestAgent, coupon_catalogue};
use serde_json::{Value, json};

#[tokio::test]
async fn outbox_records_are_gapless_valid_cloudevents() {
    let agent = TestAgent::start(coupon_catalogue(json!({ "total": 3 }))).await;
    for i in 0..10 {
        let page = agent
            .http
            .get(agent.url(&format!("/e/{}", agent.token())))
            .header("x-shopper-id", format!("s{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status().as_u16(), 200);
        let (status, claim) = agent.crack(&format!("s{i}")).await;
        assert_eq!(status, 201);
        if i == 0 {
            let code = claim["claim_code"].as_str().unwrap();
            for _ in 0..2 {
                agent
                    .http
                    .post(agent.url("/api/v1/redemptions"))
                    .bearer_auth("demo-staff-token")
                    .json(&json!({ "code": code }))
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    // Impressions: many QR fetches in one minute become one event once the minute ends.
    for _ in 0..25 {
        agent
            .http
            .get(agent.url("/api/v1/qr"))
            .send()
            .await
            .unwrap();
    }
    agent.clock.advance_ms(60_000);
    agent
        .http
        .get(agent.url("/api/v1/qr"))
        .send()
        .await
        .unwrap();
    // The writer stores the impression event asynchronously; wait for it.
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = agent.reader().outbox_after(0, 10_000).unwrap();
        if rows
            .iter()
            .any(|r| r.json.contains("com.caidan.impression"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // 10 scans + 10 claims + 1 redemption + 1 rejection (second redemption) + 1 impression.
    assert_eq!(rows.len(), 23, "{rows:#?}");
    let mut epoch = None;
    let mut last_id = String::new();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i as i64 + 1, "no gaps");
        let v: Value = serde_json::from_str(&row.json).unwrap();
        // A real CloudEvents implementation must accept the record.
        let event: cloudevents::Event = serde_json::from_str(&row.json)
            .unwrap_or_else(|e| panic!("not a CloudEvent: {e}\n{}", row.json));
        use cloudevents::AttributesReader;
        assert_eq!(event.specversion(), cloudevents::event::SpecVersion::V10);
        assert_eq!(event.source().to_string(), "/caidan/demo/d/demo-cinema-01");
        for (name, _) in event.iter_extensions() {
            assert!(
                name.len() <= 20
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "extension {name}"
            );
        }
        assert_eq!(v["seq"].as_i64().unwrap(), row.seq);
        assert!(
            v["seq"].as_i64().unwrap() <= i64::from(i32::MAX),
            "CloudEvents integers are 32-bit"
        );
        let id = uuid::Uuid::parse_str(v["id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert!(
            v["id"].as_str().unwrap() > last_id.as_str(),
            "time-ordered ids"
        );
        last_id = v["id"].as_str().unwrap().to_owned();
        let e = v["epoch"].as_str().unwrap().to_owned();
        assert_eq!(epoch.get_or_insert(e.clone()), &e);
        assert!(v["data"]["uptime_ms"].is_i64() && v["data"]["scene"] == "cinema");
        if let Some(shopper) = v["data"]["shopper"].as_str() {
            assert_eq!(shopper.len(), 32, "shopper ids are hashed");
            assert!(!row.json.contains("\"s1\""));
        }
    }
    let impression: Value = serde_json::from_str(&rows.last().unwrap().json).unwrap();
    assert_eq!(impression["type"], "com.caidan.impression");
    assert_eq!(impression["data"]["count"], 25);
    assert_eq!(agent.count(Table::Outbox), 23);
}

#[tokio::test]
async fn a_new_store_starts_a_new_epoch() {
    let a = TestAgent::start(coupon_catalogue(json!({}))).await;
    let b = TestAgent::start(coupon_catalogue(json!({}))).await;
    assert_ne!(a.reader().epoch().unwrap(), b.reader().epoch().unwrap());
}

//! Every fact lands in the outbox as a valid CloudEvents 1.0 record with a gapless sequence.

mod common;

use caidan_agent::store::read::Table;
use caidan_sync::contract::EventType;
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
            .get(agent.screen("/api/v1/qr"))
            .send()
            .await
            .unwrap();
    }
    agent.clock.advance_ms(60_000);
    agent
        .http
        .get(agent.screen("/api/v1/qr"))
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
    // The data bank's own types accept every record, sent as one batch on the device's topic.
    let batch = format!(
        "[{}]",
        rows.iter()
            .map(|r| r.json.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let parsed = caidan_sync::contract::parse_batch(
        "demo",
        "demo-cinema-01",
        batch.as_bytes(),
        Default::default(),
    )
    .unwrap_or_else(|e| panic!("the data bank refuses the agent's events: {e}"));
    let count = |ty: EventType| parsed.iter().filter(|r| r.event.event_type() == ty).count();
    assert_eq!(
        [
            EventType::Scan,
            EventType::Claim,
            EventType::Redemption,
            EventType::Rejection,
            EventType::Impression
        ]
        .map(count),
        [10, 10, 1, 1, 1]
    );
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

/// The storage budget: once the store is full, new eggs get 507 `storage_full` and write
/// nothing; every claim answered before is kept, the outbox stays gapless, and room comes
/// back when the outbox is trimmed (the data bank's acknowledgement).
#[tokio::test]
async fn a_full_store_refuses_new_eggs_and_keeps_every_claim() {
    let mut config = common::unlimited(caidan_agent::config::AgentConfig::demo());
    config.store.budget_bytes = Some(256 * 1024);
    let agent = TestAgent::start_with(coupon_catalogue(json!({})), config).await;
    let writer = agent.running.writer.clone();
    assert!(writer.storage().used < 256 * 1024, "{:?}", writer.storage());

    let (answered, refused) = caidan_testkit::claims::until_refused(0..5_000, 507, |shopper| {
        let agent = &agent;
        async move { agent.crack(&shopper).await }
    })
    .await;
    let refused = refused.expect("the store filled up within 5,000 claims");
    assert_eq!(refused["error"], "storage_full", "{refused}");
    assert!(answered > 50, "only {answered} claims fit");

    // Refused again, and nothing was written for either refusal.
    let (claims, outbox) = (agent.count(Table::Claims), agent.count(Table::Outbox));
    let (status, _) = agent.crack("one-more-shopper").await;
    assert_eq!(status, 507);
    assert_eq!(agent.count(Table::Claims), claims);
    assert_eq!(agent.count(Table::Outbox), outbox);
    assert_eq!(claims, answered, "every answered claim is stored");
    let rows = agent.reader().outbox_after(0, 100_000).unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gapless");
    assert_eq!(writer.storage().fill, caidan_agent::store::Fill::Full);

    let metrics = agent.metrics().await;
    assert!(metrics.contains("caidan_store_fill_level 2"), "{metrics}");
    assert!(
        metrics.contains(r#"caidan_rejections_total{reason="storage_full"} 2"#),
        "{metrics}"
    );

    // The data bank acknowledges everything: the trim frees the outbox's pages.
    let last = *seqs.last().unwrap();
    let w = writer.clone();
    tokio::task::spawn_blocking(move || w.trim_blocking(last))
        .await
        .unwrap()
        .unwrap();
    let (status, body) = agent.crack("after-the-sync").await;
    assert_eq!(status, 201, "room again after the trim: {body}");
    assert_ne!(writer.storage().fill, caidan_agent::store::Fill::Full);
}

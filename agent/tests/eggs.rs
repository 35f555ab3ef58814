//! The egg loop through the real HTTP API: quotas under concurrency, rescans, next-day
//! variety, bad tokens, redemption.

mod common;

use caidan_agent::store::read::Table;
use caidan_sync::clock::Clock;
use common::{DAY_MS, TestAgent, coupon_catalogue};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_shoppers_get_exactly_the_quota() {
    let agent = TestAgent::start(coupon_catalogue(json!({ "total": 50 }))).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = agent.http.clone();
        let url = agent.url("/api/v1/eggs");
        let token = agent.token();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({ "token": token, "shopper": format!("shopper-{i}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            r.json::<serde_json::Value>().await.unwrap()
        }));
    }
    let mut coupons = 0;
    let mut fallbacks = 0;
    let mut codes = std::collections::HashSet::new();
    for t in tasks {
        let body = t.await.unwrap();
        assert!(
            codes.insert(body["claim_code"].as_str().unwrap().to_owned()),
            "claim codes are unique"
        );
        match (
            body["offer"]["id"].as_str().unwrap(),
            body["fallback"].as_bool().unwrap(),
        ) {
            ("coupon", false) => coupons += 1,
            ("story", true) => fallbacks += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((coupons, fallbacks), (50, 150));
    let stored = agent.reader().claims(1000).unwrap();
    assert_eq!(stored.iter().filter(|c| c.offer_id == "coupon").count(), 50);
    assert_eq!(stored.len(), 200);
}

#[tokio::test]
async fn rescan_returns_the_same_claim_and_the_next_day_another_offer() {
    let catalogue = json!({
        "offers": [
            { "id": "a", "brand": "lumi", "kind": "coupon", "title": { "en": "A" } },
            { "id": "b", "brand": "dawn", "kind": "discount", "title": { "en": "B" } },
            { "id": "story", "brand": "lumi", "kind": "content", "title": { "en": "Story" } }
        ]
    });
    let agent = TestAgent::start(catalogue).await;
    for shopper in ["alice", "bob", "carol", "dave"] {
        let (s1, first) = agent.crack(shopper).await;
        assert_eq!(s1, 201);
        let (s2, again) = agent.crack(shopper).await;
        assert_eq!(s2, 200);
        assert_eq!(again["claim_code"], first["claim_code"]);
        assert_eq!(again["existing"], true);
    }
    let claims_day1 = agent.count(Table::Claims);
    assert_eq!(claims_day1, 4);
    let day1: Vec<_> = futures_day(&agent, &["alice", "bob", "carol", "dave"]).await;
    agent.clock.advance_ms(DAY_MS);
    let day2: Vec<_> = futures_day(&agent, &["alice", "bob", "carol", "dave"]).await;
    for (a, b) in day1.iter().zip(&day2) {
        assert_ne!(
            a, b,
            "every day different: the other eligible offer comes next"
        );
    }
    assert_eq!(agent.count(Table::Claims), 8);
}

async fn futures_day(agent: &TestAgent, shoppers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for s in shoppers {
        let (_, body) = agent.crack(s).await;
        out.push(body["offer"]["id"].as_str().unwrap().to_owned());
    }
    out
}

#[tokio::test]
async fn bad_tokens_get_4xx_and_write_nothing() {
    let agent = TestAgent::start(coupon_catalogue(json!({}))).await;
    let claims = agent.count(Table::Claims);
    let outbox = agent.count(Table::Outbox);
    let stale = agent.token();
    agent.clock.advance_ms(61_000);
    let other =
        caidan_agent::token::TokenSigner::new("someone-else", agent.config.qr.secret.clone(), 30)
            .issue(agent.clock.now_ms());
    let forged = caidan_agent::token::TokenSigner::new(
        agent.config.device.id.as_str(),
        caidan_agent::secrets::HmacKey::from_bytes(b"not-the-secret-not-the-secret!!!"),
        30,
    )
    .issue(agent.clock.now_ms());
    let cases = [
        (stale.as_str(), 410, "token_stale"),
        (other.as_str(), 403, "token_other_device"),
        (forged.as_str(), 403, "token_forged"),
        ("garbage", 400, "token_garbled"),
        ("a.b.c", 400, "token_garbled"),
    ];
    for (token, status, reason) in cases {
        let (s, body) = agent.crack_with(token, "mallory").await;
        assert_eq!(
            (s, body["error"].as_str().unwrap()),
            (status, reason),
            "{token}"
        );
        let page = agent
            .http
            .get(agent.url(&format!("/e/{token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status().as_u16(), status);
    }
    // Garbled JSON and oversized bodies are refused too.
    let r = agent
        .http
        .post(agent.url("/api/v1/eggs"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = agent
        .http
        .post(agent.url("/api/v1/eggs"))
        .json(&json!({ "token": "x".repeat(100_000) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(agent.count(Table::Claims), claims);
    assert_eq!(agent.count(Table::Outbox), outbox);
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("caidan_rejections_total{reason=\"token_forged\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn egg_page_records_a_scan_and_sets_a_shopper_cookie() {
    let agent = TestAgent::start(coupon_catalogue(json!({}))).await;
    let before = agent.count(Table::Outbox);
    let r = agent
        .http
        .get(agent.url(&format!("/e/{}", agent.token())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("caidan_sid="));
    let page = r.text().await.unwrap();
    assert!(page.contains("敲开你的彩蛋") && page.contains("Crack your egg"));
    assert_eq!(agent.count(Table::Outbox), before + 1);
    let qr = caidan_testkit::get_json(&agent.http, &agent.screen("/api/v1/qr"), None).await;
    assert_eq!(
        qr["link"].as_str().unwrap(),
        format!(
            "{}/e/{}",
            agent.running.base_url,
            qr["token"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn staff_redeem_once_with_a_bearer_token() {
    let agent = TestAgent::start(coupon_catalogue(json!({}))).await;
    let (_, claim) = agent.crack("erin").await;
    let code = claim["claim_code"].as_str().unwrap().to_owned();
    let redeem = |auth: Option<&'static str>| {
        let mut req = agent
            .http
            .post(agent.url("/api/v1/redemptions"))
            .json(&json!({ "code": code }));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        req.send()
    };
    assert_eq!(redeem(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(redeem(Some("wrong")).await.unwrap().status().as_u16(), 401);
    assert_eq!(agent.count(Table::Redemptions), 0);
    let first = redeem(Some("demo-staff-token")).await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let second = redeem(Some("demo-staff-token")).await.unwrap();
    assert_eq!(second.status().as_u16(), 409);
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"], "already_redeemed");
    assert_eq!(agent.count(Table::Redemptions), 1);
    let unknown = agent
        .http
        .post(agent.url("/api/v1/redemptions"))
        .bearer_auth("demo-staff-token")
        .json(&json!({ "code": "ZZZZZZZZ" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test]
async fn segment_targeting_uses_the_cloud_tags_of_the_hashed_shopper() {
    let hasher = caidan_agent::shopper::ShopperHasher::new(
        caidan_agent::config::AgentConfig::demo()
            .secrets
            .fleet_secret,
    );
    let catalogue = json!({
        "offers": [
            { "id": "students", "brand": "paper-moon", "kind": "coupon", "title": { "en": "Books" }, "segments": ["student"] },
            { "id": "story", "brand": "lumi", "kind": "content", "title": { "en": "Story" } }
        ],
        "segments": { hasher.hash("alice").as_str(): ["student"] }
    });
    let agent = TestAgent::start(catalogue).await;
    let (_, alice) = agent.crack("alice").await;
    assert_eq!(alice["offer"]["id"], "students");
    let (_, bob) = agent.crack("bob").await;
    assert_eq!(bob["offer"]["id"], "story");
    assert_eq!(bob["fallback"], true);
}

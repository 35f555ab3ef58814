//! A full disk (SQLite's `SQLITE_FULL`) is handled like the storage budget: new eggs are
//! refused with the shopper-facing `storage_full`, nothing is half-written, and eggs resume
//! once a write succeeds again. The "disk" here is `PRAGMA max_page_count` on the writer's
//! connection, set through a test-only writer command.

use std::sync::Arc;

use caidan_sync::clock::{Clock, ManualClock};
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::catalogue::CatalogueFile;
use crate::config::AgentConfig;
use crate::limits::Rate;
use crate::runtime::{self, RunOptions};
use crate::store::Fill;

/// 2026-11-23 10:00 in Shanghai.
const MORNING_MS: i64 = 1_795_399_200_000;

async fn crack(
    http: &reqwest::Client,
    running: &runtime::Running,
    now: i64,
    shopper: &str,
) -> (u16, Value) {
    let r = http
        .post(format!("{}/api/v1/eggs", running.base_url))
        .json(&json!({ "token": running.tokens.issue(now), "shopper": shopper }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Claims, claim events and quota counters agree, and SQLite finds the file sound.
fn assert_consistent(path: &std::path::Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let claims = one("SELECT count(*) FROM claims");
    let events = one("SELECT count(*) FROM outbox WHERE type = 'com.caidan.claim'");
    assert_eq!(claims, events, "one claim event per claim");
    let coupons = one("SELECT count(*) FROM claims WHERE offer_id = 'coupon'");
    let counted =
        one("SELECT coalesce(sum(total), 0) FROM quota_counters WHERE offer_id = 'coupon'");
    assert_eq!(
        coupons, counted,
        "the quota counter counts every coupon claim"
    );
    let (first, last, rows) = conn
        .query_row("SELECT min(seq), max(seq), count(*) FROM outbox", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap();
    assert_eq!(last - first + 1, rows, "the outbox is gapless");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_eggs_like_the_budget_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = AgentConfig::demo();
    let lots = Rate {
        per_minute: 1_000_000,
        burst: 100_000,
    };
    config.limits.eggs_per_client = lots;
    config.limits.eggs_per_shopper = lots;
    config.limits.claims_per_minute = Some(1_000_000);
    let catalogue = json!({
        "version": 1,
        "offers": [
            { "id": "coupon", "brand": "lumi", "kind": "coupon", "title": { "zh": "券", "en": "Coupon" },
              "quota": { "total": 1000000 } },
        ]
    });
    let clock = ManualClock::new(MORNING_MS);
    let time: Arc<dyn Clock> = Arc::new(clock.clone());
    let running = runtime::start(
        RunOptions {
            config,
            catalogue: Some(CatalogueFile {
                text: catalogue.to_string(),
                origin: "test".into(),
            }),
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            screen_listen: "127.0.0.1:0".parse().unwrap(),
            mqtt: None,
            display: None,
        },
        time.clone(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let path = runtime::store_path(dir.path());
    let writer = running.writer.clone();

    // The "disk" has room for a few more pages than the store holds now.
    let pages: u64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        writer.set_max_page_count(pages + 8).await.unwrap(),
        pages + 8
    );

    let (status, first) = crack(&http, &running, time.now_ms(), "shopper-0").await;
    assert_eq!(status, 201, "{first}");
    let (more, refused) = caidan_testkit::claims::until_refused(1..5_000, 507, |shopper| {
        let (http, running, now) = (&http, &running, time.now_ms());
        async move { crack(http, running, now, &shopper).await }
    })
    .await;
    let answered = 1 + more;
    let refused = refused.expect("the disk filled up within 5,000 claims");
    assert_eq!(refused["error"], "storage_full", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing was recorded"),
        "{refused}"
    );
    assert_eq!(writer.storage().fill, Fill::Full);
    assert_eq!(
        assert_consistent(&path),
        answered,
        "every answered claim, no other"
    );

    // Refused again without a try, the rescan of a stored claim still answered.
    let (status, _) = crack(&http, &running, time.now_ms(), "one-more").await;
    assert_eq!(status, 507);
    let (status, again) = crack(&http, &running, time.now_ms(), "shopper-0").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["claim_code"], first["claim_code"]);
    let metrics = http
        .get(format!("{}/metrics", running.screen_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("caidan_store_fill_level 2"), "{metrics}");
    assert_eq!(assert_consistent(&path), answered);

    // Still no room when the writer probes again: refused, nothing written.
    clock.advance_ms(3_000);
    let (status, _) = crack(&http, &running, time.now_ms(), "probe").await;
    assert_eq!(status, 507);
    assert_eq!(assert_consistent(&path), answered);

    // Room returns: the next probe takes the claim and eggs resume.
    writer.set_max_page_count(1 << 30).await.unwrap();
    clock.advance_ms(3_000);
    let (status, body) = crack(&http, &running, time.now_ms(), "after-room").await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(writer.storage().fill, Fill::Full);
    let (status, body) = crack(&http, &running, time.now_ms(), "and-another").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(assert_consistent(&path), answered + 2);
    // The writer stops once its last handle is gone.
    drop(writer);
    running.shutdown().await.unwrap();
}

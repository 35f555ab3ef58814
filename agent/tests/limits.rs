//! What one client may take, tried as an attacker would: the QR token only for the screen,
//! a script cracking eggs, a scan flood, wrong redemption codes, silent sockets. Every
//! refusal is a 429 that says when to retry, is counted, and writes nothing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use caidan_agent::config::AgentConfig;
use caidan_agent::store::read::Table;
use common::{TestAgent, coupon_catalogue};
use serde_json::{Value, json};

/// A client whose requests come from another loopback address than the attacker's.
fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// How many of each status a set of answers had.
fn tally(statuses: &[u16]) -> std::collections::BTreeMap<u16, usize> {
    let mut t = std::collections::BTreeMap::new();
    for s in statuses {
        *t.entry(*s).or_default() += 1;
    }
    t
}

#[tokio::test]
async fn the_qr_token_is_only_for_the_screen() {
    let agent = TestAgent::start_with(coupon_catalogue(json!({})), AgentConfig::demo()).await;
    for path in ["/api/v1/qr", "/api/v1/qr.svg", "/metrics", "/"] {
        let r = agent.http.get(agent.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} on the shoppers' listener");
        let r = agent.http.get(agent.screen(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} on the screen's listener");
    }
    assert!(agent.running.screen_addr.ip().is_loopback());

    // With a screen token (the display is another box), the screen routes want it.
    let mut config = AgentConfig::demo();
    config.http.screen_token = Some(caidan_sync::credentials::TokenHash::of("screen-secret"));
    let agent = TestAgent::start_with(coupon_catalogue(json!({})), config).await;
    let url = agent.screen("/api/v1/qr");
    assert_eq!(agent.http.get(&url).send().await.unwrap().status(), 401);
    let r = agent
        .http
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = agent
        .http
        .get(&url)
        .bearer_auth("screen-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let qr: Value = r.json().await.unwrap();
    assert!(qr["token"].as_str().unwrap().starts_with("demo-cinema-01."));
}

#[tokio::test]
async fn a_config_exposing_the_screen_without_a_token_is_refused() {
    let text = format!(
        "{}\n",
        caidan_agent::config::DEMO_CONFIG.replace(
            "listen = \"127.0.0.1:8780\"",
            "listen = \"127.0.0.1:8780\"\nscreen_listen = \"0.0.0.0:8781\""
        )
    );
    let err = AgentConfig::from_toml(&text, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("x.toml: http.screen_token:") && err.contains("not loopback"),
        "{err}"
    );
}

/// 1,500 eggs from one script with a fresh shopper each: it gets at most the screen's
/// per-window cap (and, before that, its per-address rate), and a real shopper at another
/// address still gets a coupon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_cannot_take_the_days_coupons() {
    let catalogue = coupon_catalogue(json!({ "per_device_per_day": 100 }));
    let agent = TestAgent::start_with(catalogue, AgentConfig::demo()).await;
    let cap = agent.config.claims_per_window() as usize;
    assert_eq!(cap, 30, "cinema: 60 a minute, 30 s windows");
    let token = agent.token();
    let script = client_from("127.0.0.1");
    let mut statuses = Vec::new();
    for i in 0..1_500 {
        let r = script
            .post(agent.url("/api/v1/eggs"))
            .json(&json!({ "token": token, "shopper": format!("bot-{i}") }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1, "a refusal says when to retry");
            let body: Value = r.json().await.unwrap();
            assert!(body["retry_after_secs"].as_u64().unwrap() >= 1, "{body}");
        }
        statuses.push(status);
    }
    let t = tally(&statuses);
    let got = t.get(&201).copied().unwrap_or(0);
    assert!(
        got <= cap,
        "the script got {got} claims, more than the cap {cap}: {t:?}"
    );
    assert_eq!(got + t.get(&429).copied().unwrap_or(0), 1_500, "{t:?}");
    assert_eq!(
        agent.count(Table::Claims) as usize,
        got,
        "refusals wrote nothing"
    );

    let shopper = client_from("127.0.0.2");
    let r = shopper
        .post(agent.url("/api/v1/eggs"))
        .json(&json!({ "token": agent.token(), "shopper": "a-real-shopper" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let claim: Value = r.json().await.unwrap();
    assert_eq!(
        claim["offer"]["id"], "coupon",
        "a real shopper still gets a coupon"
    );
    let metrics = agent.metrics().await;
    assert!(metrics.contains("reason=\"eggs_per_client\""), "{metrics}");

    // The window's cap holds against many addresses too: shoppers from a busy NAT, each
    // with their own address here, fill it, and the next gets 429 until the next window.
    let mut from_many = Vec::new();
    for i in 0..(cap + 5) {
        let c = client_from(&format!("127.0.1.{}", i + 1));
        let r = c
            .post(agent.url("/api/v1/eggs"))
            .json(&json!({ "token": token, "shopper": format!("crowd-{i}") }))
            .send()
            .await
            .unwrap();
        from_many.push(r.status().as_u16());
    }
    let t = tally(&from_many);
    assert!(t.get(&201).copied().unwrap_or(0) + got < cap + 1, "{t:?}");
    assert!(t.get(&429).copied().unwrap_or(0) >= 5, "{t:?}");
    agent.clock.advance_ms(30_000);
    let c = client_from("127.0.2.1");
    let r = c
        .post(agent.url("/api/v1/eggs"))
        .json(&json!({ "token": agent.token(), "shopper": "next-window" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the next window has room again");
}

/// The same shopper opening the egg page again and again is one scan per window.
#[tokio::test]
async fn a_scan_flood_is_one_scan_per_shopper_and_window() {
    let agent = TestAgent::start_with(coupon_catalogue(json!({})), AgentConfig::demo()).await;
    let before = agent.count(Table::Outbox);
    let token = agent.token();
    let mut statuses = Vec::new();
    for _ in 0..921 {
        let r = agent
            .http
            .get(agent.url(&format!("/e/{token}")))
            .header("cookie", "caidan_sid=the-same-phone")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    let t = tally(&statuses);
    assert!(t.get(&200).copied().unwrap_or(0) >= 1, "{t:?}");
    assert_eq!(
        t.get(&200).copied().unwrap_or(0) + t.get(&429).copied().unwrap_or(0),
        921,
        "{t:?}"
    );
    assert_eq!(
        agent.count(Table::Outbox) - before,
        1,
        "one scan event for one shopper in one window"
    );
    // The next window counts the shopper again.
    agent.clock.advance_ms(60_000);
    let r = agent
        .http
        .get(agent.url(&format!("/e/{}", agent.token())))
        .header("cookie", "caidan_sid=the-same-phone")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let scans = agent
        .reader()
        .outbox_after(0, 10_000)
        .unwrap()
        .iter()
        .filter(|r| r.json.contains("com.caidan.scan"))
        .count();
    assert_eq!(scans, 2);
}

/// 1,000 wrong codes: after the limit every attempt is refused until the lockout ends,
/// then it works again. Right codes never count.
#[tokio::test]
async fn wrong_redemption_codes_lock_out_and_unlock() {
    let mut config = AgentConfig::demo();
    for t in ["staff-2", "staff-3", "staff-4"] {
        config
            .staff
            .tokens
            .push(caidan_sync::credentials::TokenHash::of(t));
    }
    let agent = TestAgent::start_with(coupon_catalogue(json!({})), common::unlimited(config)).await;
    let (status, claim) = agent.crack("a-shopper").await;
    assert_eq!(status, 201);
    let code = claim["claim_code"].as_str().unwrap().to_owned();
    let redeem = |token: &'static str, code: String| {
        let http = agent.http.clone();
        let url = agent.url("/api/v1/redemptions");
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "code": code }))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (status, retry)
        }
    };
    let mut statuses = Vec::new();
    for i in 0..1_000 {
        let (status, retry) = redeem("demo-staff-token", format!("ZZZZ{i:04}")).await;
        if status == 429 {
            assert!(retry.unwrap() > 500 && retry.unwrap() <= 600, "{retry:?}");
        }
        statuses.push(status);
    }
    let t = tally(&statuses);
    assert_eq!(t.get(&404), Some(&10), "ten wrong codes looked up: {t:?}");
    assert_eq!(t.get(&429), Some(&990), "{t:?}");
    // Locked: even the right code waits, for this staff token.
    assert_eq!(redeem("demo-staff-token", code.clone()).await.0, 429);
    // Another staff member is not locked out by one token's guesses...
    assert_eq!(redeem("staff-2", "ZZZZ9999".into()).await.0, 404);
    // ... until the touchpoint as a whole has seen too many (30): then everyone waits.
    for i in 0..9 {
        assert_eq!(redeem("staff-2", format!("YYYY{i:04}")).await.0, 404);
    }
    for i in 0..9 {
        assert_eq!(redeem("staff-3", format!("XXXX{i:04}")).await.0, 404);
    }
    assert_eq!(
        redeem("staff-3", "XXXX9999".into()).await.0,
        404,
        "the 30th"
    );
    assert_eq!(
        redeem("staff-4", code.clone()).await.0,
        429,
        "a fresh token on a locked touchpoint"
    );

    // The lockout ends; the right code then redeems.
    agent.clock.advance_ms(10 * 60_000 + 1);
    assert_eq!(redeem("demo-staff-token", code).await.0, 200);
    assert_eq!(agent.count(Table::Redemptions), 1);
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("reason=\"wrong_codes_lockout\""),
        "{metrics}"
    );
}

/// `n` connections to `addr` from `from` that send nothing.
async fn silent_sockets(addr: SocketAddr, from: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut silent = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(from.parse().unwrap(), 0))
            .unwrap();
        silent.push(socket.connect(addr).await.unwrap());
    }
    silent
}

/// How many of `sockets` the agent has closed by `deadline` (a read gives end of file or a
/// reset).
async fn closed_by(sockets: &mut [tokio::net::TcpStream], deadline: tokio::time::Instant) -> usize {
    let mut closed = 0;
    for s in sockets {
        let mut buf = [0u8; 1];
        let read =
            tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(s, &mut buf)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    closed
}

/// A shopper at 127.0.0.1 cracks an egg; the answer must come within 5 s.
async fn patient_shopper(agent: &TestAgent) -> u16 {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client_from("127.0.0.1")
            .post(agent.url("/api/v1/eggs"))
            .json(&json!({ "token": agent.token(), "shopper": "patient" }))
            .send(),
    )
    .await
    .expect("answered while silent sockets are open")
    .expect("connected and answered");
    r.status().as_u16()
}

/// A counter from the agent's metrics, 0 when absent.
fn rejections(metrics: &str, reason: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.contains(&format!("reason=\"{reason}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// 2,000 sockets that send nothing, from one address: past the per-client cap they are
/// closed as they arrive, the rest when their header deadline passes; meanwhile a shopper
/// at another address is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_closed_and_a_shopper_still_gets_an_egg() {
    let mut config = common::unlimited(AgentConfig::demo());
    config.limits.max_connections = None;
    config.limits.max_connections_per_client = None;
    // Long enough that no admitted socket times out while the 2,000 are still connecting
    // (which would free a place and let one more in).
    config.limits.header_timeout_ms = 5_000;
    let agent = TestAgent::start_with(coupon_catalogue(json!({})), config).await;
    let per_client = agent.config.profile().limits.max_connections_per_client as usize;
    let mut silent = silent_sockets(agent.running.addr, "127.0.0.3", 2_000).await;
    assert_eq!(patient_shopper(&agent).await, 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    assert_eq!(
        closed_by(&mut silent, deadline).await,
        2_000,
        "silent sockets left open"
    );
    let refused = rejections(&agent.metrics().await, "connections_per_client");
    assert!(
        refused >= (2_000 - per_client) as f64,
        "{refused} refused at the door, per-client cap {per_client}"
    );
}

/// Silent sockets from many addresses fill the total cap; a shopper arriving then is still
/// let in (the socket idle longest makes room) and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_from_many_addresses_do_not_keep_a_shopper_out() {
    let mut config = common::unlimited(AgentConfig::demo());
    config.limits.max_connections = Some(64);
    config.limits.max_connections_per_client = Some(32);
    // Long enough that no header deadline frees a slot during the test.
    config.limits.header_timeout_ms = 60_000;
    let agent = TestAgent::start_with(coupon_catalogue(json!({})), config).await;
    let mut silent = Vec::new();
    for from in ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        silent.extend(silent_sockets(agent.running.addr, from, 32).await);
    }
    // 128 arrived for 64 places: the first 64 were closed to make room for the last 64.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    assert_eq!(closed_by(&mut silent[..64], deadline).await, 64);
    assert_eq!(patient_shopper(&agent).await, 201);
    assert_eq!(
        patient_shopper(&agent).await,
        200,
        "the same claim again, on a full listener"
    );
    let evicted = rejections(&agent.metrics().await, "connection_evicted");
    assert!(evicted >= 65.0, "{evicted} idle connections made room");
}

/// A kept-alive connection that asks nothing more is closed after the idle deadline.
#[tokio::test]
async fn idle_kept_alive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = AgentConfig::demo();
    config.limits.idle_timeout_ms = 300;
    let agent = TestAgent::start_with(coupon_catalogue(json!({})), config).await;
    let mut s = tokio::net::TcpStream::connect(agent.running.addr)
        .await
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(closed, Ok(true), "the idle connection was closed");
}

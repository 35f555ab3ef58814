//! Workspace end-to-end tests: real processes, a real broker, kill -9. The tests live in
//! `tests/`, the benchmarks in `benches/`; processes and brokers come from `caidan-testkit`,
//! and this library adds what drives an agent from outside like a crowd of phones.
#![forbid(unsafe_code)]

pub use caidan_testkit::{
    AgentProc as Agent, DatabankProc as Databank, Mosquitto, Nats, NatsCluster, agent_outbox,
    free_port, wait_until,
};

/// The QR token an agent's screen shows now.
async fn current_token(http: &reqwest::Client, screen: &str) -> Option<String> {
    let qr: serde_json::Value = http
        .get(format!("{screen}/api/v1/qr"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(qr["token"].as_str()?.to_owned())
}

/// Claims `n` eggs for distinct shoppers through the agent's HTTP API, `parallel` at a time.
/// Like a phone, a worker whose token went stale (410) scans the screen again. Returns how
/// many claims were answered; a worker stops at the first connection error.
pub async fn claim_many(agent: &Agent, prefix: &str, n: usize, parallel: usize) -> usize {
    let (base, screen) = (agent.base.as_str(), agent.screen.as_str());
    let http = reqwest::Client::new();
    let Some(token) = current_token(&http, screen).await else {
        return 0;
    };
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (http, base, screen, next, prefix) = (
            http.clone(),
            base.to_owned(),
            screen.to_owned(),
            next.clone(),
            prefix.to_owned(),
        );
        let mut token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            let mut i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            while i < n {
                let r = http
                    .post(format!("{base}/api/v1/eggs"))
                    .json(
                        &serde_json::json!({ "token": token, "shopper": format!("{prefix}-{i}") }),
                    )
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => ok += 1,
                    Ok(r) if r.status().as_u16() == 410 => {
                        match current_token(&http, &screen).await {
                            Some(t) => {
                                token = t;
                                continue;
                            }
                            None => break,
                        }
                    }
                    _ => break,
                }
                i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

/// A figure from an agent's `/metrics` (the first sample named `name`).
pub fn metric(agent: &Agent, name: &str) -> Option<f64> {
    let text = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", &agent.metrics_url()])
        .output()
        .ok()?
        .stdout;
    String::from_utf8_lossy(&text)
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

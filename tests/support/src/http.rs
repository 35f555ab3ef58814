//! HTTP calls the tests make again and again.

use serde_json::Value;

/// `GET url` (with a bearer token when given) as JSON; panics with the URL on any failure.
pub async fn get_json(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> Value {
    let mut req = client.get(url);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

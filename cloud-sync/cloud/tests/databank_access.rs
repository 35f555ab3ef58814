//! Who may read what at the data bank: operator tokens for fleet-wide endpoints, brand
//! tokens for their own funnel, and a dashboard sign-in that never puts a token in a URL.

mod common;

use caidan_cloud::broker;
use common::{OPERATOR, browser, get, login_with, post_login, signed_in, start_databank, store_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_wide_endpoints_need_an_operator_token() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = start_databank(b.local_addr(), &store_in(&dir), None, "access-1").await;
    let http = db.http_addr();
    for path in ["/api/v1/devices", "/metrics"] {
        let url = format!("http://{http}{path}");
        assert_eq!(
            get(url.clone(), None).await.0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            get(url.clone(), Some("forged")).await.0,
            401,
            "{path} forged"
        );
        assert_eq!(
            get(url.clone(), Some("demo-token-lumi")).await.0,
            403,
            "{path} with a brand token"
        );
        let (status, body) = get(url, Some(OPERATOR)).await;
        assert_eq!(status, 200, "{path} with the operator token: {body}");
    }
    // An operator token reads no brand's funnel.
    let funnel = format!("http://{http}/api/v1/brands/lumi-cola/funnel");
    assert_eq!(get(funnel.clone(), Some(OPERATOR)).await.0, 403);
    assert_eq!(get(funnel, Some("demo-token-lumi")).await.0, 200);
    db.shutdown().await;
}

/// Every URL in a page: `href`, `src` and `action` attribute values.
fn urls_in(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\"", "action=\""] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            out.push(rest[..rest.find('"').unwrap_or(rest.len())].to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_with_a_form_and_a_cookie_never_a_url() {
    let b = broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = start_databank(b.local_addr(), &store_in(&dir), None, "access-2").await;
    let http = db.http_addr();
    let token = "demo-token-lumi";
    let dash = format!("http://{http}/brands/lumi-cola/dashboard");

    // Not signed in: the form, which posts (never GETs) the token.
    let (status, form) = get(dash.clone(), None).await;
    assert_eq!(status, 401);
    assert!(form.contains("method=\"post\""), "{form}");
    assert!(!form.contains("method=\"get\""), "{form}");

    // Signing in redirects to a URL without the token, with an HttpOnly SameSite cookie.
    let resp = login_with(&browser(false), http, "lumi-cola", token).await;
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/brands/lumi-cola/dashboard");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/brands/lumi-cola/"] {
        assert!(cookie.contains(part), "{part} missing from {cookie}");
    }

    // The signed-in dashboard, and every URL it links or posts to, carries no token.
    let browser = signed_in(http, "lumi-cola", token).await;
    let page = browser.get(&dash).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg"), "{html}");
    assert!(!html.contains(token), "the token is in the page");
    for url in urls_in(&html) {
        assert!(!url.contains(token) && !url.contains("token="), "{url}");
    }
    // The filter form submits by GET: its fields are from, to and by, nothing else.
    assert!(!html.contains("name=\"token\""), "{html}");

    // Wrong token or another brand's: refused with the form again, nothing set.
    let (status, location) = post_login(http, "lumi-cola", "forged").await;
    assert_eq!((status, location), (401, None));
    let (status, _) = post_login(http, "lumi-cola", "demo-token-dawn").await;
    assert_eq!(status, 403);

    // Signing out clears the cookie: the dashboard asks to sign in again.
    let out = browser
        .post(format!("http://{http}/brands/lumi-cola/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(browser.get(&dash).send().await.unwrap().status(), 401);
    db.shutdown().await;
}

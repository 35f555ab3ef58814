//! The staff console (`GET /staff`): sign in once with the staff token (a form, then an
//! HttpOnly SameSite=Strict cookie), then waiting orders with their windows, code entry,
//! recent hand-overs and low stock, in Chinese and English. The page calls the same JSON
//! API as any other staff client.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::auth::{self, Entrant, SESSION_COOKIE, SESSION_MS};
use super::{AppState, pages};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    token: String,
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /staff`: the console when signed in, else the sign-in form.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = auth::cookie(&headers, SESSION_COOKIE)
        .and_then(|v| state.sessions.verify(v, state.clock.now_ms()))
        .is_some_and(|h| state.live().staff.knows(&h));
    let html = if signed_in {
        pages::staff_console(&state.device)
    } else {
        pages::staff_login(&state.device, None)
    };
    no_store(Html(html).into_response())
}

fn cookie_header(state: &AppState, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("session values are header-safe")
}

/// `POST /staff/login`: checks the staff token from the form and sets the session cookie.
/// Wrong tokens count per client address like wrong codes at the keypad.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let who = Entrant::Keypad(client.ip());
    let now = state.clock.now_ms();
    if let Err(e) = auth::check_lockout(&state, who, now) {
        let html = pages::staff_login(&state.device, Some(&e.message));
        return no_store((StatusCode::TOO_MANY_REQUESTS, Html(html)).into_response());
    }
    let token = form.ok().map(|Form(f)| f.token).unwrap_or_default();
    let Some(staff) = state.live().staff.accepts(token.trim()) else {
        state.metrics.rejection("staff_unauthorized");
        auth::wrong_code(&state, who, now);
        let html = pages::staff_login(
            &state.device,
            Some("员工令牌不正确 · Staff token not recognised"),
        );
        return no_store((StatusCode::UNAUTHORIZED, Html(html)).into_response());
    };
    let session = state.sessions.issue(&staff, now);
    let mut r = (StatusCode::SEE_OTHER, [(LOCATION, "/staff")]).into_response();
    r.headers_mut().insert(
        SET_COOKIE,
        cookie_header(&state, &session, SESSION_MS / 1000),
    );
    no_store(r)
}

/// `POST /staff/logout`: ends the session on this browser.
pub async fn logout(State(state): State<AppState>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(LOCATION, "/staff")]).into_response();
    r.headers_mut()
        .insert(SET_COOKIE, cookie_header(&state, "", 0));
    no_store(r)
}

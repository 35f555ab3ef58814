//! HTML pages, filled from templates in `assets/`. Plain pages with a little JS: they must
//! load fast on a phone over a venue's Wi-Fi with no framework.

const EGG: &str = include_str!("../../assets/egg.html");
const SCREEN: &str = include_str!("../../assets/screen.html");
const ERROR: &str = include_str!("../../assets/error.html");
const STAFF: &str = include_str!("../../assets/staff.html");
const STAFF_LOGIN: &str = include_str!("../../assets/staff_login.html");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

fn escape(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

pub fn egg_page(token: &str) -> String {
    EGG.replace("{{TOKEN}}", &escape(token))
}

pub fn screen_page(device: &str, rotation_secs: u32) -> String {
    SCREEN
        .replace("{{DEVICE}}", &escape(device))
        .replace("{{ROTATION}}", &rotation_secs.to_string())
}

pub fn staff_console(device: &str) -> String {
    STAFF.replace("{{DEVICE}}", &escape(device))
}

pub fn staff_login(device: &str, message: Option<&str>) -> String {
    STAFF_LOGIN
        .replace("{{DEVICE}}", &escape(device))
        .replace("{{MESSAGE}}", &escape(message.unwrap_or("")))
}

pub fn error_page(message: &str) -> String {
    ERROR.replace("{{MESSAGE}}", &escape(message))
}

/// `GET /favicon.svg` (and `/favicon.ico`, which browsers ask for by themselves).
pub async fn favicon() -> impl axum::response::IntoResponse {
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
    (
        [
            (CONTENT_TYPE, "image/svg+xml"),
            (CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
}

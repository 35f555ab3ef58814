//! The data bank's HTTP API: each brand's funnel and dashboard, the fleet's devices and
//! stock, health and metrics.
//!
//! Brand endpoints take the brand's token as `Authorization: Bearer` or, for the dashboard,
//! the HttpOnly cookie its sign-in form sets; fleet-wide endpoints (`/api/v1/devices`,
//! `/metrics`) take an operator token; a fleet's stock takes that fleet's token or an
//! operator's. No token ever travels in a URL.

mod config;
pub mod dashboard;
mod stock;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use aide::openapi::OpenApi;
use aide::transform::TransformOperation;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use caidan_sync::clock::Clock;
use caidan_sync::credentials::bearer;
use caidan_sync::openapi;
use rusqlite::Connection;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::{Access, AuthError};
use super::funnel::{self, Funnel, GroupBy};
use super::metrics::Metrics;
use super::store::{DeviceRow, EpochRow, StoreError, open_connection};
use r2d2_postgres::PostgresConnectionManager;

/// Cookie holding a brand's token after it signed in to its dashboard.
const BRAND_COOKIE: &str = "caidan_brand";
/// How long a dashboard sign-in lasts.
const SESSION_SECS: i64 = 12 * 3600;

const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect x=\"1\" y=\"9\" width=\"3\" height=\"6\" fill=\"#f4a261\"/>\
<rect x=\"6\" y=\"5\" width=\"3\" height=\"10\" fill=\"#e76f51\"/>\
<rect x=\"11\" y=\"1\" width=\"3\" height=\"14\" fill=\"#2a9d8f\"/></svg>";

/// How the HTTP handlers read the store.
#[derive(Clone)]
pub enum Reader {
    /// One read-only connection to the SQLite file, opened on first use.
    Sqlite {
        path: PathBuf,
        conn: Arc<Mutex<Option<Connection>>>,
    },
    /// A small pool of PostgreSQL connections, made on demand.
    Postgres(r2d2::Pool<PostgresConnectionManager<postgres::NoTls>>),
}

/// Most PostgreSQL connections one data bank's HTTP API holds.
const PG_POOL_SIZE: u32 = 4;

impl Reader {
    pub fn sqlite(path: PathBuf) -> Reader {
        Reader::Sqlite {
            path,
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// A pool on `url`; no connection is made until the first read.
    pub fn postgres(url: &str) -> Result<Reader, StoreError> {
        let config = super::store::pg::reader_config(url)?;
        let manager = PostgresConnectionManager::new(config, postgres::NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(PG_POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(std::time::Duration::from_secs(5))
            .build_unchecked(manager);
        Ok(Reader::Postgres(pool))
    }
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiState {
    pub access: Arc<Access>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    reader: Reader,
}

impl ApiState {
    pub fn new(
        access: Arc<Access>,
        metrics: Arc<Metrics>,
        reader: Reader,
        clock: Arc<dyn Clock>,
    ) -> Self {
        ApiState {
            access,
            metrics,
            clock,
            reader,
        }
    }

    /// Whether reads go to PostgreSQL.
    fn on_postgres(&self) -> bool {
        matches!(self.reader, Reader::Postgres(_))
    }

    /// Runs the read for the store in use (`sqlite` or `pg`) in a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        sqlite: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        pg: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, ApiError> {
        let reader = self.reader.clone();
        let store = |e: &dyn std::fmt::Display| ApiError::Store(e.to_string());
        tokio::task::spawn_blocking(move || match reader {
            Reader::Sqlite { path, conn } => {
                let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
                if guard.is_none() {
                    *guard = Some(open_connection(&path, false).map_err(|e| store(&e))?);
                }
                let conn = guard
                    .as_ref()
                    .ok_or(ApiError::Store("no connection".into()))?;
                sqlite(conn).map_err(|e| store(&e))
            }
            Reader::Postgres(pool) => {
                let mut client = pool.get().map_err(|e| store(&e))?;
                pg(&mut client).map_err(|e| store(&e))
            }
        })
        .await
        .map_err(|e| ApiError::Store(e.to_string()))?
    }

    fn operator(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.access.authorize_operator(auth_header(headers))?;
        Ok(())
    }
}

/// An API failure, answered as JSON `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("store: {0}")]
    Store(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    MethodNotAllowed(&'static str),
}

/// The body of every refusal.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
}

// Every operation may answer with an `ErrorBody` (the `default` response).
caidan_sync::refusal_output!(ApiError, ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Auth(AuthError::Unauthorized) => StatusCode::UNAUTHORIZED,
            ApiError::Auth(_) => StatusCode::FORBIDDEN,
            ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        };
        let body = ErrorBody {
            error: self.to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        resp
    }
}

const OPERATOR: &str = "operatorBearer";
const BRAND: &str = "brandBearer";
const FLEET: &str = "fleetBearer";

fn operator_only(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.security_requirement(OPERATOR)
}

/// The API routes, and at `/openapi.json` the OpenAPI 3.1 document generated from them.
pub fn router(state: ApiState) -> Router {
    let api = ApiRouter::new()
        .api_route(
            "/api/v1/brands/{brand}/funnel",
            get_with(funnel_api, |op| {
                op.id("brandFunnel")
                    .summary("A brand's AIPL funnel over a time range")
                    .security_requirement(BRAND)
            }),
        )
        .api_route(
            "/api/v1/devices",
            get_with(devices, |op| {
                operator_only(op.id("listDevices").summary("Every device's last state"))
            }),
        )
        .api_route(
            "/api/v1/fleets/{fleet}/stock/{sku}",
            get_with(stock::nearby_stock, |op| {
                op.id("nearbyStock")
                    .summary("A fleet's touchpoints with a SKU available, nearest first")
                    .security_requirement(FLEET)
                    .security_requirement(OPERATOR)
            }),
        )
        .api_route(
            "/api/v1/fleets/{fleet}/devices/{device}/config",
            get_with(config::device_config, |op| {
                operator_only(
                    op.id("deviceConfig")
                        .summary("A device's config answers and the versions in force"),
                )
            }),
        )
        .api_route(
            "/api/v1/dead-letters",
            get_with(dead_letters, |op| {
                operator_only(op.id("deadLetters").summary("What the data bank set aside"))
            }),
        );
    let mut doc = OpenApi::default();
    let api = api.finish_api_with(&mut doc, |t| {
        t.title("Caidan data bank")
            .version(env!("CARGO_PKG_VERSION"))
            .description("Funnels per brand, devices and stock per fleet. Tokens go in `Authorization: Bearer`, never in a URL.")
            .security_scheme(OPERATOR, openapi::bearer("an operator token"))
            .security_scheme(BRAND, openapi::bearer("the brand's token"))
            .security_scheme(FLEET, openapi::bearer("the fleet's token"))
    });
    let doc = axum::body::Bytes::from(
        serde_json::to_vec(&doc).expect("an OpenAPI document always serializes"),
    );
    api.route(
        "/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }),
    )
    .route("/healthz", get(|| async { "ok\n" }))
    .route("/favicon.svg", get(favicon))
    .route("/favicon.ico", get(favicon))
    .route("/metrics", get(metrics))
    .route("/brands/{brand}/dashboard", get(dashboard_page))
    .route("/brands/{brand}/login", get(login_page).post(login))
    .route("/brands/{brand}/logout", post(logout))
    .fallback(|| async { ApiError::NotFound("no such route here") })
    .method_not_allowed_fallback(|| async {
        ApiError::MethodNotAllowed("this route does not take that method")
    })
    .with_state(state)
}

async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
}

fn auth_header(headers: &HeaderMap) -> Option<&str> {
    bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

async fn metrics(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    s.operator(&headers)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response())
}

/// `from`, `to` (RFC 3339) and `by` of a funnel request. A `token` parameter is refused:
/// tokens never travel in URLs.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FunnelQuery {
    /// RFC 3339; a week before `to` when absent.
    #[schemars(extend("format" = "date-time"))]
    from: Option<String>,
    /// RFC 3339; now when absent.
    #[schemars(extend("format" = "date-time"))]
    to: Option<String>,
    #[serde(default)]
    by: GroupBy,
    /// Refused (400): tokens never travel in URLs.
    token: Option<String>,
}

/// The brand a path names.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BrandPath {
    brand: String,
}

impl FunnelQuery {
    fn refuse_token(&self) -> Result<(), ApiError> {
        match self.token {
            Some(_) => Err(ApiError::BadQuery(
                "tokens are never taken from the URL; use Authorization: Bearer or sign in".into(),
            )),
            None => Ok(()),
        }
    }
}

async fn load_funnel(s: &ApiState, brand: String, q: &FunnelQuery) -> Result<Funnel, ApiError> {
    let parse = |v: &Option<String>, name: &str| -> Result<Option<jiff::Timestamp>, ApiError> {
        v.as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| t.parse::<jiff::Timestamp>())
            .transpose()
            .map_err(|e| ApiError::BadQuery(format!("{name}: {e}")))
    };
    let now = jiff::Timestamp::from_millisecond(s.clock.now_ms())
        .map_err(|e| ApiError::BadQuery(e.to_string()))?;
    let to = parse(&q.to, "to")?.unwrap_or(now);
    let from = match parse(&q.from, "from")? {
        Some(f) => f,
        None => to
            .checked_sub(jiff::SignedDuration::from_hours(24 * 7))
            .map_err(|e| ApiError::BadQuery(e.to_string()))?,
    };
    if from > to {
        return Err(ApiError::BadQuery("from is after to".into()));
    }
    let by = q.by;
    // PostgreSQL answers from hourly rollups: the range widens to whole UTC hours, and the
    // answer's from and to say so.
    let (from, to) = if s.on_postgres() {
        let whole = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms).map_err(|e| ApiError::BadQuery(e.to_string()))
        };
        let (from_h, to_h) = funnel::whole_hours(from.as_millisecond(), to.as_millisecond());
        (whole(from_h)?, whole(to_h)?)
    } else {
        (from, to)
    };
    let (b, b2) = (brand.clone(), brand.clone());
    let (from_ms, to_ms) = (from.as_millisecond(), to.as_millisecond());
    let (rows, totals) = s
        .read(
            move |c| {
                let facts = funnel::load_facts(c, &b, from_ms, to_ms)?;
                Ok(funnel::aggregate(&b, by, facts))
            },
            move |c| super::store::pg::read::funnel(c, &b2, by, from_ms, to_ms),
        )
        .await?;
    Ok(Funnel {
        brand,
        from: from.to_string(),
        to: to.to_string(),
        by,
        rows,
        totals,
    })
}

async fn funnel_api(
    State(s): State<ApiState>,
    path: Result<Path<BrandPath>, PathRejection>,
    query: Result<Query<FunnelQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Funnel>, ApiError> {
    let Path(BrandPath { brand }) = path.map_err(|e| stock::bounded(e.body_text()))?;
    let Query(q) = query.map_err(|e| stock::bounded(e.body_text()))?;
    q.refuse_token()?;
    s.access.authorize_brand(auth_header(&headers), &brand)?;
    Ok(Json(load_funnel(&s, brand, &q).await?))
}

/// The sign-in page with a status and an optional message.
fn login_answer(status: StatusCode, brand: &str, message: Option<&str>) -> Response {
    (status, Html(dashboard::login(brand, message))).into_response()
}

async fn dashboard_page(
    State(s): State<ApiState>,
    Path(brand): Path<String>,
    Query(q): Query<FunnelQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    if let Err(e) = q.refuse_token() {
        return e.into_response();
    }
    let token = auth_header(&headers).or_else(|| jar.get(BRAND_COOKIE).map(Cookie::value));
    match s.access.authorize_brand(token, &brand) {
        Ok(()) => {}
        Err(AuthError::Unauthorized) => {
            let msg = token.map(|_| "Unknown token.");
            return login_answer(StatusCode::UNAUTHORIZED, &brand, msg);
        }
        Err(_) => {
            let msg = "This token belongs to another brand.";
            return login_answer(StatusCode::FORBIDDEN, &brand, Some(msg));
        }
    }
    match load_funnel(&s, brand, &q).await {
        Ok(f) => Html(dashboard::render(&f)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn login_page(Path(brand): Path<String>) -> Response {
    login_answer(StatusCode::OK, &brand, None)
}

/// The sign-in form's body.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /brands/{brand}/login`: checks the token once and keeps it in an HttpOnly,
/// SameSite=Strict cookie scoped to this brand's pages, then redirects to the dashboard.
async fn login(
    State(s): State<ApiState>,
    Path(brand): Path<String>,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    match s.access.authorize_brand(Some(form.token.trim()), &brand) {
        Ok(()) => {
            let cookie = Cookie::build((BRAND_COOKIE, form.token.trim().to_owned()))
                .path(format!("/brands/{brand}/"))
                .http_only(true)
                .same_site(SameSite::Strict)
                .max_age(cookie::time::Duration::seconds(SESSION_SECS))
                .build();
            let to = format!("/brands/{brand}/dashboard");
            (jar.add(cookie), Redirect::to(&to)).into_response()
        }
        Err(AuthError::Unauthorized) => {
            login_answer(StatusCode::UNAUTHORIZED, &brand, Some("Unknown token."))
        }
        Err(_) => login_answer(
            StatusCode::FORBIDDEN,
            &brand,
            Some("This token belongs to another brand."),
        ),
    }
}

async fn logout(Path(brand): Path<String>, jar: CookieJar) -> Response {
    let gone = Cookie::build((BRAND_COOKIE, "")).path(format!("/brands/{brand}/"));
    let to = format!("/brands/{brand}/login");
    (jar.remove(gone), Redirect::to(&to)).into_response()
}

/// `limit` of the dead-letter listing (default 100, at most 1,000).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    limit: Option<usize>,
}

/// What the data bank set aside, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeadLetters {
    dead_letters: Vec<super::store::dead_letter::DeadLetterRow>,
}

/// Every device the data bank has heard of.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Devices {
    devices: Vec<DeviceView>,
}

/// A device's last state and each of its store epochs' progress.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeviceView {
    fleet: String,
    device: String,
    online: Option<bool>,
    /// The device's last state message, as sent.
    state: serde_json::Value,
    /// Its stock levels, when it reported any.
    stock: Option<serde_json::Value>,
    location: Option<LatLon>,
    updated_ms: Option<i64>,
    epochs: Vec<EpochView>,
}

/// Where a device is.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LatLon {
    lat: f64,
    lon: f64,
}

/// The highest contiguous sequence number stored of one epoch.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EpochView {
    epoch: String,
    seq: i64,
}

/// `GET /api/v1/dead-letters`: what the data bank set aside, newest first (operators).
async fn dead_letters(
    State(s): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<DeadLetters>, ApiError> {
    let Query(q) = query.map_err(|e| stock::bounded(e.body_text()))?;
    s.operator(&headers)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = s
        .read(
            move |c| super::store::dead_letter::list(c, limit),
            move |c| super::store::pg::read::dead_letters(c, limit),
        )
        .await?;
    Ok(Json(DeadLetters { dead_letters: rows }))
}

async fn devices(State(s): State<ApiState>, headers: HeaderMap) -> Result<Json<Devices>, ApiError> {
    s.operator(&headers)?;
    let (rows, epochs) = s
        .read(super::store::devices, super::store::pg::read::devices)
        .await?;
    Ok(Json(Devices {
        devices: device_views(rows, epochs),
    }))
}

/// The devices answer: each device's last state with its epochs' progress.
fn device_views(rows: Vec<DeviceRow>, epochs: Vec<EpochRow>) -> Vec<DeviceView> {
    let mut devices: Vec<DeviceView> = rows
        .into_iter()
        .map(|r| DeviceView {
            location: r.lat.zip(r.lon).map(|(lat, lon)| LatLon { lat, lon }),
            state: serde_json::from_str(&r.state).unwrap_or_default(),
            stock: r.stock.and_then(|s| serde_json::from_str(&s).ok()),
            fleet: r.fleet,
            device: r.device,
            online: r.online,
            updated_ms: Some(r.updated_ms),
            epochs: Vec::new(),
        })
        .collect();
    for e in epochs {
        let pos = devices
            .iter()
            .position(|d| d.fleet == e.fleet && d.device == e.device);
        let entry = match pos {
            Some(i) => &mut devices[i],
            None => {
                devices.push(DeviceView {
                    fleet: e.fleet,
                    device: e.device,
                    online: None,
                    state: serde_json::Value::Null,
                    stock: None,
                    location: None,
                    updated_ms: None,
                    epochs: Vec::new(),
                });
                devices.last_mut().expect("just pushed")
            }
        };
        entry.epochs.push(EpochView {
            epoch: e.epoch,
            seq: e.seq,
        });
    }
    devices
}

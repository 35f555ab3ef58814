//! The data bank's HTTP API: funnel per brand, dashboard, devices, health and metrics.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;

use super::brands::{AuthError, Brands};
use super::dashboard;
use super::funnel::{self, Funnel, GroupBy};
use super::metrics::Metrics;
use super::store::open_connection;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiState {
    pub brands: Arc<Brands>,
    pub metrics: Arc<Metrics>,
    pub store_path: PathBuf,
    reader: Arc<Mutex<Option<Connection>>>,
}

impl ApiState {
    /// State reading the store at `store_path` through its own read-only connection.
    pub fn new(brands: Arc<Brands>, metrics: Arc<Metrics>, store_path: PathBuf) -> Self {
        ApiState {
            brands,
            metrics,
            store_path,
            reader: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `f` on the reader connection in a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let reader = self.reader.clone();
        let path = self.store_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = reader.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                *guard = Some(
                    open_connection(&path, false).map_err(|e| ApiError::Store(e.to_string()))?,
                );
            }
            let conn = guard
                .as_ref()
                .ok_or(ApiError::Store("no connection".into()))?;
            f(conn).map_err(|e| ApiError::Store(e.to_string()))
        })
        .await
        .map_err(|e| ApiError::Store(e.to_string()))?
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Auth(AuthError::Unauthorized) => StatusCode::UNAUTHORIZED,
            ApiError::Auth(AuthError::Forbidden(_)) => StatusCode::FORBIDDEN,
            ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut resp = (status, Json(json!({"error": self.to_string()}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        resp
    }
}

/// The API routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/brands/{brand}/funnel", get(funnel_api))
        .route("/api/v1/devices", get(devices))
        .route("/brands/{brand}/dashboard", get(dashboard_page))
        .with_state(state)
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// `from`, `to` (RFC 3339) and `by` of a funnel request.
#[derive(Debug, Deserialize)]
pub struct FunnelQuery {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    by: GroupBy,
    token: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn load_funnel(s: &ApiState, brand: String, q: &FunnelQuery) -> Result<Funnel, ApiError> {
    let parse = |v: &Option<String>, name: &str| -> Result<Option<jiff::Timestamp>, ApiError> {
        v.as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| t.parse::<jiff::Timestamp>())
            .transpose()
            .map_err(|e| ApiError::BadQuery(format!("{name}: {e}")))
    };
    let to = parse(&q.to, "to")?.unwrap_or_else(jiff::Timestamp::now);
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
    let b = brand.clone();
    let facts = s
        .read(move |c| funnel::load_facts(c, &b, from.as_millisecond(), to.as_millisecond()))
        .await?;
    let (rows, totals) = funnel::aggregate(&brand, by, facts);
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
    Path(brand): Path<String>,
    Query(q): Query<FunnelQuery>,
    headers: HeaderMap,
) -> Result<Json<Funnel>, ApiError> {
    s.brands.authorize(bearer(&headers), &brand)?;
    Ok(Json(load_funnel(&s, brand, &q).await?))
}

async fn dashboard_page(
    State(s): State<ApiState>,
    Path(brand): Path<String>,
    Query(q): Query<FunnelQuery>,
    headers: HeaderMap,
) -> Response {
    let token = q.token.as_deref().or_else(|| bearer(&headers));
    match s.brands.authorize(token, &brand) {
        Ok(()) => {}
        Err(AuthError::Unauthorized) => {
            let msg = token.map(|_| "Unknown token.");
            return (
                StatusCode::UNAUTHORIZED,
                Html(dashboard::login(&brand, msg)),
            )
                .into_response();
        }
        Err(AuthError::Forbidden(_)) => {
            let msg = "This token belongs to another brand.";
            return (
                StatusCode::FORBIDDEN,
                Html(dashboard::login(&brand, Some(msg))),
            )
                .into_response();
        }
    }
    let token = token.unwrap_or_default().to_owned();
    match load_funnel(&s, brand, &q).await {
        Ok(f) => Html(dashboard::render(&f, &token)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn devices(State(s): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = s
        .read(|c| {
            let mut devices: Vec<serde_json::Value> = Vec::new();
            let mut stmt = c.prepare_cached(
                "SELECT fleet, device, online, state, stock, updated_ms FROM devices ORDER BY fleet, device",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let state: String = r.get(3)?;
                let stock: Option<String> = r.get(4)?;
                devices.push(json!({
                    "fleet": r.get::<_, String>(0)?,
                    "device": r.get::<_, String>(1)?,
                    "online": r.get::<_, Option<bool>>(2)?,
                    "state": serde_json::from_str::<serde_json::Value>(&state).unwrap_or_default(),
                    "stock": stock.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()),
                    "updated_ms": r.get::<_, i64>(5)?,
                    "epochs": [],
                }));
            }
            let mut stmt = c.prepare_cached(
                "SELECT fleet, device, epoch, contiguous, updated_ms FROM seq_progress ORDER BY updated_ms",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (fleet, device): (String, String) = (r.get(0)?, r.get(1)?);
                let epoch = json!({"epoch": r.get::<_, String>(2)?, "seq": r.get::<_, i64>(3)?});
                let pos = devices.iter().position(|d| d["fleet"] == fleet && d["device"] == device);
                let entry = match pos {
                    Some(i) => &mut devices[i],
                    None => {
                        devices.push(json!({"fleet": fleet, "device": device, "online": null, "epochs": []}));
                        devices.last_mut().expect("just pushed")
                    }
                };
                if let Some(list) = entry["epochs"].as_array_mut() {
                    list.push(epoch);
                }
            }
            Ok(devices)
        })
        .await?;
    Ok(Json(json!({ "devices": rows })))
}

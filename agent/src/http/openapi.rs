//! The OpenAPI 3.1 documents of the agent's two listeners, each generated from the router it
//! serves (`GET /openapi.json`): the handlers' extractors give parameters and bodies, their
//! schemars types the schemas, [`super::ApiError`] the `default` error response.

use aide::axum::ApiRouter;
use aide::openapi::{ApiKeyLocation, OpenApi, SecurityScheme};
use aide::transform::{TransformOpenApi, TransformOperation};
use axum::Router;
use axum::body::Bytes;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

use caidan_sync::openapi;

use super::AppState;
use super::auth::SESSION_COOKIE;

const STAFF_BEARER: &str = "staffBearer";
const STAFF_COOKIE: &str = "staffSession";
const SCREEN_BEARER: &str = "screenBearer";

/// Which listener a document describes.
pub(super) enum Listener {
    /// Shoppers and staff (`--listen`).
    Public,
    /// The screen (`--screen-listen`).
    Screen,
}

/// Staff only: a staff token as bearer, or the staff console's session cookie.
pub(super) fn staff_only(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.security_requirement(STAFF_BEARER)
        .security_requirement(STAFF_COOKIE)
}

/// Anyone; staff see more.
pub(super) fn staff_optional(op: TransformOperation<'_>) -> TransformOperation<'_> {
    staff_only(op).security_requirement_multi(std::iter::empty())
}

/// The screen token, where one is configured.
pub(super) fn screen(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.security_requirement(SCREEN_BEARER)
        .security_requirement_multi(std::iter::empty())
}

fn describe<'a>(api: TransformOpenApi<'a>, listener: &Listener) -> TransformOpenApi<'a> {
    let api = api.version(env!("CARGO_PKG_VERSION"));
    match listener {
        Listener::Public => api
            .title("Caidan agent: shoppers and staff")
            .description(
                "The touchpoint's local API. Refusals answer with a JSON body \
                 `{error, message}` and the status that fits; 429s carry `Retry-After`.",
            )
            .security_scheme(
                STAFF_BEARER,
                openapi::bearer("a staff token the fleet config lists"),
            )
            .security_scheme(
                STAFF_COOKIE,
                SecurityScheme::ApiKey {
                    location: ApiKeyLocation::Cookie,
                    name: SESSION_COOKIE.into(),
                    description: Some("the staff console's session, after /staff/login".into()),
                    extensions: Default::default(),
                },
            ),
        Listener::Screen => api
            .title("Caidan agent: the screen")
            .description("What the touchpoint's screen reads: the rotating QR.")
            .security_scheme(
                SCREEN_BEARER,
                openapi::bearer("the screen token, when the screen listener is not on loopback"),
            ),
    }
}

/// The router, and a handler answering its document (serialized once).
pub(super) fn finish(
    router: ApiRouter<AppState>,
    listener: Listener,
) -> (
    Router<AppState>,
    impl Fn() -> std::future::Ready<axum::response::Response> + Clone + Send + Sync + 'static,
) {
    let mut api = OpenApi::default();
    let router = router.finish_api_with(&mut api, |t| describe(t, &listener));
    let body =
        Bytes::from(serde_json::to_vec(&api).expect("an OpenAPI document always serializes"));
    let answer = move || {
        std::future::ready(
            (
                [
                    (CONTENT_TYPE, "application/json"),
                    (CACHE_CONTROL, "no-cache"),
                ],
                body.clone(),
            )
                .into_response(),
        )
    };
    (router, answer)
}

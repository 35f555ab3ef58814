//! Extractors whose rejections the handlers answer themselves, as [`super::ApiError`]s.

use aide::OperationInput;
use aide::generate::GenContext;
use aide::openapi::Operation;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, Request};
use schemars::JsonSchema;

/// A JSON request body, or why it could not be read: the handler decides when to check it
/// (after its own limits) and answers a bad one with its JSON refusal. Documented as the
/// request body only: axum's plain-text rejections never reach the client.
pub struct JsonBody<T>(pub Result<T, JsonRejection>);

impl<S: Send + Sync, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBody(
            Json::<T>::from_request(req, state).await.map(|Json(t)| t),
        ))
    }
}

impl<T: JsonSchema> OperationInput for JsonBody<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Json::<T>::operation_input(ctx, operation);
    }
}

/// A path that did not fit its route's parameters (say, not UTF-8 once decoded).
pub fn bad_path(e: PathRejection) -> super::ApiError {
    super::ApiError::new(e.status(), "bad_request", e.body_text())
}

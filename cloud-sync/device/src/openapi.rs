//! What the agent's and the data bank's OpenAPI documents share: bearer schemes and the
//! `default` response every operation may refuse with.

pub use aide;
use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{Operation, Response, SecurityScheme, StatusCode};
use schemars::JsonSchema;

/// An HTTP bearer scheme.
pub fn bearer(description: &str) -> SecurityScheme {
    SecurityScheme::Http {
        scheme: "bearer".into(),
        bearer_format: None,
        description: Some(description.into()),
        extensions: Default::default(),
    }
}

/// The response of a refusal whose JSON body is `B`.
pub fn refusal<B: JsonSchema>(ctx: &mut GenContext, op: &mut Operation) -> Option<Response> {
    let mut response = axum::Json::<B>::operation_response(ctx, op)?;
    response.description = "refused: the body says why".into();
    Some(response)
}

/// [`refusal`] as the `default` response: statuses are many and each handler documents its
/// own.
pub fn default_refusal<B: JsonSchema>(
    ctx: &mut GenContext,
    op: &mut Operation,
) -> Vec<(Option<StatusCode>, Response)> {
    refusal::<B>(ctx, op)
        .map(|r| (None, r))
        .into_iter()
        .collect()
}

/// Documents error type `$error` as answering with JSON body `$body` ([`refusal`], as the
/// `default` response), for `impl IntoResponse` error enums of a router.
#[macro_export]
macro_rules! refusal_output {
    ($error:ty, $body:ty) => {
        impl $crate::openapi::aide::OperationOutput for $error {
            type Inner = $body;

            fn operation_response(
                ctx: &mut $crate::openapi::aide::generate::GenContext,
                op: &mut $crate::openapi::aide::openapi::Operation,
            ) -> Option<$crate::openapi::aide::openapi::Response> {
                $crate::openapi::refusal::<$body>(ctx, op)
            }

            fn inferred_responses(
                ctx: &mut $crate::openapi::aide::generate::GenContext,
                op: &mut $crate::openapi::aide::openapi::Operation,
            ) -> Vec<(
                Option<$crate::openapi::aide::openapi::StatusCode>,
                $crate::openapi::aide::openapi::Response,
            )> {
                $crate::openapi::default_refusal::<$body>(ctx, op)
            }
        }
    };
}

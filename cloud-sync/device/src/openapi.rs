//! What the agent's and the data bank's OpenAPI documents share: bearer schemes and the
//! `default` response every operation may refuse with.

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

//! Answers many endpoints document alike, as `utoipa` response sets.

use paygress_core::ErrorReply;
use utoipa::IntoResponses;

/// `429` and `503`: what any endpoint may answer when the service cannot take a request.
#[derive(IntoResponses)]
#[allow(dead_code)] // only its OpenAPI description is used
pub(crate) enum Refusals {
    /// Rate limited.
    #[response(status = 429, description = "Rate limited (per client IP)")]
    RateLimited(ErrorReply),
    /// Unavailable.
    #[response(
        status = 503,
        description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)"
    )]
    Unavailable(ErrorReply),
}

/// `429` alone, for endpoints whose `503` says more.
#[derive(IntoResponses)]
#[response(status = 429, description = "Rate limited (per client IP)")]
#[allow(dead_code)] // only its OpenAPI description is used
pub(crate) struct RateLimited(ErrorReply);

/// `413`: a body over the limit.
#[derive(IntoResponses)]
#[response(status = 413, description = "Body too large")]
#[allow(dead_code)] // only its OpenAPI description is used
pub(crate) struct TooLarge(ErrorReply);

//! Errors: the crate's own [`HttpError`], and [`ApiError`], the typed JSON error body every
//! failing request answers with.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paygress_core::{ErrorCode, ErrorReply, QuoteError};
use thiserror::Error;

/// Why the HTTP server could not run.
#[derive(Debug, Error)]
pub enum HttpError {
    /// Binding or serving the socket failed.
    #[error("http server I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A configuration variable has an unusable value.
    #[error("{name}={value:?} is not valid")]
    Config {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The OpenAPI document could not be rendered.
    #[error("openapi document: {0}")]
    OpenApi(#[from] serde_json::Error),
}

/// The HTTP status for a core error code. The one place codes become statuses.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidToken
        | ErrorCode::MintNotAccepted
        | ErrorCode::UnsupportedUnit
        | ErrorCode::InsufficientPayment => StatusCode::BAD_REQUEST,
        ErrorCode::InvalidUsername
        | ErrorCode::InvalidPodName
        | ErrorCode::ImageNotAllowed
        | ErrorCode::UnknownTier
        | ErrorCode::DurationOutOfRange
        | ErrorCode::InvalidPublicKey => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::TokenAlreadySpent
        | ErrorCode::LeaseExpired
        | ErrorCode::LeaseAtMaximum
        | ErrorCode::RequestIdInUse => StatusCode::CONFLICT,
        ErrorCode::PodNotFound => StatusCode::NOT_FOUND,
        ErrorCode::NotOwner => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::MintUnavailable
        | ErrorCode::ProvisioningFailed
        | ErrorCode::RefundPending
        | ErrorCode::PaymentPending
        | ErrorCode::Unavailable
        // No answer is a 5xx other than 503 (the documented one), an internal failure
        // included: clients retry it like any unavailability.
        | ErrorCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
        // A code added to core later: unavailable until this crate maps it.
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A failed request: a status and core's [`ErrorReply`] as the JSON body
/// (`{code, message, refund_token?}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorReply,
}

impl ApiError {
    /// An error whose status follows from `code` (see [`status_for`]).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::from_reply(ErrorReply {
            code,
            message: message.into(),
            refund_token: None,
        })
    }

    /// An error with an explicit status (rejections that have no core code of their own).
    pub fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorReply {
                code,
                message: message.into(),
                refund_token: None,
            },
        }
    }

    /// Wraps a core error reply (keeping any refund token in the body).
    pub fn from_reply(body: ErrorReply) -> Self {
        Self {
            status: status_for(body.code),
            body,
        }
    }
}

impl From<QuoteError> for ApiError {
    fn from(e: QuoteError) -> Self {
        Self::from_reply(e.into())
    }
}

impl From<ErrorReply> for ApiError {
    fn from(body: ErrorReply) -> Self {
        Self::from_reply(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_problems_are_bad_requests() {
        for code in [
            ErrorCode::MintNotAccepted,
            ErrorCode::UnsupportedUnit,
            ErrorCode::InsufficientPayment,
            ErrorCode::InvalidToken,
        ] {
            assert_eq!(status_for(code), StatusCode::BAD_REQUEST, "{code:?}");
        }
    }

    #[test]
    fn retryable_codes_are_server_side() {
        for code in [
            ErrorCode::MintUnavailable,
            ErrorCode::Unavailable,
            ErrorCode::ProvisioningFailed,
            ErrorCode::RefundPending,
            ErrorCode::PaymentPending,
        ] {
            assert!(code.is_retryable());
            assert_eq!(status_for(code), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(
            status_for(ErrorCode::RateLimited),
            StatusCode::TOO_MANY_REQUESTS
        );
        // 503 is the only 5xx the API answers.
        assert_eq!(
            status_for(ErrorCode::Internal),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

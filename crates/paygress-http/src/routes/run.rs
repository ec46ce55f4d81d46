//! Running a paid request and turning its reply into a response.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use paygress_core::{Amount, ErrorCode, LeaseId, Reply, Request, Unit};
use tracing::warn;

use super::X_CASHU;
use crate::error::ApiError;
use crate::identity::{Identity, fingerprint};
use crate::server::AppState;

impl AppState {
    pub(super) fn quote_unit(&self) -> Unit {
        self.payments
            .accepted_units()
            .first()
            .copied()
            .unwrap_or(Unit::Sat)
    }

    /// `402` with a NUT-18 payment request for `amount` in `X-Cashu` (NUT-24).
    pub(super) fn payment_required(&self, amount: Amount, description: &str) -> Response {
        let mut response = ApiError::with_status(
            StatusCode::PAYMENT_REQUIRED,
            ErrorCode::InsufficientPayment,
            format!(
                "payment required: {amount} for {description}; pay with a Cashu token in the \
                 X-Cashu header (NUT-24) or the cashu_token field"
            ),
        )
        .into_response();
        match self.payments.payment_request(amount, description) {
            Ok(request) => match HeaderValue::from_str(&request) {
                Ok(v) => {
                    response.headers_mut().insert(X_CASHU, v);
                }
                Err(_) => warn!("payment request is not a valid header value"),
            },
            Err(e) => warn!(error = %e, "no payment request for the 402 answer"),
        }
        response
    }

    /// Runs a paid request in its own task (a dropped connection cannot cancel it) and
    /// turns the reply into a response. A repeat the requester may not see the answer of
    /// is refused before it reaches the service (see [`crate::identity`]).
    pub(super) async fn run(&self, id: Identity, request: Request) -> Response {
        let admission = match self.admissions.admit(&id, fingerprint(&request)) {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        };
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return ApiError::new(ErrorCode::Unavailable, "the service is shutting down")
                .into_response();
        };
        let paygress = self.paygress.clone();
        let task = tokio::spawn(async move {
            let reply = paygress.handle(&id.key, &id.sender, request).await;
            drop(permit);
            if id.keyed || holds_secret(&reply) {
                admission.keep();
            }
            reply
        });
        match task.await {
            Ok(reply) => reply_response(reply),
            Err(e) => {
                warn!(error = %e, "request task failed");
                ApiError::new(ErrorCode::Internal, "the request failed unexpectedly")
                    .into_response()
            }
        }
    }
}

/// Whether `reply` carries something only its requester may see.
fn holds_secret(reply: &Reply) -> bool {
    match reply {
        Reply::AccessDetails(_) | Reply::TopUp(_) => true,
        Reply::Error(e) => e.refund_token.is_some(),
        Reply::Released(r) => r.refund_token.is_some(),
        Reply::Status(_) => false,
    }
}

fn reply_response(reply: Reply) -> Response {
    match reply {
        Reply::AccessDetails(a) => (StatusCode::CREATED, Json(a)).into_response(),
        Reply::TopUp(t) => (StatusCode::OK, Json(t)).into_response(),
        Reply::Released(r) => (StatusCode::OK, Json(r)).into_response(),
        Reply::Error(e) => ApiError::from_reply(e).into_response(),
        Reply::Status(_) => {
            ApiError::new(ErrorCode::Internal, "unexpected status reply").into_response()
        }
    }
}

pub(super) fn parse_lease(name: &str) -> Result<LeaseId, ApiError> {
    name.parse::<LeaseId>()
        .map_err(|e| ApiError::new(ErrorCode::InvalidPodName, e.to_string()))
}

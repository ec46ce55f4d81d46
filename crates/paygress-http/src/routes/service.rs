//! What the service sells, its health, its OpenAPI document, and unknown paths.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use paygress_core::{ErrorCode, Offer};
use tracing::warn;

use super::Shared;
use super::responses::Refusals;
use crate::error::ApiError;
use crate::openapi::openapi_json_string;
use crate::wire::{ComponentHealth, HealthBody};

/// What the service sells.
#[utoipa::path(
    get,
    path = "/offer",
    tag = "service",
    responses(
        (status = 200, description = "The offer (the same one the Nostr transport publishes)", body = Offer),
        Refusals,
    )
)]
pub(crate) async fn offer(State(state): Shared) -> Json<Offer> {
    Json(state.paygress.offer())
}

/// Liveness, and which transports and backends are up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses(
        (status = 200, description = "Everything is up", body = HealthBody),
        (status = 503, description = "A component is down", body = HealthBody),
    )
)]
pub(crate) async fn healthz(State(state): Shared) -> Response {
    let backend = state.paygress.backend();
    let backend_up = matches!(
        tokio::time::timeout(state.config.health_check_timeout, backend.list()).await,
        Ok(Ok(_))
    );
    let transports = match &state.transports {
        Some(probe) => probe(),
        None => vec![ComponentHealth {
            name: "http".to_owned(),
            up: true,
        }],
    };
    let all_up = backend_up && transports.iter().all(|t| t.up);
    let body = HealthBody {
        status: if all_up { "ok" } else { "degraded" }.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: ComponentHealth {
            name: backend.name().to_owned(),
            up: backend_up,
        },
        transports,
    };
    let status = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses(
        (status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"),
        Refusals,
    )
)]
pub(crate) async fn openapi_json() -> Response {
    match openapi_json_string() {
        Ok(doc) => ([(header::CONTENT_TYPE, "application/json")], doc).into_response(),
        Err(e) => {
            warn!(error = %e, "openapi document");
            ApiError::new(ErrorCode::Unavailable, "no OpenAPI document").into_response()
        }
    }
}

/// Unknown paths.
pub(crate) async fn not_found() -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidRequest,
        "no such endpoint",
    )
}

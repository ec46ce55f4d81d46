//! Checking a token without redeeming it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use paygress_core::{ErrorCode, ErrorReply};

use super::responses::{Refusals, TooLarge};
use super::token::payment_token;
use super::{JsonBody, Shared};
use crate::error::ApiError;
use crate::wire::{AuthBody, AuthQuery, AuthResponse};

/// Check a token without redeeming it.
#[utoipa::path(
    get,
    path = "/auth",
    tag = "payments",
    params(
        AuthQuery,
        ("X-Cashu" = Option<String>, Header, description = "The token, instead of the query (keeps it out of URLs)", pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000),
    ),
    responses(
        (status = 200, description = "What the token is worth and buys", body = AuthResponse),
        (status = 400, description = "No token, not a Cashu token, undecodable token, not accepted mint or unit, or an invalid query", body = ErrorReply),
        (status = 409, description = "Token already spent", body = ErrorReply),
        Refusals,
    )
)]
pub(crate) async fn auth(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<AuthQuery>, QueryRejection>,
) -> Result<Json<AuthResponse>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid query: {}", e.body_text()),
        )
    })?;
    let token = payment_token(&headers, query.token)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "pass the token as ?token= or in the X-Cashu header",
        )
    })?;
    let quote = state
        .paygress
        .quote_token(&token, query.duration_minutes)
        .await?;
    Ok(Json(quote.into()))
}

/// Check a token without redeeming it, keeping it out of URLs and access logs.
#[utoipa::path(
    post,
    path = "/auth",
    tag = "payments",
    request_body = AuthBody,
    params(
        ("X-Cashu" = Option<String>, Header, description = "The token, instead of the body's `token`", pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000),
    ),
    responses(
        (status = 200, description = "What the token is worth and buys", body = AuthResponse),
        (status = 400, description = "No token, not a Cashu token, undecodable token, not accepted mint or unit, or a body that is not JSON", body = ErrorReply),
        (status = 409, description = "Token already spent", body = ErrorReply),
        TooLarge,
        (status = 422, description = "Well-formed JSON of the wrong shape", body = ErrorReply),
        Refusals,
    )
)]
pub(crate) async fn auth_post(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AuthBody>,
) -> Result<Json<AuthResponse>, ApiError> {
    let token = payment_token(&headers, body.token)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "pass the token as the body's token field or in the X-Cashu header",
        )
    })?;
    let quote = state
        .paygress
        .quote_token(&token, body.duration_minutes)
        .await?;
    Ok(Json(quote.into()))
}

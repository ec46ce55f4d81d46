//! The token a paid request carries: from the `X-Cashu` header or the body.

use axum::http::HeaderMap;
use paygress_core::{CashuToken, ErrorCode};

use super::X_CASHU;
use crate::error::ApiError;

/// The pattern every Cashu token must match: a `cashuA` (V3, JSON) or `cashuB` (V4,
/// CBOR) prefix and base64 or base64url characters.
pub const TOKEN_PATTERN: &str = r"^cashu[AB][A-Za-z0-9_+/=-]+$";
/// The longest token accepted, in characters.
pub const MAX_TOKEN_CHARS: usize = 60_000;

/// Refuses, untouched, a token that cannot be a Cashu token ([`TOKEN_PATTERN`],
/// [`MAX_TOKEN_CHARS`]).
fn check_token_format(token: &CashuToken) -> Result<(), ApiError> {
    let text = token.expose();
    let body = text
        .strip_prefix("cashuA")
        .or_else(|| text.strip_prefix("cashuB"));
    let ok = text.len() <= MAX_TOKEN_CHARS
        && body.is_some_and(|b| {
            !b.is_empty()
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_+/=-".contains(&c))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidToken,
            format!(
                "not a Cashu token: expected cashuA… or cashuB… (base64url, at most \
                 {MAX_TOKEN_CHARS} characters)"
            ),
        ))
    }
}

/// The token from the `X-Cashu` header or the body; both present must agree, and it
/// must look like a Cashu token.
pub(super) fn payment_token(
    headers: &HeaderMap,
    body: Option<CashuToken>,
) -> Result<Option<CashuToken>, ApiError> {
    let token = header_or_body_token(headers, body)?;
    if let Some(t) = &token {
        check_token_format(t)?;
    }
    Ok(token)
}

fn header_or_body_token(
    headers: &HeaderMap,
    body: Option<CashuToken>,
) -> Result<Option<CashuToken>, ApiError> {
    let header = match headers.get(X_CASHU) {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                ApiError::new(ErrorCode::InvalidToken, "the X-Cashu header is not ASCII")
            })?;
            let text = text.trim();
            (!text.is_empty()).then(|| CashuToken::new(text))
        }
    };
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the X-Cashu header and cashu_token differ; send the token once",
        )),
        (Some(h), _) => Ok(Some(h)),
        (None, b) => Ok(b.filter(|t| !t.is_empty())),
    }
}

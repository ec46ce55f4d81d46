//! The JSON body extractor.

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::StatusCode;
use paygress_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body, parsed whatever the content type; an empty body reads as `{}`. Syntax
/// errors answer `400`, well-formed JSON of the wrong shape `422`, a body over the limit
/// `413`, all with the typed error body.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            let message = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "request body too large".to_owned()
            } else {
                format!("could not read the request body: {}", r.body_text())
            };
            ApiError::with_status(r.status(), ErrorCode::InvalidRequest, message)
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            let status = match e.classify() {
                serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiError::with_status(
                status,
                ErrorCode::InvalidRequest,
                format!("invalid JSON body: {e}"),
            )
        })
    }
}

//! The page's JSON endpoints and the NUT-18 payment target.
//!
//! - `views`: request bodies and what the lease page shows;
//! - `handlers`: the endpoints;
//! - `pay`: running one payment for a lease page.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paygress_core::{ErrorCode, Unit};
use serde::Serialize;

use super::WebState;
use super::store::Entry;
use crate::error::ApiError;

mod handlers;
mod pay;
mod views;

pub(crate) use handlers::{create_order, lease_view, pay_nut18, pay_with_token, top_up};

type Shared = State<Arc<WebState>>;

/// A JSON answer no cache keeps (it may hold a password or tokens).
pub(crate) fn private_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl WebState {
    pub(super) fn unit(&self) -> Unit {
        self.payments
            .accepted_units()
            .first()
            .copied()
            .unwrap_or(Unit::Sat)
    }

    /// Where wallets post payments: the configured public URL, else the page's own
    /// origin as the browser reached it.
    pub(super) fn pay_target(&self, headers: &HeaderMap, pay_id: &str) -> String {
        let base = match &self.config.public_url {
            Some(u) => u.clone(),
            None => {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
                        .filter(|v| !v.is_empty())
                };
                let proto = h("x-forwarded-proto")
                    .filter(|p| p == "https" || p == "http")
                    .unwrap_or_else(|| "http".to_owned());
                let host = h("x-forwarded-host")
                    .or_else(|| h("host"))
                    .unwrap_or_else(|| "localhost".to_owned());
                format!("{proto}://{host}")
            }
        };
        format!("{base}/web/pay/{pay_id}")
    }

    pub(super) fn entry(&self, secret: &str) -> Result<Arc<Entry>, ApiError> {
        self.store.get(secret.trim()).ok_or_else(|| {
            ApiError::with_status(
                StatusCode::NOT_FOUND,
                ErrorCode::PodNotFound,
                "no lease has this link (links are forgotten when the service restarts)",
            )
        })
    }
}

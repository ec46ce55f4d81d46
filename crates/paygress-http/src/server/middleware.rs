//! The layers every request passes: rate limit per client IP, timeout, and typed error
//! bodies.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter as GovernorLimiter};
use paygress_core::ErrorCode;

use super::{AppState, HttpConfig};
use crate::error::ApiError;
use crate::paths;

/// The client's IP, when the router is served with connect info.
pub(crate) fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// A token bucket per client IP.
pub(super) struct RateLimiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimiter {
    const MAX_TRACKED: usize = 100_000;

    pub(super) fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            buckets: GovernorLimiter::keyed(Quota::per_minute(n)),
        }
    }

    fn allow(&self, ip: IpAddr) -> bool {
        if self.buckets.len() >= Self::MAX_TRACKED {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
        self.buckets.check_key(&ip).is_ok()
    }
}

/// The client IP a request is attributed to: the peer, or with `trust_forwarded_for` the
/// last `X-Forwarded-For` entry (the one the trusted proxy added).
fn client_ip(config: &HttpConfig, req: &Request) -> Option<IpAddr> {
    if config.trust_forwarded_for
        && let Some(ip) = forwarded_for(req.headers())
    {
        return Some(ip);
    }
    peer_ip(req.extensions())
}

fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

pub(super) async fn rate_limit(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if let (Some(limiter), Some(ip)) = (&state.limiter, client_ip(&state.config, &req))
        && !matches!(req.uri().path(), paths::HEALTHZ | "/metrics")
        && !limiter.allow(ip)
    {
        return ApiError::new(ErrorCode::RateLimited, "too many requests; slow down")
            .into_response();
    }
    next.run(req).await
}

pub(super) async fn timeout(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Unavailable,
            "the request timed out; a paid request keeps running: send the same request \
             (same token and Idempotency-Key) again to get its answer",
        )
        .into_response(),
    }
}

/// Gives every error answer axum or a layer produced as plain text (405, 413, a caught
/// panic, …) the typed JSON body; any 5xx becomes `503`.
pub(super) async fn typed_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (status, code) = if status.is_server_error() {
        // The only 5xx the API answers is 503 (documented on every endpoint).
        (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal)
    } else {
        (status, ErrorCode::InvalidRequest)
    };
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this path".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_owned(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    parts.status = status;
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let typed = ApiError::with_status(status, code, message).into_response();
    let (typed_parts, body) = typed.into_parts();
    parts.headers.extend(typed_parts.headers);
    Response::from_parts(parts, body)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_takes_the_last_entry() {
        let mut h = HeaderMap::new();
        assert_eq!(forwarded_for(&h), None);
        h.append("x-forwarded-for", "6.6.6.6, 10.0.0.1".parse().unwrap());
        h.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some([203, 0, 113, 7].into()));
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "1.2.3.4, [2001:db8::1]:443".parse().unwrap(),
        );
        assert_eq!(forwarded_for(&h), "2001:db8::1".parse().ok());
        h.insert("x-forwarded-for", "not an ip".parse().unwrap());
        assert_eq!(forwarded_for(&h), None);
    }

    #[test]
    fn rate_limiter_counts_per_ip() {
        let l = RateLimiter::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        assert!(l.allow(a));
        assert!(l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(b));
    }
}

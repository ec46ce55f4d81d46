//! The server: configuration, the router with its layers, and serving with graceful
//! shutdown.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter as GovernorLimiter};
use paygress_core::{DynPaymentVerifier, ErrorCode, Paygress};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use tracing::info_span;

use crate::error::{ApiError, HttpError};
use crate::identity::Admissions;
use crate::wire::ComponentHealth;
use crate::{paths, routes};

/// Tunables of the HTTP API (defaults in each field's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones answer `413`. Default: 64 KiB.
    pub body_limit_bytes: usize,
    /// Longest a request may take before it answers `503`. Default: 30 s. A paid request keeps
    /// running after that; the buyer gets its answer by sending it again.
    pub request_timeout: Duration,
    /// Minutes a `402` payment request asks for when the body names no duration (the
    /// seed's `DEFAULT_POD_DURATION_MINUTES`). Default: 60.
    pub default_duration_minutes: u64,
    /// Requests per minute one client IP may make (`/healthz` exempt), as a token bucket
    /// holding a minute's worth; past it requests answer `429`. `None` means unlimited.
    /// Default: 120.
    pub rate_limit_per_minute: Option<u32>,
    /// Take the client IP (for the rate limit) from the last `X-Forwarded-For` entry
    /// instead of the connection's peer. Turn on only behind exactly one reverse proxy
    /// that appends the client address to `X-Forwarded-For` (nginx
    /// `proxy_add_x_forwarded_for`, Caddy and Traefik by default) and is the only way
    /// to reach the port: anyone who can connect directly could otherwise pick their
    /// own address. Default: off.
    pub trust_forwarded_for: bool,
    /// How long `/healthz` waits for the backend to list its leases. Default: 2 s.
    pub health_check_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            default_duration_minutes: 60,
            rate_limit_per_minute: Some(DEFAULT_RATE_LIMIT_PER_MINUTE),
            trust_forwarded_for: false,
            health_check_timeout: Duration::from_secs(2),
        }
    }
}

impl HttpConfig {
    /// Reads the configuration by variable name through `lookup` (the binary passes
    /// the settings it read once, from flags, environment and config file); unset
    /// variables keep their default.
    ///
    /// | variable | field |
    /// |---|---|
    /// | `HTTP_BODY_LIMIT_BYTES` | `body_limit_bytes` |
    /// | `HTTP_REQUEST_TIMEOUT_SECS` | `request_timeout` |
    /// | `DEFAULT_POD_DURATION_MINUTES` (seed) | `default_duration_minutes` |
    /// | `HTTP_RATE_LIMIT_PER_MINUTE` (0 = unlimited) | `rate_limit_per_minute` |
    /// | `HTTP_TRUST_FORWARDED_FOR` (`true`/`false`) | `trust_forwarded_for` |
    ///
    /// `BIND_ADDR` (seed, default `0.0.0.0:8080`) is the binary's to bind; see
    /// [`HttpApi::serve`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, HttpError> {
        fn parse<T: std::str::FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<Option<T>, HttpError> {
            match lookup(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| HttpError::Config {
                    name,
                    value: v.clone(),
                }),
            }
        }
        let mut c = Self::default();
        if let Some(v) = parse::<usize>(&lookup, "HTTP_BODY_LIMIT_BYTES")? {
            c.body_limit_bytes = v;
        }
        if let Some(v) = parse::<u64>(&lookup, "HTTP_REQUEST_TIMEOUT_SECS")? {
            c.request_timeout = Duration::from_secs(v.max(1));
        }
        if let Some(v) = parse::<u64>(&lookup, "DEFAULT_POD_DURATION_MINUTES")? {
            c.default_duration_minutes = v.max(1);
        }
        if let Some(v) = parse::<u32>(&lookup, "HTTP_RATE_LIMIT_PER_MINUTE")? {
            c.rate_limit_per_minute = (v > 0).then_some(v);
        }
        if let Some(v) = parse::<bool>(&lookup, "HTTP_TRUST_FORWARDED_FOR")? {
            c.trust_forwarded_for = v;
        }
        Ok(c)
    }
}

/// Default of [`HttpConfig::rate_limit_per_minute`]: far above one buyer's use (a web page
/// and the CLI make a handful of requests per lease).
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 120;

/// Paid requests remembered to refuse keyless repeats and reused keys (~200 bytes each).
const ADMISSIONS_REMEMBERED: usize = 100_000;

/// Reports the state of the service's request transports for `/healthz` (e.g. whether
/// the Nostr client is connected to a relay). Called on every health check.
pub type TransportProbe = Arc<dyn Fn() -> Vec<ComponentHealth> + Send + Sync>;

/// Renders the metrics exposition (Prometheus text format) for `GET /metrics`; the
/// service's state gauges are sampled just before it is called.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Shared state of every handler.
pub(crate) struct AppState {
    pub(crate) paygress: Arc<Paygress>,
    pub(crate) payments: DynPaymentVerifier,
    pub(crate) config: HttpConfig,
    pub(crate) transports: Option<TransportProbe>,
    /// `GET /metrics`, when the binary installed an exporter.
    pub(crate) metrics: Option<MetricsRender>,
    /// Paid requests processed at once (`ServiceConfig::max_concurrent_requests`); more
    /// wait, up to the request timeout.
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    /// Paid requests taken, by request key (see [`crate::identity`]).
    pub(crate) admissions: Arc<Admissions>,
    limiter: Option<RateLimiter>,
}

/// The HTTP API of one [`Paygress`] service.
///
/// The router calls [`Paygress::handle`] directly instead of going through core's
/// `Transport` port: HTTP is request/response on one connection, so a queue between the
/// handler and the service would only add a hop and a channel per request, and the
/// status code must be chosen from the reply in the handler anyway. Each paid request
/// runs in its own task, so a client that disconnects or times out never cancels a
/// payment half-way: the journal finishes it and a retry gets the same reply.
#[derive(Clone)]
pub struct HttpApi {
    state: Arc<AppState>,
    web: Option<crate::web::WebUi>,
}

impl std::fmt::Debug for HttpApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApi")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl HttpApi {
    /// An API over `paygress`. `payments` must be the verifier the service was built
    /// with: it encodes the NUT-18 payment requests of `402` answers.
    pub fn new(paygress: Arc<Paygress>, payments: DynPaymentVerifier, config: HttpConfig) -> Self {
        Self::build(paygress, payments, config, None, None)
    }

    /// Reports transports through `probe` in `/healthz` (default: `http` up).
    pub fn with_transport_probe(self, probe: TransportProbe) -> Self {
        let state = &self.state;
        Self {
            web: self.web.clone(),
            ..Self::build(
                state.paygress.clone(),
                state.payments.clone(),
                state.config.clone(),
                Some(probe),
                state.metrics.clone(),
            )
        }
    }

    /// Serves `GET /metrics` (in the full API and the health-only router) with `render`.
    pub fn with_metrics(self, render: MetricsRender) -> Self {
        let state = &self.state;
        Self {
            web: self.web.clone(),
            ..Self::build(
                state.paygress.clone(),
                state.payments.clone(),
                state.config.clone(),
                state.transports.clone(),
                Some(render),
            )
        }
    }

    /// Also serves the buyer's web page ([`crate::web`]) from [`HttpApi::router`] and
    /// [`HttpApi::web_router`].
    pub fn with_web(mut self, web: crate::web::WebUi) -> Self {
        self.web = Some(web);
        self
    }

    fn build(
        paygress: Arc<Paygress>,
        payments: DynPaymentVerifier,
        config: HttpConfig,
        transports: Option<TransportProbe>,
        metrics: Option<MetricsRender>,
    ) -> Self {
        let limiter = config.rate_limit_per_minute.map(RateLimiter::new);
        let permits = Arc::new(tokio::sync::Semaphore::new(
            paygress.config().max_concurrent_requests.max(1),
        ));
        Self {
            state: Arc::new(AppState {
                paygress,
                payments,
                config,
                transports,
                metrics,
                permits,
                admissions: Admissions::new(ADMISSIONS_REMEMBERED),
                limiter,
            }),
            web: None,
        }
    }

    /// The router with every endpoint and layer. Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so that requests are
    /// attributed to (and rate limited by) the peer's IP; [`HttpApi::serve`] does.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let api = Router::new()
            .route(paths::HEALTHZ, get(routes::healthz))
            .route(paths::SPAWN_POD, post(routes::spawn_pod))
            .route(paths::TOP_UP_POD, post(routes::top_up_pod))
            .route(paths::PODS, get(routes::list_pods))
            .route(paths::POD, get(routes::get_pod))
            .route(paths::RELEASE_POD, post(routes::release_pod))
            .route(paths::AUTH, get(routes::auth).post(routes::auth_post))
            .route(paths::OFFER, get(routes::offer))
            .route(paths::OPENAPI, get(routes::openapi_json))
            .route("/metrics", get(metrics))
            .with_state(state.clone());
        self.layered(self.with_web_routes(api))
    }

    /// `GET /healthz` and the web page (typed 404 elsewhere), with the API's layers:
    /// for a service whose requests come over Nostr (`WEB_ADDR`).
    pub fn web_router(&self) -> Router {
        let health = Router::new()
            .route(paths::HEALTHZ, get(routes::healthz))
            .with_state(self.state.clone());
        self.layered(self.with_web_routes(health))
    }

    fn with_web_routes(&self, router: Router) -> Router {
        match &self.web {
            Some(web) => router.merge(web.router()),
            None => router,
        }
    }

    fn layered(&self, router: Router) -> Router {
        let state = self.state.clone();
        router
            .fallback(routes::not_found)
            .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
            .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
            .layer(middleware::from_fn_with_state(state.clone(), timeout))
            .layer(CatchPanicLayer::new())
            .layer(middleware::from_fn(typed_errors))
            .layer(
                // Method and path only: the query of `/auth` carries a token.
                TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    info_span!("http", method = %req.method(), path = %req.uri().path())
                }),
            )
    }

    /// Only `GET /healthz` (typed 404 elsewhere): for a service whose requests come over
    /// Nostr, so that orchestrator probes still have an endpoint.
    pub fn health_router(&self) -> Router {
        Router::new()
            .route(paths::HEALTHZ, get(routes::healthz))
            .route("/metrics", get(metrics))
            .fallback(routes::not_found)
            .layer(middleware::from_fn(typed_errors))
            .with_state(self.state.clone())
    }

    /// Serves [`HttpApi::health_router`] on `listener` until `shutdown` completes.
    pub async fn serve_health_only<F>(
        self,
        listener: TcpListener,
        shutdown: F,
    ) -> Result<(), HttpError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        axum::serve(listener, self.health_router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }

    /// Serves [`HttpApi::web_router`] on `listener` until `shutdown` completes.
    pub async fn serve_web<F>(self, listener: TcpListener, shutdown: F) -> Result<(), HttpError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let app = self
            .web_router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }

    /// Serves the API on `listener` until `shutdown` completes, then stops accepting
    /// connections and waits for requests in flight to finish.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Result<(), HttpError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// The client's IP, when the router is served with connect info.
pub(crate) fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// `GET /metrics`: samples the service's state gauges, then renders the exposition;
/// `404` when no exporter was installed.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let Some(render) = state.metrics.clone() else {
        return routes::not_found().await.into_response();
    };
    state.paygress.sample_metrics().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
        .into_response()
}

// ---------------------------------------------------------------- middleware

/// A token bucket per client IP.
struct RateLimiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimiter {
    const MAX_TRACKED: usize = 100_000;

    fn new(per_minute: u32) -> Self {
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

async fn rate_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let (Some(limiter), Some(ip)) = (&state.limiter, client_ip(&state.config, &req))
        && !matches!(req.uri().path(), paths::HEALTHZ | "/metrics")
        && !limiter.allow(ip)
    {
        return ApiError::new(ErrorCode::RateLimited, "too many requests; slow down")
            .into_response();
    }
    next.run(req).await
}

async fn timeout(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
async fn typed_errors(req: Request, next: Next) -> Response {
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
    fn config_from_lookup() {
        let vars = [
            ("HTTP_BODY_LIMIT_BYTES", "1024"),
            ("HTTP_REQUEST_TIMEOUT_SECS", "5"),
            ("DEFAULT_POD_DURATION_MINUTES", "120"),
            ("HTTP_RATE_LIMIT_PER_MINUTE", "0"),
        ];
        let lookup = |n: &str| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        };
        let c = HttpConfig::from_lookup(lookup).unwrap();
        assert_eq!(c.body_limit_bytes, 1024);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.default_duration_minutes, 120);
        assert_eq!(c.rate_limit_per_minute, None);
        assert!(!c.trust_forwarded_for);
        assert_eq!(
            HttpConfig::default().rate_limit_per_minute,
            Some(DEFAULT_RATE_LIMIT_PER_MINUTE),
            "on by default"
        );
        let trusted = HttpConfig::from_lookup(|n| {
            (n == "HTTP_TRUST_FORWARDED_FOR").then(|| "true".to_owned())
        })
        .unwrap();
        assert!(trusted.trust_forwarded_for);
        assert_eq!(
            HttpConfig::from_lookup(|_| None).unwrap(),
            HttpConfig::default()
        );
        let bad =
            HttpConfig::from_lookup(|n| (n == "HTTP_REQUEST_TIMEOUT_SECS").then(|| "soon".into()));
        assert!(matches!(
            bad,
            Err(HttpError::Config {
                name: "HTTP_REQUEST_TIMEOUT_SECS",
                ..
            })
        ));
    }

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

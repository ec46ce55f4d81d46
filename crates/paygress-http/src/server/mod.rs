//! The server: configuration, the router with its layers, and serving with graceful
//! shutdown.
//!
//! - `config`: [`HttpConfig`] and how it is read;
//! - `api`: building [`HttpApi`], its routers and serving them;
//! - `middleware`: rate limit, timeout and typed error bodies.

use std::sync::Arc;

use paygress_core::{DynPaymentVerifier, Paygress};

use crate::identity::Admissions;
use crate::wire::ComponentHealth;

mod api;
mod config;
mod middleware;

pub use config::{DEFAULT_RATE_LIMIT_PER_MINUTE, HttpConfig};
use middleware::RateLimiter;

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

//! Building [`HttpApi`], its routers, and serving them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use paygress_core::{DynPaymentVerifier, Paygress};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use tracing::info_span;

use super::middleware::{RateLimiter, rate_limit, timeout, typed_errors};
use super::{ADMISSIONS_REMEMBERED, AppState, HttpApi, HttpConfig, MetricsRender, TransportProbe};
use crate::error::HttpError;
use crate::identity::Admissions;
use crate::{paths, routes};

impl HttpApi {
    /// An API over `paygress`. `payments` must be the verifier the service was built
    /// with: it encodes the NUT-18 payment requests of `402` answers.
    pub fn new(paygress: Arc<Paygress>, payments: DynPaymentVerifier, config: HttpConfig) -> Self {
        Self::build(paygress, payments, config, None, None)
    }

    /// Reports transports through `probe` in `/healthz` (default: `http` up).
    pub fn with_transport_probe(self, probe: TransportProbe) -> Self {
        let metrics = self.state.metrics.clone();
        self.rebuilt(Some(probe), metrics)
    }

    /// Serves `GET /metrics` (in the full API and the health-only router) with `render`.
    pub fn with_metrics(self, render: MetricsRender) -> Self {
        let transports = self.state.transports.clone();
        self.rebuilt(transports, Some(render))
    }

    /// The same API and web page with `transports` and `metrics` instead.
    fn rebuilt(self, transports: Option<TransportProbe>, metrics: Option<MetricsRender>) -> Self {
        let state = &self.state;
        Self {
            web: self.web.clone(),
            ..Self::build(
                state.paygress.clone(),
                state.payments.clone(),
                state.config.clone(),
                transports,
                metrics,
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
        serve_with_peers(self.web_router(), listener, shutdown).await
    }

    /// Serves the API on `listener` until `shutdown` completes, then stops accepting
    /// connections and waits for requests in flight to finish.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Result<(), HttpError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        serve_with_peers(self.router(), listener, shutdown).await
    }
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

/// Serves `router` on `listener`, each request knowing its peer's address (for the
/// rate limit), until `shutdown` completes; then waits for requests in flight.
async fn serve_with_peers<F>(
    router: Router,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), HttpError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

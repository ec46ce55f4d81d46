//! Metrics for operators: the Prometheus exporter behind the `metrics` facade core
//! reports through, the gauges only the binary can read (journal file size, relays
//! connected), and the `/metrics` endpoint on `METRICS_ADDR`.
//!
//! Without `METRICS_ADDR`, `GET /metrics` is served on the HTTP port (`BIND_ADDR`), in
//! every run mode. With it, only there (so the API port can stay public while metrics
//! stay on a private address).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use paygress_core::Paygress;
use paygress_core::observe::{JOURNAL_BYTES, RELAYS_CONNECTED};
use paygress_http::MetricsRender;
use paygress_nostr::NostrTransport;
use tracing::{info, warn};

/// Histogram buckets (seconds): from a loopback mint swap (~5 ms) to a slow Kubernetes
/// pod start (tens of seconds).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often relay connections are sampled.
const RELAY_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder (once) and
/// returns its handle.
pub fn install() -> Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    // Upkeep drains histogram samples into buckets; without it memory grows between
    // scrapes on an unscraped service.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Renders the exposition, first setting the journal size gauge from `journal`.
pub fn render(handle: PrometheusHandle, journal: PathBuf) -> MetricsRender {
    Arc::new(move || {
        if let Ok(meta) = std::fs::metadata(&journal) {
            metrics::gauge!(JOURNAL_BYTES).set(meta.len() as f64);
        }
        handle.render()
    })
}

/// Samples the Nostr transport's relay connections into a gauge until the task is
/// dropped.
pub async fn sample_relays(transport: Arc<NostrTransport>) {
    let mut tick = tokio::time::interval(RELAY_SAMPLE_INTERVAL);
    loop {
        tick.tick().await;
        let n = transport.relays_connected().await;
        metrics::gauge!(RELAYS_CONNECTED).set(n as f64);
    }
}

#[derive(Clone)]
struct Scrape {
    service: Arc<Paygress>,
    render: MetricsRender,
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    s.service.sample_metrics().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (s.render)(),
    )
}

/// Binds `METRICS_ADDR`.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding METRICS_ADDR {addr}"))?;
    info!(%addr, "metrics listening (GET /metrics)");
    Ok(listener)
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Paygress>,
    render: MetricsRender,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { service, render });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(error = %e, "metrics endpoint stopped");
    }
}

//! Graceful stop: on SIGTERM the service takes no new request, lets the ones in flight
//! finish (each is journaled, so one cut short by the grace period is settled at the
//! next start), then exits. Leases live in the backend and are picked up at start.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Default of `SHUTDOWN_GRACE_SECS`: longer than a slow Kubernetes pod start.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// `SHUTDOWN_GRACE_SECS`: how long requests in flight may take after SIGTERM.
pub fn grace_from_env() -> Result<Duration> {
    match std::env::var("SHUTDOWN_GRACE_SECS") {
        Ok(v) if !v.trim().is_empty() => Ok(Duration::from_secs(
            v.trim()
                .parse()
                .with_context(|| format!("SHUTDOWN_GRACE_SECS {v:?}"))?,
        )),
        _ => Ok(DEFAULT_GRACE),
    }
}

/// Waits up to `grace` for every task (the transports' serve loops, which finish
/// their requests in flight once they stop taking new ones), then aborts the rest.
pub async fn drain(tasks: &mut JoinSet<()>, grace: Duration) {
    let waited = tokio::time::timeout(grace, async {
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done
                && e.is_panic()
            {
                warn!(error = %e, "a component panicked while stopping");
            }
        }
    })
    .await;
    if waited.is_err() {
        warn!(
            grace_secs = grace.as_secs(),
            "requests still running after the grace period; stopping them (the journal \
             settles them at the next start)"
        );
    }
    tasks.abort_all();
    info!("requests in flight finished");
}

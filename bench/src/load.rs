//! Closed-loop load: `concurrency` workers each send the next request as soon as their
//! previous one is answered, until `n` requests are done.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::stats::Summary;
use crate::timed::Recorder;

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Scenario name.
    pub scenario: String,
    /// Workers.
    pub concurrency: usize,
    /// Client-side latency.
    pub latency: Summary,
    /// Requests per second over the run.
    pub throughput: f64,
    /// Per stage: p50 of one call, and calls per request.
    pub stages: Vec<(String, Summary, f64)>,
    /// The floor this run is compared with (ms) and what it is.
    pub floor: Option<(String, f64)>,
}

impl Run {
    /// p50 over the floor.
    pub fn ratio(&self) -> Option<f64> {
        self.floor.as_ref().map(|(_, f)| self.latency.p50 / f)
    }
}

/// Runs `n` requests made by `request(i)` with `concurrency` workers; the service's own
/// stage timings are taken from `rec`.
pub async fn run<F, Fut>(
    scenario: &str,
    n: usize,
    concurrency: usize,
    rec: &Recorder,
    request: F,
) -> Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    rec.take();
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (request, next) = (request.clone(), next.clone());
        workers.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                request(i).await?;
                lat.push(t.elapsed());
            }
            Ok::<Vec<Duration>, anyhow::Error>(lat)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = workers.join_next().await {
        all.extend(r??);
    }
    let wall = start.elapsed();
    Ok(Run {
        scenario: scenario.to_owned(),
        concurrency,
        latency: Summary::of(&all),
        throughput: n as f64 / wall.as_secs_f64(),
        stages: stages(rec.take(), n),
        floor: None,
    })
}

/// Stage order in reports.
const ORDER: &[&str] = &[
    "service",
    "prepare",
    "mint",
    "backend",
    "journal",
    "journal-get",
    "reply",
];

fn stages(mut m: HashMap<&'static str, Vec<Duration>>, n: usize) -> Vec<(String, Summary, f64)> {
    let mut out = Vec::new();
    for name in ORDER {
        if let Some(v) = m.remove(name) {
            out.push((name.to_string(), Summary::of(&v), v.len() as f64 / n as f64));
        }
    }
    let mut rest: Vec<_> = m.into_iter().collect();
    rest.sort_by_key(|(k, _)| *k);
    for (name, v) in rest {
        out.push((name.to_owned(), Summary::of(&v), v.len() as f64 / n as f64));
    }
    out
}

//! Footprint scenarios, each in a process of its own so that its RSS is the service's:
//! 10,000 live leases (a child of this benchmark), and start-to-listening and idle RSS
//! of the real `paygress serve`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use jiff::Timestamp;
use paygress_core::memory::{MemoryBackend, MemoryVerifier};
use paygress_core::protocol::{Request, SpawnRequest};
use paygress_core::{
    Amount, DurationLimits, DynPodBackend, MintUrl, Paygress, Rate, Reply, RequestKey, Requester,
    ServiceConfig,
};
use paygress_store::FileJournal;
use serde_json::{Value, json};

use crate::stats::Summary;
use crate::timed::{Recorder, TimedBackend};
use paygress_k8s::fake::{NS, Served};

/// This process's resident set, KiB.
pub fn rss_kib(pid: Option<u32>) -> Result<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// This process's peak resident set, KiB.
pub fn peak_rss_kib() -> Result<u64> {
    std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM")
}

fn spawn_request(sats: u64, verifier: &MemoryVerifier, mint: &MintUrl) -> Request {
    Request::Spawn(SpawnRequest::new(
        verifier.mint_token(mint, Amount::sat(sats)),
    ))
}

/// The child: `n` live leases on `backend` (`memory`, or `k8s` on the fake API at
/// `api_url`), paid through the service (in-memory mint: this measures the service,
/// not cdk); then reaper passes and expiry lateness with the reaper every
/// `reap_interval`. Prints one JSON line.
pub async fn leases_child(
    n: usize,
    backend: &str,
    api_url: Option<&str>,
    reap_interval: Duration,
) -> Result<Value> {
    let rss_start = rss_kib(None)?;
    let rec = Recorder::default();
    let inner: DynPodBackend = match backend {
        "memory" => Arc::new(MemoryBackend::new()),
        "k8s" => {
            let url = api_url.context("--api URL")?;
            let mut config = kube::Config::new(url.parse().context("api url")?);
            config.default_namespace = NS.to_owned();
            // The client the service builds (its bound on requests in flight included).
            let client = paygress_k8s::client(config)?;
            let backend = paygress_k8s::K8sBackend::new(client, paygress_k8s::K8sConfig::default());
            // As the service's first reaper pass at startup does: the watches behind
            // `list` sync while there are no leases yet.
            backend.start_watch();
            let t = Instant::now();
            while !backend.watch_synced() {
                if t.elapsed() > Duration::from_secs(30) {
                    bail!("the lease watches did not sync within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Arc::new(backend)
        }
        other => bail!("unknown backend {other}"),
    };
    let timed = Arc::new(TimedBackend::new(inner, rec.clone()));
    let mint = MintUrl::new("http://127.0.0.1:1");
    let verifier = Arc::new(MemoryVerifier::new(vec![mint.clone()]));
    let dir = tempfile::tempdir()?;
    let journal = Arc::new(FileJournal::open(dir.path().join("journal.jsonl"))?);
    // One sat buys one second, from one second up: short leases for the expiry test.
    let config = ServiceConfig::default()
        .with_rate(Rate::from_sats_per_hour(3600).context("rate")?)
        .with_limits(DurationLimits {
            min_seconds: 1,
            max_seconds: 7 * 24 * 3600,
        });
    let service = Arc::new(
        Paygress::builder(config, verifier.clone(), timed.clone())
            .journal(journal)
            .build(),
    );
    let requester = Requester::new("bench", "buyer");
    let spawn_all = |count: usize, first: usize, sats: fn(usize) -> u64| {
        let (service, verifier, mint, requester) = (
            service.clone(),
            verifier.clone(),
            mint.clone(),
            requester.clone(),
        );
        async move {
            let replies: Vec<Reply> = futures::stream::iter(first..first + count)
                .map(|i| {
                    let req = spawn_request(sats(i), &verifier, &mint);
                    let (service, requester) = (service.clone(), requester.clone());
                    async move {
                        service
                            .handle(&RequestKey::new("bench", &format!("r{i}")), &requester, req)
                            .await
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            replies
        }
    };
    let t0 = Instant::now();
    let replies = spawn_all(n, 0, |_| 3600).await;
    let create_secs = t0.elapsed().as_secs_f64();
    let ok = replies
        .iter()
        .filter(|r| matches!(r, Reply::AccessDetails(_)))
        .count();
    if ok != n {
        bail!("{} of {n} spawns failed", n - ok);
    }
    let rss_leases = rss_kib(None)?;
    // Open descriptors: mostly the API client's pooled connections (HTTP/1.1, one per
    // request in flight at the busiest moment, kept idle for 90 s).
    let fds_leases = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    // The sweep at startup, which lists every object (the Job watch has just synced):
    // timed on its own, then the reaper passes over n live leases, none due, each with
    // the sweep that has nothing to look at.
    let t = Instant::now();
    paygress_core::PodBackend::sweep(timed.as_ref()).await?;
    let first_sweep = t.elapsed();
    let mut passes = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let removed = service.reap_expired().await?;
        passes.push(t.elapsed());
        if removed != 0 {
            bail!("reaped {removed} live leases");
        }
    }
    let pass = Summary::of(&passes);
    // Expiry lateness: short leases (2 to 5 s) among the n live ones, the service's
    // maintenance loop running all along, as in `paygress serve`: started before they
    // are paid, not after (creating 200 leases can take longer than the shortest of
    // them lasts, and a reaper started only then would count that wait as lateness).
    const SHORT: usize = 200;
    let maintenance = tokio::spawn(service.clone().run_maintenance(reap_interval));
    let short = spawn_all(SHORT, n, |i| 2 + (i % 4) as u64).await;
    let due: Vec<(paygress_core::LeaseId, Timestamp)> = short
        .iter()
        .filter_map(|r| match r {
            Reply::AccessDetails(a) => Some((a.pod_name.clone(), a.expires_at)),
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let deleted = timed.deleted();
        if deleted.len() >= due.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    maintenance.abort();
    let deleted = timed.deleted();
    let mut late = Vec::new();
    for (id, expires) in &due {
        match deleted.iter().find(|(d, _)| d == id) {
            Some((_, at)) => late.push(Duration::from_secs_f64(
                (at.as_millisecond() - expires.as_millisecond()).max(0) as f64 / 1e3,
            )),
            None => late.push(Duration::from_secs(30)),
        }
    }
    let lateness = Summary::of(&late);
    Ok(json!({
        "backend": backend,
        "leases": n,
        "create_secs": create_secs,
        "rss_start_kib": rss_start,
        "rss_leases_kib": rss_leases,
        "first_sweep_ms": first_sweep.as_secs_f64() * 1e3,
        "open_fds": fds_leases,
        "reap_pass_p50_ms": pass.p50,
        "reap_pass_max_ms": pass.max,
        "reap_interval_ms": reap_interval.as_millis() as u64,
        "expiring": due.len(),
        "expired_acted_on": deleted.len(),
        "lateness_p50_ms": lateness.p50,
        "lateness_p99_ms": lateness.p99,
        "lateness_max_ms": lateness.max,
    }))
}

/// Runs the leases child (this same executable) and returns its JSON.
pub async fn leases(
    n: usize,
    backend: &str,
    api: Option<&Served>,
    reap_interval: Duration,
) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "leases",
        "--n",
        &n.to_string(),
        "--backend",
        backend,
        "--reap-interval-ms",
        &reap_interval.as_millis().to_string(),
    ]);
    if let Some(api) = api {
        cmd.args(["--api", &api.url()]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().await?;
    if !out.status.success() {
        bail!("leases child failed ({})", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text
        .lines()
        .last()
        .context("no output from the leases child")?;
    Ok(serde_json::from_str(line)?)
}

/// What starting the real binary measured.
#[derive(Debug, Clone, Default)]
pub struct Startup {
    /// Which build: `release` or `dist` (the profile operators ship).
    pub build: String,
    /// Size of the executable, bytes.
    pub binary_bytes: u64,
    /// Spawn to first accepted TCP connection, ms.
    pub listening: Summary,
    /// Spawn to `/healthz` answering 200, ms.
    pub healthy: Summary,
    /// RSS after 3 s idle, KiB (median over runs).
    pub idle_rss_kib: u64,
    /// Of which anonymous memory (heap, stacks), KiB, of the same run.
    pub idle_anon_kib: u64,
    /// Of which mapped files (mostly the executable's own code), KiB, of the same run.
    pub idle_file_kib: u64,
}

/// `VmRSS`, `RssAnon` and `RssFile` of `pid`, KiB.
fn rss_parts(pid: u32) -> Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {name}"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

/// Stops `paygress serve` as an operator would (SIGTERM: it drains and exits), and
/// kills it if it has not exited within 20 s. An orderly exit also lets a profiler
/// wrapped around it (`cargo xtask startup-order`) write what it saw.
async fn stop(child: &mut tokio::process::Child, pid: u32) -> Result<()> {
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    if term.success()
        && tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .is_ok()
    {
        return Ok(());
    }
    child.kill().await?;
    Ok(())
}

/// Starts `paygress serve` (HTTP mode, Kubernetes backend on the fake API, the test
/// mint whitelisted) `runs` times.
pub async fn startup(
    build: &str,
    paygress: &Path,
    mint_url: &str,
    api: &Served,
    runs: usize,
) -> Result<Startup> {
    let mut listening = Vec::new();
    let mut healthy = Vec::new();
    let mut rss = Vec::new();
    let http = reqwest::Client::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig())?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let addr = format!("127.0.0.1:{port}");
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new(paygress)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUN_MODE", "http")
            .env("BIND_ADDR", &addr)
            .env("POD_BACKEND", "kubernetes")
            .env("KUBECONFIG", &kubeconfig)
            .env("PAYGRESS_DATA_DIR", dir.path().join("data"))
            .env("WHITELISTED_MINTS", mint_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("child pid")?;
        loop {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                listening.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("paygress did not listen within 20 s");
            }
            if let Some(status) = child.try_wait()? {
                bail!("paygress exited early ({status})");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        loop {
            let ok = http
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                healthy.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("paygress not healthy within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        rss.push(rss_parts(pid)?);
        stop(&mut child, pid).await?;
    }
    rss.sort_unstable();
    let (idle_rss_kib, idle_anon_kib, idle_file_kib) = rss[rss.len() / 2];
    Ok(Startup {
        build: build.to_owned(),
        binary_bytes: std::fs::metadata(paygress)?.len(),
        listening: Summary::of(&listening),
        healthy: Summary::of(&healthy),
        idle_rss_kib,
        idle_anon_kib,
        idle_file_kib,
    })
}

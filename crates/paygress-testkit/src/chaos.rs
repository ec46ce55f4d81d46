//! The chaos driver (feature `chaos`, `cargo xtask chaos`): runs the real `paygress`
//! binary in HTTP mode on the local backend against an in-process mint behind a
//! [`MintProxy`], pays it with real tokens, kills it (SIGKILL at random instants and
//! aborts at core's failpoints), restarts it on the same data directory, resends each
//! request as a client does (same `Idempotency-Key`, same body) and at the end checks
//! that no sat was lost or created:
//!
//! - per request: token value = lease time bought + change + refund (+ mint fees, zero
//!   here), every returned token redeems at the mint for its value, a refused token is
//!   still spendable;
//! - the service's wallet holds exactly the sum charged for leases (and it is real: it
//!   redeems);
//! - every lease the service lists was paid for and belongs to one request, no request
//!   got two leases, and no lease is reachable after its expiry;
//! - releases (some leases are released early by their owner, with the same kills and
//!   faults): the lease is gone, the refund redeems for its value, and it is worth at
//!   most the lease's time left when the release was first sent (the service's wallet
//!   then holds what was sold less what releases returned).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use paygress_cashu::cdk::nuts::Token;
use paygress_cashu::testkit::{Buyer, MintProxy, RandomFaults, TestMint, TokenFormat};
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::{Amount, CashuToken, Unit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// Price: one sat per second; every lease lasts exactly one minute.
const SATS_PER_HOUR: u64 = 3600;
const LEASE_SECONDS: u64 = 60;

/// What a chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Paid requests sent.
    pub requests: usize,
    /// Seed of every random choice (token values, kill instants, mint faults).
    pub seed: u64,
    /// The `paygress` binary (built with the `failpoints` feature).
    pub paygress: PathBuf,
    /// Probability, per request, of a SIGKILL at a random instant while it runs.
    pub kill_probability: f64,
    /// Probability of each failpoint firing when passed.
    pub failpoint_probability: f64,
    /// Probability, per swap, that the proxy loses the mint's answer (and again that
    /// it cuts the connection, and again that it delays it).
    pub swap_fault_probability: f64,
    /// Probability, per request, that the mint is unreachable for a moment.
    pub mint_down_probability: f64,
    /// Probability, per lease granted, that its owner releases it at once.
    pub release_probability: f64,
    /// First of the local backend's SSH ports (a range of 1000 is used).
    pub port_base: u16,
    /// Print each request's outcome.
    pub verbose: bool,
}

impl ChaosOptions {
    /// Defaults for `requests` requests with `seed`, driving `paygress`.
    pub fn new(requests: usize, seed: u64, paygress: PathBuf) -> Self {
        Self {
            requests,
            seed,
            paygress,
            kill_probability: 0.08,
            failpoint_probability: 0.03,
            swap_fault_probability: 0.04,
            mint_down_probability: 0.02,
            release_probability: 0.3,
            port_base: 31000,
            verbose: false,
        }
    }
}

/// The outcome of a run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Requests sent.
    pub requests: usize,
    /// HTTP sends, retries included.
    pub sends: u64,
    /// SIGKILLs sent by the driver.
    pub kills: u64,
    /// Aborts at failpoints (from the service's log).
    pub failpoint_aborts: u64,
    /// Service starts.
    pub starts: u64,
    /// Swap answers the proxy lost (502).
    pub swaps_lost: u64,
    /// Swap connections the proxy cut.
    pub swaps_cut: u64,
    /// Swap answers the proxy delayed.
    pub swaps_delayed: u64,
    /// Moments the mint was unreachable.
    pub mint_down: u64,
    /// Leases granted.
    pub leases: u64,
    /// Refund tokens returned.
    pub refunds: u64,
    /// Change tokens returned.
    pub changes: u64,
    /// Leases released early by their owner.
    pub releases: u64,
    /// Sum the release refunds redeemed for.
    pub released_sats: u64,
    /// Requests refused with the token untouched (still the buyer's).
    pub untouched: u64,
    /// Sum of the tokens' values.
    pub paid_sats: u64,
    /// Sum charged for leases.
    pub charged_sats: u64,
    /// Sum returned (change, refunds, untouched tokens), as redeemed at the mint.
    pub returned_sats: u64,
    /// Sats that went missing (buyer side).
    pub lost_sats: u64,
    /// Sats handed out beyond what was paid (operator side).
    pub over_returned_sats: u64,
    /// Requests that got more than one lease.
    pub double_provisions: u64,
    /// Leases the service listed that no request paid for.
    pub unpaid_leases: u64,
    /// Leases still reachable after their expiry.
    pub alive_after_expiry: u64,
    /// What the service's wallet holds at the end.
    pub wallet_sats: u64,
    /// Panics in the service's log.
    pub panics: u64,
    /// Every problem found, one line each.
    pub problems: Vec<String>,
    /// Where the service wallet disagrees with the leases sold (the operator's books).
    pub operator_problems: Vec<String>,
}

impl Report {
    /// Whether the run found no loss and no inconsistency.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.operator_problems.is_empty()
    }

    /// Whether every buyer got exactly their money's worth (lease time, change, refund)
    /// and no lease ran unpaid or twice; the operator's books are [`Report::ok`]'s other
    /// half.
    pub fn buyers_whole(&self) -> bool {
        self.problems.is_empty()
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let rows: Vec<(&str, String)> = vec![
            ("requests", self.requests.to_string()),
            ("HTTP sends (with resends)", self.sends.to_string()),
            ("service starts", self.starts.to_string()),
            ("SIGKILLs at random instants", self.kills.to_string()),
            ("aborts at failpoints", self.failpoint_aborts.to_string()),
            ("swap answers lost (502)", self.swaps_lost.to_string()),
            ("swap connections cut", self.swaps_cut.to_string()),
            ("swap answers delayed", self.swaps_delayed.to_string()),
            ("mint unreachable episodes", self.mint_down.to_string()),
            ("leases", self.leases.to_string()),
            ("change tokens", self.changes.to_string()),
            ("refund tokens", self.refunds.to_string()),
            ("leases released early", self.releases.to_string()),
            ("sats refunded for releases", self.released_sats.to_string()),
            ("refused, token untouched", self.untouched.to_string()),
            ("sats paid", self.paid_sats.to_string()),
            ("sats charged for leases", self.charged_sats.to_string()),
            ("sats returned (redeemed)", self.returned_sats.to_string()),
            ("service wallet balance", self.wallet_sats.to_string()),
            ("sats lost", self.lost_sats.to_string()),
            ("sats over-returned", self.over_returned_sats.to_string()),
            ("double provisions", self.double_provisions.to_string()),
            ("leases without payment", self.unpaid_leases.to_string()),
            (
                "leases alive after expiry",
                self.alive_after_expiry.to_string(),
            ),
            ("panics", self.panics.to_string()),
        ];
        let mut out = String::new();
        let _ = writeln!(out, "| {:<30} | {:>10} |", "chaos run", "");
        let _ = writeln!(out, "|{:-<32}|{:->12}|", "", "");
        for (k, v) in rows {
            let _ = writeln!(out, "| {k:<30} | {v:>10} |");
        }
        if self.ok() {
            let _ = writeln!(out, "\nno loss, no inconsistency");
        } else {
            let all: Vec<&String> = self
                .problems
                .iter()
                .chain(&self.operator_problems)
                .collect();
            let _ = writeln!(out, "\n{} problem(s):", all.len());
            for p in all {
                let _ = writeln!(out, "- {p}");
            }
        }
        out
    }
}

/// The service process, restarted on the same data directory.
struct Service {
    exe: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    http: String,
    bind: String,
    mint: String,
    ports: String,
    failpoints: String,
    seed: u64,
    child: Option<Child>,
    pid: Arc<AtomicU64>,
    starts: u64,
}

impl Service {
    async fn start(&mut self, with_failpoints: bool) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.starts += 1;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUN_MODE", "http")
            .env("BIND_ADDR", &self.bind)
            .env("POD_BACKEND", "local")
            .env("LOCAL_SANDBOX", "unsandboxed")
            .env("LOCAL_PORT_RANGE", &self.ports)
            .env("PAYGRESS_DATA_DIR", &self.data_dir)
            .env("WHITELISTED_MINTS", &self.mint)
            .env("PAYMENT_RATE_SATS_PER_HOUR", SATS_PER_HOUR.to_string())
            .env("MIN_POD_DURATION_MINUTES", "1")
            .env("MAX_POD_DURATION_MINUTES", "1")
            .env("SSH_HOST", "127.0.0.1")
            .env("HTTP_RATE_LIMIT_PER_MINUTE", "1000000")
            // Every second of a released lease's time left comes back.
            .env("RELEASE_MIN_CHARGE_MINUTES", "0")
            .env("RUST_LOG", "info,cdk=warn,russh=warn")
            .env(
                "PAYGRESS_FAILPOINTS_SEED",
                (self.seed + self.starts).to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if with_failpoints {
            cmd.env("PAYGRESS_FAILPOINTS", &self.failpoints);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        self.pid
            .store(u64::from(child.id().unwrap_or(0)), Ordering::SeqCst);
        self.child = Some(child);
        Ok(())
    }

    /// Starts the service if it is not running, and waits until it answers.
    async fn ensure_up(&mut self, client: &reqwest::Client, with_failpoints: bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let running = match self.child.as_mut() {
                Some(c) => c.try_wait()?.is_none(),
                None => false,
            };
            if !running {
                self.child = None;
                self.start(with_failpoints).await?;
            }
            let health = client
                .get(format!("{}/healthz", self.http))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(health, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the service did not come up; see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
}

/// Sends SIGKILL to `pid` (the `kill` command: the workspace forbids `unsafe`).
async fn sigkill(pid: u64) -> bool {
    if pid == 0 {
        return false;
    }
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

/// One paid request and what came back.
#[derive(Debug, Default)]
struct Outcome {
    value: u64,
    pods: HashSet<String>,
    ssh_ports: HashSet<u16>,
    expires: Vec<jiff::Timestamp>,
    charged: u64,
    change: Option<CashuToken>,
    refund: Option<CashuToken>,
    code: Option<String>,
    owed: bool,
    untouched: bool,
    release: Option<Release>,
}

/// A release of a request's lease by its owner.
#[derive(Debug)]
struct Release {
    /// The lease.
    pod: String,
    /// When the release was first sent (the driver's clock: the same machine's).
    sent_at: jiff::Timestamp,
    /// The lease's paid end at that moment.
    expires_at: jiff::Timestamp,
    /// Whether the service answered `released`.
    released: bool,
    /// The refund token.
    refund: Option<CashuToken>,
    /// What the answer says the refund is worth.
    amount: u64,
    /// A refund still owed (the mint could not issue it): ask again.
    owed: bool,
    /// The final error code, if refused.
    code: Option<String>,
}

impl Release {
    /// The most the release may return: the whole seconds left when it was sent, at one
    /// sat a second.
    fn bound(&self) -> u64 {
        let left = self.expires_at.duration_since(self.sent_at);
        u64::try_from(left.as_secs()).unwrap_or(0) + u64::from(left.subsec_nanos() > 0)
    }

    fn record(&mut self, v: &Value) {
        if v["type"] != "released" && v.get("refunded_seconds").is_none() {
            return;
        }
        self.released = true;
        self.code = None;
        self.refund = v["refund_token"].as_str().map(CashuToken::new);
        // Core's `Amount`, the same JSON over HTTP and Nostr: `{"value", "unit"}`.
        let amount = &v["refund_amount"];
        let value = amount["value"].as_u64().unwrap_or(0);
        self.amount = match amount["unit"].as_str() {
            Some("msat") => value / 1000,
            _ => value,
        };
        let note = v["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not be issued yet"));
        self.owed = self.refund.is_none() && note;
    }
}

/// The `Idempotency-Key` of request `i`'s release.
fn release_key(seed: u64, i: usize) -> String {
    format!("chaos-release-{seed:08}-{i:08}")
}

/// The `Idempotency-Key` of request `i` (its lease's owner key).
fn request_key(seed: u64, i: usize) -> String {
    format!("chaos-key-{seed:08}-{i:08}")
}

fn token_value(t: &CashuToken) -> u64 {
    Token::from_str(t.expose())
        .ok()
        .and_then(|t| t.value().ok())
        .map_or(0, |v| v.to_u64())
}

/// Codes after which a client sends the same request again.
fn resend_code(code: &str) -> bool {
    matches!(
        code,
        "payment_pending" | "refund_pending" | "unavailable" | "internal" | "rate_limited"
    )
}

/// Runs the chaos scenario and checks the books.
pub async fn run(opts: &ChaosOptions) -> Result<Report> {
    let mut report = Report {
        requests: opts.requests,
        ..Report::default()
    };
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mint = TestMint::start().await.context("starting the mint")?;
    let proxy = Arc::new(Mutex::new(
        MintProxy::start(&mint)
            .await
            .context("starting the proxy")?,
    ));
    let mint_url = proxy.lock().await.url();

    // Every token minted before faults are switched on.
    let mut values = Vec::with_capacity(opts.requests);
    for _ in 0..opts.requests {
        // Mostly enough for a lease with change; sometimes too little (refused untouched).
        let v = if rng.random_bool(0.05) {
            rng.random_range(20..LEASE_SECONDS)
        } else {
            rng.random_range(LEASE_SECONDS..=LEASE_SECONDS + 90)
        };
        values.push(v);
    }
    // In chunks, each from a fresh wallet: selecting proofs in one big wallet slows
    // down with every send.
    let mut tokens = Vec::with_capacity(opts.requests);
    for chunk in values.chunks(25) {
        let buyer = Buyer::new(&mint_url, Unit::Sat).await?;
        buyer.fund(chunk.iter().sum::<u64>()).await?;
        for v in chunk {
            tokens.push(buyer.send(*v, TokenFormat::V4).await?);
        }
    }

    let work = tempfile::Builder::new()
        .prefix("paygress-chaos-")
        .tempdir()?;
    let data_dir = work.path().join("data");
    // Private, as the service requires of an existing data directory.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_dir)?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let ports = (opts.port_base, opts.port_base + 999);
    let failpoints = paygress_core::failpoint::POINTS
        .iter()
        .map(|p| format!("{p}:{}", opts.failpoint_probability))
        .collect::<Vec<_>>()
        .join(",");
    let pid = Arc::new(AtomicU64::new(0));
    let mut service = Service {
        exe: opts.paygress.clone(),
        data_dir: data_dir.clone(),
        log: work.path().join("service.log"),
        http: format!("http://127.0.0.1:{port}"),
        bind: format!("127.0.0.1:{port}"),
        mint: mint_url.to_string(),
        ports: format!("{}-{}", ports.0, ports.1),
        failpoints,
        seed: opts.seed,
        child: None,
        pid: pid.clone(),
        starts: 0,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    service.ensure_up(&client, true).await?;

    proxy.lock().await.set_random(Some(RandomFaults {
        lose: opts.swap_fault_probability,
        drop: opts.swap_fault_probability,
        delay: opts.swap_fault_probability,
        delay_for: Duration::from_millis(300),
        seed: opts.seed,
    }));
    let kills = Arc::new(AtomicU64::new(0));
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(opts.requests);
    let started = Instant::now();
    for (i, token) in tokens.iter().enumerate() {
        let mut out = Outcome {
            value: values[i],
            ..Outcome::default()
        };
        let key = request_key(opts.seed, i);
        let body = json!({
            "cashu_token": token.expose(),
            "duration_minutes": if rng.random_bool(0.5) { Some(1) } else { None },
            "ssh_username": "chaos",
        });
        if rng.random_bool(opts.mint_down_probability) {
            report.mint_down += 1;
            proxy.lock().await.down().await;
            let p = proxy.clone();
            let wait = Duration::from_millis(rng.random_range(100..800));
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = p.lock().await.up().await;
            });
        }
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > 200 {
                report
                    .problems
                    .push(format!("request {i}: no final answer after 200 sends"));
                break;
            }
            service.ensure_up(&client, true).await?;
            if rng.random_bool(opts.kill_probability) {
                let (pid, kills) = (pid.clone(), kills.clone());
                let wait = Duration::from_millis(rng.random_range(0..120));
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if sigkill(pid.load(Ordering::SeqCst)).await {
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            report.sends += 1;
            let sent = client
                .post(format!("{}/spawn-pod", service.http))
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            let Ok(resp) = sent else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let status = resp.status();
            let Ok(v) = resp.json::<Value>().await else {
                continue;
            };
            if status.as_u16() == 201 {
                record_lease(&mut out, &v);
                if out.owed {
                    // Change owed: ask again later.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                break;
            }
            let code = v["code"].as_str().unwrap_or("").to_owned();
            if let Some(r) = v["refund_token"].as_str() {
                out.refund = Some(CashuToken::new(r));
                out.code = Some(code);
                break;
            }
            if resend_code(&code) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            out.code = Some(code);
            out.untouched = true;
            break;
        }
        if let (Some(pod), Some(expires_at)) = (out.pods.iter().next(), out.expires.last())
            && out.pods.len() == 1
            && rng.random_bool(opts.release_probability)
        {
            let mut release = Release {
                pod: pod.clone(),
                sent_at: jiff::Timestamp::now(),
                expires_at: *expires_at,
                released: false,
                refund: None,
                amount: 0,
                owed: false,
                code: None,
            };
            let rkey = release_key(opts.seed, i);
            let mut tries = 0;
            loop {
                tries += 1;
                if tries > 200 {
                    report.problems.push(format!(
                        "request {i}: release has no final answer after 200 sends"
                    ));
                    break;
                }
                service.ensure_up(&client, true).await?;
                if rng.random_bool(opts.kill_probability) {
                    let (pid, kills) = (pid.clone(), kills.clone());
                    let wait = Duration::from_millis(rng.random_range(0..120));
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        if sigkill(pid.load(Ordering::SeqCst)).await {
                            kills.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
                report.sends += 1;
                let sent = client
                    .post(format!("{}/pods/{}/release", service.http, release.pod))
                    .header("X-Lease-Key", &key)
                    .header("Idempotency-Key", &rkey)
                    .send()
                    .await;
                let Ok(resp) = sent else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let status = resp.status();
                let Ok(v) = resp.json::<Value>().await else {
                    continue;
                };
                if status.is_success() {
                    release.record(&v);
                    if release.owed {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    break;
                }
                let code = v["code"].as_str().unwrap_or("").to_owned();
                if resend_code(&code) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                release.code = Some(code);
                break;
            }
            if release.released {
                // Gone at once.
                let gone = client
                    .get(format!("{}/pods/{}", service.http, release.pod))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                if !matches!(gone, Ok(404)) {
                    report.problems.push(format!(
                        "request {i}: lease {} still listed after its release ({gone:?})",
                        release.pod
                    ));
                }
            }
            out.release = Some(release);
        }
        if opts.verbose {
            eprintln!(
                "request {i}: value {} pods {:?} charged {} change {} refund {} code {:?}",
                out.value,
                out.pods,
                out.charged,
                out.change.as_ref().map_or(0, token_value),
                out.refund.as_ref().map_or(0, token_value),
                out.code
            );
            if let Some(r) = &out.release {
                eprintln!(
                    "request {i}: released {} refund {} (at most {}) code {:?}",
                    r.released,
                    r.refund.as_ref().map_or(0, token_value),
                    r.bound(),
                    r.code
                );
            }
        }
        outcomes.push(out);
    }
    let elapsed = started.elapsed();
    report.kills = kills.load(Ordering::Relaxed);

    // Calm: no more faults. Owed change is fetched again; leases listed.
    proxy.lock().await.set_random(None);
    proxy.lock().await.up().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.ensure_up(&client, false).await?;
    // A failpoint may be armed in the running process: restart without failpoints.
    service.stop().await;
    service.ensure_up(&client, false).await?;
    for (i, out) in outcomes.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while out.owed && Instant::now() < deadline {
            let key = format!("chaos-key-{:08}-{i:08}", opts.seed);
            let body = json!({"cashu_token": tokens[i].expose(), "ssh_username": "chaos"});
            if let Ok(r) = client
                .post(format!("{}/spawn-pod", service.http))
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
            {
                record_lease(out, &v);
            }
            if out.owed {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if out.owed {
            report
                .problems
                .push(format!("request {i}: change still owed after the run"));
        }
        let lease_key = request_key(opts.seed, i);
        if let Some(release) = out.release.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while release.owed && Instant::now() < deadline {
                if let Ok(r) = client
                    .post(format!("{}/pods/{}/release", service.http, release.pod))
                    .header("X-Lease-Key", &lease_key)
                    .header("Idempotency-Key", release_key(opts.seed, i))
                    .send()
                    .await
                    && let Ok(v) = r.json::<Value>().await
                {
                    release.record(&v);
                }
                if release.owed {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if release.owed {
                report.problems.push(format!(
                    "request {i}: release refund still owed after the run"
                ));
            }
        }
    }
    let listed: Vec<Value> = client
        .get(format!("{}/pods", service.http))
        .send()
        .await?
        .json()
        .await?;

    // Leases: one per request at most, every listed one paid for.
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, out) in outcomes.iter().enumerate() {
        if out.pods.len() > 1 {
            report.double_provisions += 1;
            report
                .problems
                .push(format!("request {i} got {} leases", out.pods.len()));
        }
        for p in &out.pods {
            if let Some(j) = owner.insert(p, i) {
                report.double_provisions += 1;
                report
                    .problems
                    .push(format!("lease {p} granted to requests {j} and {i}"));
            }
        }
    }
    for l in &listed {
        let name = l["pod_name"].as_str().unwrap_or_default();
        if !owner.contains_key(name) {
            report.unpaid_leases += 1;
            report
                .problems
                .push(format!("lease {name} is listed but no request got it"));
        }
    }

    // Money per request: returned tokens redeem for their value.
    let mut payee = Buyer::new(&mint_url, Unit::Sat).await?;
    for (i, out) in outcomes.iter().enumerate() {
        if i % 25 == 24 {
            // A fresh wallet now and then: one wallet slows down as proofs pile up.
            payee = Buyer::new(&mint_url, Unit::Sat).await?;
        }
        report.paid_sats += out.value;
        if !out.pods.is_empty() {
            report.leases += 1;
        }
        report.charged_sats += out.charged;
        let mut returned = 0;
        for (kind, t) in [("change", &out.change), ("refund", &out.refund)] {
            let Some(t) = t else { continue };
            if kind == "change" {
                report.changes += 1;
            } else {
                report.refunds += 1;
            }
            let face = token_value(t);
            match payee.redeem(t).await {
                Ok(got) => {
                    returned += got;
                    if got != face {
                        report
                            .problems
                            .push(format!("request {i}: {kind} of {face} redeemed for {got}"));
                    }
                }
                Err(e) => report
                    .problems
                    .push(format!("request {i}: {kind} token does not redeem: {e}")),
            }
        }
        if out.untouched && out.refund.is_none() {
            match payee.redeem(&tokens[i]).await {
                Ok(got) => {
                    report.untouched += 1;
                    returned += got;
                }
                Err(e) => report.problems.push(format!(
                    "request {i}: refused ({:?}) but its token is gone: {e}",
                    out.code
                )),
            }
        }
        if let Some(release) = &out.release {
            if release.released {
                report.releases += 1;
            }
            if let Some(t) = &release.refund {
                let face = token_value(t);
                match payee.redeem(t).await {
                    Ok(got) => {
                        report.released_sats += got;
                        if got != face || got != release.amount {
                            report.problems.push(format!(
                                "request {i}: release refund of {} (token face {face}) redeemed for {got}",
                                release.amount
                            ));
                        }
                        if got > release.bound() {
                            report.operator_problems.push(format!(
                                "request {i}: release returned {got} but only {} s were left",
                                release.bound()
                            ));
                        }
                    }
                    Err(e) => report
                        .problems
                        .push(format!("request {i}: release refund does not redeem: {e}")),
                }
            }
        }
        report.returned_sats += returned;
        let accounted = out.charged + returned;
        if accounted < out.value {
            report.lost_sats += out.value - accounted;
            report.problems.push(format!(
                "request {i}: paid {} but got {} of lease time and {} back ({:?})",
                out.value, out.charged, returned, out.code
            ));
        } else if accounted > out.value {
            report.over_returned_sats += accounted - out.value;
            report.problems.push(format!(
                "request {i}: paid {} but got {} of lease time and {} back",
                out.value, out.charged, returned
            ));
        }
    }

    // Expiry: after the last lease's end (and the backend's own timers), none is
    // reachable.
    let last = outcomes
        .iter()
        .flat_map(|o| o.expires.iter())
        .max()
        .copied();
    if let Some(last) = last {
        let wait = (last.as_second() - jiff::Timestamp::now().as_second()).max(0) as u64 + 5;
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let all_ports: HashSet<u16> = outcomes
            .iter()
            .flat_map(|o| o.ssh_ports.iter().copied())
            .collect();
        loop {
            let mut alive = 0;
            for p in &all_ports {
                if tokio::net::TcpStream::connect(("127.0.0.1", *p))
                    .await
                    .is_ok()
                {
                    alive += 1;
                }
            }
            if alive == 0 || Instant::now() > deadline {
                report.alive_after_expiry = alive;
                if alive > 0 {
                    report
                        .problems
                        .push(format!("{alive} lease port(s) still open after expiry"));
                }
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    // The service's wallet holds what leases were sold for, in real proofs.
    service.stop().await;
    let log = std::fs::read_to_string(&service.log).unwrap_or_default();
    report.failpoint_aborts = log
        .lines()
        .filter(|l| l.contains("fired; aborting"))
        .count() as u64;
    report.panics = log.lines().filter(|l| l.contains("panicked")).count() as u64;
    if report.panics > 0 {
        report
            .problems
            .push(format!("{} panic(s) in the service log", report.panics));
    }
    report.starts = service.starts;
    let stats = proxy.lock().await.stats();
    report.swaps_lost = stats.lost;
    report.swaps_cut = stats.dropped;
    report.swaps_delayed = stats.delayed;
    report.wallet_sats = wallet_balance(&data_dir, &mint_url.to_string(), &payee).await?;
    let kept = report.charged_sats.saturating_sub(report.released_sats);
    if report.wallet_sats != kept {
        report.operator_problems.push(format!(
            "the service wallet holds {} but leases were sold for {} and releases returned {}",
            report.wallet_sats, report.charged_sats, report.released_sats
        ));
    }
    if opts.verbose {
        eprintln!("requests phase took {elapsed:?}");
    }
    if !report.ok() {
        // Keep the evidence (noted with the problems of the side that failed).
        let kept = work.keep();
        let note = format!("service data and log kept in {}", kept.display());
        if report.problems.is_empty() {
            report.operator_problems.push(note);
        } else {
            report.problems.push(note);
        }
    }
    drop(mint);
    Ok(report)
}

fn record_lease(out: &mut Outcome, v: &Value) {
    let Some(pod) = v["pod_name"].as_str() else {
        return;
    };
    out.pods.insert(pod.to_owned());
    if let Some(p) = v["ssh_port"].as_u64().and_then(|p| u16::try_from(p).ok()) {
        out.ssh_ports.insert(p);
    }
    if let Some(t) = v["expires_at"].as_str().and_then(|t| t.parse().ok()) {
        out.expires.push(t);
    }
    let seconds = v["duration_seconds"].as_u64().unwrap_or(0);
    out.charged = seconds * SATS_PER_HOUR / 3600;
    out.code = None;
    out.change = v["change_token"].as_str().map(CashuToken::new);
    let owed_note = v["instructions"].as_array().is_some_and(|a| {
        a.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.contains("could not be issued yet"))
        })
    });
    out.owed = out.change.is_none() && owed_note;
}

/// Opens the stopped service's wallet, and moves its whole balance to `payee` (proving
/// it real); returns the balance.
async fn wallet_balance(data_dir: &Path, mint: &str, payee: &Buyer) -> Result<u64> {
    let config = CashuConfig::new(data_dir.join("cashu.db"), [mint.to_owned()])?;
    let wallet = CashuVerifier::open(&config).await?;
    for (m, unit, e) in wallet.warm_up().await {
        if unit == Unit::Sat {
            bail!("wallet at {m}: {e}");
        }
    }
    let held: u64 = wallet
        .balances()
        .await?
        .iter()
        .filter(|b| b.amount.unit == Unit::Sat)
        .map(|b| b.amount.value)
        .sum();
    if held > 0 {
        let token = wallet.send(Amount::sat(held), None).await?;
        let got = payee.redeem(&token).await?;
        if got != held {
            bail!("the wallet's balance of {held} redeemed for {got}");
        }
    }
    Ok(held)
}

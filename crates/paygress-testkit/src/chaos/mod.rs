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
//!
//! - `service`: the service process, killed and restarted;
//! - `requests`: the driver sending each request until its answer is final;
//! - `outcome`: what each request got back;
//! - `books`: the checks at the end;
//! - `report`: the [`Report`] and its table.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use paygress_cashu::testkit::{Buyer, MintProxy, RandomFaults, TestMint, TokenFormat};
use paygress_core::{CashuToken, MintUrl, Unit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::sync::Mutex;

mod books;
mod outcome;
mod report;
mod requests;
mod service;

pub use report::Report;
use requests::Driver;
use service::Service;

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
    let (values, tokens) = buy_tokens(opts, &mut rng, &mint_url).await?;

    let work = tempfile::Builder::new()
        .prefix("paygress-chaos-")
        .tempdir()?;
    let data_dir = work.path().join("data");
    // Private, as the service requires of an existing data directory.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_dir)?;
    let service = Service::new(opts, work.path(), &data_dir, &mint_url.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let mut driver = Driver {
        opts,
        rng,
        service,
        client,
        proxy: proxy.clone(),
        kills: Arc::new(AtomicU64::new(0)),
    };
    driver.service.ensure_up(&driver.client, true).await?;

    proxy.lock().await.set_random(Some(RandomFaults {
        lose: opts.swap_fault_probability,
        drop: opts.swap_fault_probability,
        delay: opts.swap_fault_probability,
        delay_for: Duration::from_millis(300),
        seed: opts.seed,
    }));
    let mut outcomes = Vec::with_capacity(opts.requests);
    let started = Instant::now();
    for (i, token) in tokens.iter().enumerate() {
        outcomes.push(driver.request(i, token, values[i], &mut report).await?);
    }
    let elapsed = started.elapsed();
    report.kills = driver.kills.load(Ordering::Relaxed);

    // Calm: no more faults. Owed change is fetched again; leases listed.
    proxy.lock().await.set_random(None);
    proxy.lock().await.up().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    driver.service.ensure_up(&driver.client, false).await?;
    // A failpoint may be armed in the running process: restart without failpoints.
    driver.service.stop().await;
    driver.service.ensure_up(&driver.client, false).await?;
    driver
        .collect_owed(&mut outcomes, &tokens, &mut report)
        .await;
    let listed: Vec<Value> = driver
        .client
        .get(format!("{}/pods", driver.service.http))
        .send()
        .await?
        .json()
        .await?;

    books::check_leases(&outcomes, &listed, &mut report);
    let payee = books::check_money(&outcomes, &tokens, &mint_url, &mut report).await?;
    books::check_expiry(&outcomes, &mut report).await;

    // The service's wallet holds what leases were sold for, in real proofs.
    let mut service = driver.service;
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
    report.wallet_sats = books::wallet_balance(&data_dir, &mint_url.to_string(), &payee).await?;
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

/// Every token of the run, minted before faults are switched on: their values, and
/// the tokens.
async fn buy_tokens(
    opts: &ChaosOptions,
    rng: &mut StdRng,
    mint_url: &MintUrl,
) -> Result<(Vec<u64>, Vec<CashuToken>)> {
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
        let buyer = Buyer::new(mint_url, Unit::Sat).await?;
        buyer.fund(chunk.iter().sum::<u64>()).await?;
        for v in chunk {
            tokens.push(buyer.send(*v, TokenFormat::V4).await?);
        }
    }
    Ok((values, tokens))
}

//! Redeem latency and throughput against the in-process test mint.
//!
//! ```text
//! cargo run --release -p paygress-cashu --features test-mint --example bench_redeem -- --n 200
//! ```
//!
//! Prints p50/p99 latency and throughput for N sequential redeems and for N redeems
//! started at once, plus how many HTTP requests the mint served per redeem.

use std::time::{Duration, Instant};

use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::secret::CashuToken;

const AMOUNT: u64 = 8;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(label: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<11} n={:<5} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms  throughput={:>8.1} redeems/s",
        lat.len(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
        lat.len() as f64 / wall.as_secs_f64()
    );
}

async fn tokens(mint: &TestMint, n: usize) -> Vec<CashuToken> {
    let buyer = mint.buyer().await.expect("buyer");
    buyer.fund(AMOUNT * n as u64).await.expect("fund");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let format = if i % 2 == 0 {
            TokenFormat::V4
        } else {
            TokenFormat::V3
        };
        out.push(buyer.send(AMOUNT, format).await.expect("send"));
    }
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = arg("--n", 200).max(1);
    let mint = TestMint::start().await.expect("mint");
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("cashu.db"), [mint.url().as_str()]).expect("config");
    let verifier = CashuVerifier::open(&config).await.expect("verifier");

    eprintln!("minting {} tokens of {AMOUNT} sat ...", 2 * n + 1);
    let mut all = tokens(&mint, 2 * n + 1).await;
    let warm = all.pop().expect("token");
    verifier.receive(&warm).await.expect("warm-up redeem");
    let concurrent = all.split_off(n);
    let sequential = all;

    mint.requests().clear();
    let start = Instant::now();
    let mut lat = Vec::with_capacity(n);
    for t in &sequential {
        let t0 = Instant::now();
        verifier.receive(t).await.expect("redeem");
        lat.push(t0.elapsed());
    }
    let wall = start.elapsed();
    let requests = mint.requests().all().len();
    report("sequential", lat, wall);

    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in concurrent {
        let v = verifier.clone();
        set.spawn(async move {
            let t0 = Instant::now();
            v.receive(&t).await.expect("redeem");
            t0.elapsed()
        });
    }
    let mut lat = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        lat.push(r.expect("join"));
    }
    let wall = start.elapsed();
    report("concurrent", lat, wall);

    println!(
        "mint HTTP requests per sequential redeem: {:.2}",
        requests as f64 / n as f64
    );
    let total: u64 = verifier
        .balances()
        .await
        .expect("balances")
        .iter()
        .map(|b| b.amount.value)
        .sum();
    println!(
        "wallet balance: {total} sat (expected {})",
        AMOUNT * (2 * n as u64 + 1)
    );
}

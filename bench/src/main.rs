//! `cargo xtask bench`: every scenario of issue 18 against the real adapters on
//! 127.0.0.1 (in-process cdk mint, in-process relay, a fake Kubernetes API), the
//! service's own per-stage timings, a latency-against-concurrency PNG, and
//! `docs/BENCHMARKS.md`.
//!
//! ```text
//! paygress-bench run [--quick] [--paygress PATH] [--paygress-dist PATH] [--out docs/BENCHMARKS.md]
//!                    [--only http,nostr,k8s0,k8s25,login,leases]
//! paygress-bench leases --n 10000 --backend memory|k8s [--api URL] [--reap-interval-ms MS]
//!                    (k8s without --api: a fake API in this process, the leases in a child)
//! ```

mod footprint;
mod load;
mod login;
mod plot;
mod report;
mod scenarios;
mod stack;
mod stats;
mod timed;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use paygress_cashu::testkit::TestMint;
use paygress_core::DynPodBackend;
use paygress_core::memory::MemoryBackend;
use paygress_nostr::testkit::TestRelay;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

use crate::load::Run;
use crate::report::Report;
use crate::stack::{Stack, tokens};
use crate::timed::{Recorder, RequestSpanTimer};
use paygress_k8s::fake::{Fake, Served};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("leases") => runtime.block_on(async {
            let n = flag(&args, "--n").map_or(Ok(10_000), |v| v.parse())?;
            let backend = flag(&args, "--backend").unwrap_or_else(|| "memory".to_owned());
            let api = flag(&args, "--api");
            let interval = flag(&args, "--reap-interval-ms").map_or(Ok(1000), |v| v.parse())?;
            let interval = Duration::from_millis(interval);
            let out = if backend == "k8s" && api.is_none() {
                // No API given: a fake one here, the leases in a child of their own.
                let served = Fake::serve(Duration::ZERO).await?;
                let mut out = footprint::leases(n, &backend, Some(&served), interval).await?;
                // This process is the fake API server, still holding the child's leases.
                out["api_rss_kib"] = serde_json::json!(footprint::rss_kib(None)?);
                out["api_rss_peak_kib"] = serde_json::json!(footprint::peak_rss_kib()?);
                out["api_calls"] = serde_json::json!(served.fake().tally());
                out
            } else {
                footprint::leases_child(n, &backend, api.as_deref(), interval).await?
            };
            println!("{out}");
            Ok(())
        }),
        // Flags alone (`paygress-bench --quick`) mean `run`.
        Some("run") | None => runtime.block_on(run(&args)),
        Some(flag) if flag.starts_with("--") => runtime.block_on(run(&args)),
        Some(other) => anyhow::bail!("unknown command {other:?}; use `run` or `leases`"),
    }
}

/// Request counts per concurrency level.
struct Sizes {
    scale: f64,
}

impl Sizes {
    fn n(&self, full: usize) -> usize {
        ((full as f64 * self.scale) as usize).max(10)
    }
}

async fn run(args: &[String]) -> Result<()> {
    let rec = Recorder::default();
    tracing_subscriber::registry()
        .with(
            RequestSpanTimer(rec.clone())
                .with_filter(Targets::new().with_target("paygress_core", tracing::Level::INFO)),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // cdk's slow-query warnings would flood the output under load.
                .with_filter(
                    Targets::new()
                        .with_default(LevelFilter::WARN)
                        .with_target("cdk_sql_common", LevelFilter::ERROR),
                ),
        )
        .init();
    let quick = args.iter().any(|a| a == "--quick");
    let sizes = Sizes {
        scale: match flag(args, "--scale") {
            Some(v) => v.parse().context("--scale takes a number")?,
            None if quick => 0.2,
            None => 1.0,
        },
    };
    let out = PathBuf::from(flag(args, "--out").unwrap_or_else(|| "docs/BENCHMARKS.md".to_owned()));
    let paygress = flag(args, "--paygress").map(PathBuf::from);
    let paygress_dist = flag(args, "--paygress-dist").map(PathBuf::from);
    let mut report = Report::new(args);

    let mint = TestMint::start().await?;
    let relay = TestRelay::start().await?;
    // `--only a,b`: just those scenarios (the floors always run).
    let only = flag(args, "--only");
    let wanted = |s: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == s));
    let levels = [1usize, 10, 100];
    let mut plan: Vec<(&str, [usize; 3])> = vec![
        ("http", [100, 300, 600]),
        ("nostr", [50, 200, 400]),
        ("k8s0", [100, 300, 600]),
        ("k8s25", [50, 200, 400]),
    ];
    plan.retain(|(kind, _)| wanted(kind));
    let top_ups = if wanted("http") {
        [sizes.n(100), sizes.n(200)]
    } else {
        [0, 0]
    };
    let swaps = sizes.n(50);
    // The mint alone at the load the throughput goal is judged at (concurrency 10).
    let rate_swaps = if wanted("k8s0") { sizes.n(300) } else { 0 };
    let total: usize = plan
        .iter()
        .flat_map(|(_, ns)| ns.iter().map(|&n| sizes.n(n)))
        .sum::<usize>()
        + top_ups.iter().sum::<usize>()
        + swaps
        + rate_swaps;
    eprintln!("bench: minting {total} tokens ...");
    let t = std::time::Instant::now();
    let mut spawn_tokens = tokens(&mint, total - top_ups.iter().sum::<usize>(), 2).await?;
    let mut top_up_tokens = tokens(&mint, top_ups.iter().sum(), 1).await?;
    eprintln!("bench: minted in {:.1} s", t.elapsed().as_secs_f64());
    let mut take = |n: usize| spawn_tokens.split_off(spawn_tokens.len() - n);

    // Floors.
    eprintln!("bench: floors ...");
    let swap = scenarios::floor_swap(&mint, take(swaps)).await?;
    if rate_swaps > 0 {
        let r = scenarios::floor_swap_rate(&mint, take(rate_swaps), 10, &rec).await?;
        eprintln!(
            "bench:   the mint alone, 10 at a time: {:.1} swaps/s",
            r.throughput
        );
        report.swap_rate = Some(r);
    }
    let relay_rt = match scenarios::floor_relay(&relay, 50).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: relay floor not measured: {e:#}");
            stats::Summary::default()
        }
    };
    let api0 = Fake::serve(Duration::ZERO).await?;
    let api25 = Fake::serve(Duration::from_millis(25)).await?;
    let call0 = scenarios::floor_api(&api0, 50).await?;
    let call25 = scenarios::floor_api(&api25, 20).await?;
    report.floors = vec![
        (
            "one swap (cdk wallet receive) against the in-process mint".to_owned(),
            swap,
        ),
        (
            "one relay round trip (publish, receive on a subscription)".to_owned(),
            relay_rt,
        ),
        (
            "one API call, fake Kubernetes API at 0 ms".to_owned(),
            call0,
        ),
        (
            "one API call, fake Kubernetes API at 25 ms".to_owned(),
            call25,
        ),
    ];

    let mut runs: Vec<Run> = Vec::new();
    for (kind, ns) in &plan {
        let (backend, floor): (DynPodBackend, (String, f64)) = match *kind {
            "http" | "nostr" => (
                Arc::new(MemoryBackend::new()),
                ("swap".to_owned(), swap.p50),
            ),
            "k8s0" | "k8s25" => {
                let api = if *kind == "k8s0" { &api0 } else { &api25 };
                let call = if *kind == "k8s0" { call0 } else { call25 };
                (
                    Arc::new(paygress_k8s::K8sBackend::new(
                        api.client()?,
                        paygress_k8s::K8sConfig::default(),
                    )),
                    ("swap + 1 API call".to_owned(), swap.p50 + call.p50),
                )
            }
            _ => unreachable!(),
        };
        let stack =
            Stack::start(&mint, backend, (*kind == "nostr").then_some(&relay), &rec).await?;
        let (name, floor) = match *kind {
            "http" => ("HTTP spawn (memory backend)", floor),
            "nostr" => (
                "Nostr spawn (memory backend)",
                (
                    "swap + relay round trip".to_owned(),
                    swap.p50 + relay_rt.p50,
                ),
            ),
            "k8s0" => ("HTTP spawn, k8s backend, API 0 ms", floor),
            _ => ("HTTP spawn, k8s backend, API 25 ms", floor),
        };
        let mut leases = Vec::new();
        for (level, &n) in levels.iter().zip(ns.iter()) {
            let n = sizes.n(n);
            eprintln!("bench: {name}, concurrency {level}, {n} requests ...");
            let syncs = stack.journal.syncs();
            let written = stack.journal.write_time();
            let api_calls = match *kind {
                "k8s0" => Some(&api0),
                "k8s25" => Some(&api25),
                _ => None,
            };
            let calls = api_calls.map(Served::calls).unwrap_or_default();
            let mut run = if *kind == "nostr" {
                scenarios::nostr_spawns(&stack, &relay, take(n), *level, &rec).await?
            } else {
                let (run, made) =
                    scenarios::http_spawns(name, &stack, take(n), *level, &rec).await?;
                leases.extend(made);
                run
            };
            let fsyncs = (stack.journal.syncs() - syncs) as f64 / n as f64;
            run.stages.push((
                "fsyncs per request".to_owned(),
                stats::Summary::default(),
                fsyncs,
            ));
            // The disk's share of the journal's time (the rest is waiting for a turn).
            let written = (stack.journal.write_time() - written).as_secs_f64() * 1e3;
            run.stages.push((
                "journal disk ms per request".to_owned(),
                stats::Summary::default(),
                written / n as f64,
            ));
            if let Some(api) = api_calls {
                run.stages.push((
                    "API calls per request".to_owned(),
                    stats::Summary::default(),
                    (api.calls() - calls) as f64 / n as f64,
                ));
            }
            run.floor = Some(floor.clone());
            eprintln!(
                "bench:   p50 {:.1} ms, p99 {:.1} ms, {:.1}/s",
                run.latency.p50, run.latency.p99, run.throughput
            );
            runs.push(run);
        }
        if *kind == "http" {
            for (level, n) in [(1usize, top_ups[0]), (10, top_ups[1])] {
                eprintln!("bench: HTTP top-up, concurrency {level}, {n} requests ...");
                let toks = top_up_tokens.split_off(top_up_tokens.len() - n);
                let mut run =
                    scenarios::http_top_ups(&stack, leases.clone(), toks, level, &rec).await?;
                run.floor = Some(floor.clone());
                runs.push(run);
            }
        }
        stack.shutdown().await;
    }
    report.runs = runs;

    if wanted("login") {
        let n = if quick { 5 } else { 20 };
        eprintln!("bench: payment to login over Nostr, local backend, {n} runs ...");
        let l = login::payment_to_login(&mint, &relay, &rec, n, relay_rt, swap).await?;
        eprintln!(
            "bench:   p50 {:.1} ms (to reply {:.1} + to login {:.1}), p99 {:.1} ms; floor {}",
            l.total.p50,
            l.to_reply.p50,
            l.to_login.p50,
            l.total.p99,
            l.floor()
                .map_or("not measured".to_owned(), |f| format!("{f:.1} ms"))
        );
        report.login = Some(l);
    }

    if wanted("leases") {
        eprintln!("bench: 10,000 live leases (memory backend) ...");
        let n_leases = ((10_000.0 * sizes.scale) as usize).clamp(500, 10_000);
        report
            .leases
            .push(footprint::leases(n_leases, "memory", None, Duration::from_secs(1)).await?);
        eprintln!("bench: 10,000 live leases (k8s backend, fake API 0 ms) ...");
        let api_leases = Fake::serve(Duration::ZERO).await?;
        let mut k8s =
            footprint::leases(n_leases, "k8s", Some(&api_leases), Duration::from_secs(1)).await?;
        k8s["api_calls"] = serde_json::json!(api_leases.fake().tally());
        report.leases.push(k8s);
        drop(api_leases);
    }

    // The release build the load ran on, and the `dist` build operators ship; idle: on a
    // fake API of its own, without the leases the scenarios above left on theirs (a
    // service starting beside a thousand leases lists, reaps and sweeps them first).
    let api_idle = Fake::serve(Duration::ZERO).await?;
    let builds = [("release", paygress), ("dist", paygress_dist)];
    for (build, bin) in builds {
        let Some(bin) = bin else { continue };
        eprintln!(
            "bench: start-to-listening and idle RSS of {} ...",
            bin.display()
        );
        report.startup.push(
            footprint::startup(
                build,
                &bin,
                &mint.url().to_string(),
                &api_idle,
                if quick { 3 } else { 7 },
            )
            .await
            .context("startup")?,
        );
    }

    let png = out.with_file_name("bench-latency.png");
    report.write(&out, &png)?;
    eprintln!("bench: wrote {} and {}", out.display(), png.display());
    Ok(())
}

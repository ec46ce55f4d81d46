//! `cargo xtask bench`: the benchmark suite.

use anyhow::{Context, Result, bail};

use crate::{cmd, soak, target_dir};

/// `bench cashu [args]`: the redeem-only benchmark. `bench [--quick]`: the whole suite
/// (`bench/`, issue 18): builds `paygress` and the bench in release (one invocation,
/// so they share one build of the dependencies) and `paygress` in the `dist` profile
/// operators ship (unless `--no-dist`: its fat LTO build is slow), runs every scenario
/// and writes `docs/BENCHMARKS.md` and `docs/bench-latency.png`.
pub fn bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("cashu") => {
            let mut a = vec![
                "run",
                "--release",
                "-p",
                "paygress-cashu",
                "--features",
                "test-mint",
                "--example",
                "bench_redeem",
                "--",
            ];
            a.extend(args[1..].iter().map(String::as_str));
            cmd("cargo", &a)
        }
        // The suite, with its flags (`--quick`, `--only login,k8s25`, `--scale X`).
        None => suite(args),
        Some(flag) if flag.starts_with("--") => suite(args),
        Some("soak") => soak::run(&args[1..]),
        _ => {
            bail!(
                "usage: cargo xtask bench [--quick] [--only SCENARIOS] [--no-dist] | bench cashu [--n N] | bench soak --hours H"
            )
        }
    }
}

/// The whole suite (or the scenarios `--only` names): release build, then run.
fn suite(args: &[String]) -> Result<()> {
    cmd(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "paygress-bin",
            "--bin",
            "paygress",
            "-p",
            "paygress-bench",
            // `--bin` applies to every package named: without this the
            // bench's own binary is not built.
            "--bin",
            "paygress-bench",
        ],
    )?;
    let dist = !args.iter().any(|a| a == "--no-dist");
    if dist {
        cmd(
            "cargo",
            &[
                "build",
                "--profile",
                "dist",
                "-p",
                "paygress-bin",
                "--bin",
                "paygress",
            ],
        )?;
    }
    let target = target_dir()?;
    let release = target.join("release");
    let bench = release.join("paygress-bench");
    let paygress = release.join("paygress");
    let paygress_dist = target.join("dist").join("paygress");
    let mut a = vec![
        "run",
        "--paygress",
        paygress.to_str().context("path")?,
        "--out",
        "docs/BENCHMARKS.md",
    ];
    if dist {
        a.extend(["--paygress-dist", paygress_dist.to_str().context("path")?]);
    }
    a.extend(
        args.iter()
            .map(String::as_str)
            .filter(|a| *a != "--no-dist"),
    );
    cmd(bench.to_str().context("path")?, &a)
}

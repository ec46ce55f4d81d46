//! `cargo xtask bench soak [--release] --hours H [args…]`: builds `paygress` (debug
//! profile unless `--release`: the soak judges growth, not speed) and runs the soak
//! driver (`crates/paygress-bin/examples/soak.rs`) against it: a steady stream
//! of spawns, top-ups and expiries with RSS, open files and journal size sampled; fails
//! if they grow.

use anyhow::Result;

/// Runs the soak benchmark with `args` (`--release`, `--hours H`, `--every-ms`,
/// `--sample-secs`, `--ports`, `--max-growth`).
pub fn run(args: &[String]) -> Result<()> {
    let release = args.iter().any(|a| a == "--release");
    let rest: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--release")
        .collect();
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    let mut build = vec!["build"];
    build.extend(profile);
    build.extend(["-p", "paygress-bin", "--bin", "paygress"]);
    crate::cmd("cargo", &build)?;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let bin = format!(
        "{target}/{}/paygress",
        if release { "release" } else { "debug" }
    );
    let mut a = vec!["run"];
    a.extend(profile);
    a.extend([
        "-p",
        "paygress-bin",
        "--features",
        "dev",
        "--example",
        "soak",
        "--",
        "--bin",
        bin.as_str(),
    ]);
    a.extend(rest);
    crate::cmd("cargo", &a)
}

//! `cargo xtask bench soak --hours H [args…]`: builds the release `paygress` and runs
//! the soak driver (`crates/paygress-bin/examples/soak.rs`) against it: a steady stream
//! of spawns, top-ups and expiries with RSS, open files and journal size sampled; fails
//! if they grow.

use anyhow::Result;

/// Runs the soak benchmark with `args` (`--hours H`, `--every-ms`, `--sample-secs`,
/// `--max-growth`).
pub fn run(args: &[String]) -> Result<()> {
    crate::cmd(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "paygress-bin",
            "--bin",
            "paygress",
        ],
    )?;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let bin = format!("{target}/release/paygress");
    let mut a = vec![
        "run",
        "--release",
        "-p",
        "paygress-bin",
        "--features",
        "dev",
        "--example",
        "soak",
        "--",
        "--bin",
        bin.as_str(),
    ];
    a.extend(args.iter().map(String::as_str));
    crate::cmd("cargo", &a)
}

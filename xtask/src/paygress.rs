//! `demo`, `dev` and `chaos`: the `paygress` binaries run through cargo.

use anyhow::Result;

use crate::cmd;

/// `cargo run`s `bin` of `paygress-bin` with `features`, passing it `args`.
fn run_bin(bin: &str, features: &str, args: &[String]) -> Result<()> {
    let mut a = vec![
        "run",
        "--quiet",
        "-p",
        "paygress-bin",
        "--features",
        features,
        // The package has two binaries: name the one to run.
        "--bin",
        bin,
        "--",
    ];
    a.extend(args.iter().map(String::as_str));
    cmd("cargo", &a)
}

/// `paygress <args>` (the `dev` feature).
pub fn run_paygress(args: &[String]) -> Result<()> {
    // Debug profile: it shares the test build, and the demo needs no speed.
    run_bin("paygress", "dev", args)
}

/// The chaos driver with `args`.
pub fn chaos(args: &[String]) -> Result<()> {
    // Both binaries (the service with failpoints, and the driver) from one build, so
    // the driver finds `paygress` next to itself.
    cmd(
        "cargo",
        &[
            "build",
            "-p",
            "paygress-bin",
            "--features",
            "chaos",
            "--bins",
        ],
    )?;
    run_bin("paygress-chaos", "chaos", args)
}

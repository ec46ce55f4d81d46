//! Development tasks (the matklad xtask pattern): `cargo xtask <task>`.
//!
//! - `ci`: what CI runs, in order: tool check, fmt, clippy, core-has-no-I/O, manifest
//!   validation, tests.
//! - `demo [args…]`: `paygress dev --demo` with the in-process relay and mint.
//! - `dev [args…]`: `paygress dev` (services only).
//! - `bench [--quick]`: the benchmark suite (`bench/`), writing `docs/BENCHMARKS.md`.
//! - `bench cashu [args…]`: redeem latency/throughput against an in-process mint.
//! - `bench soak --hours H [args…]`: the service under steady load; RSS, open files and
//!   journal size must stay flat (`xtask/src/soak.rs`).
//! - `chaos [--requests N] [--seed S] [args…]`: the fault-injection run: the real
//!   `paygress` (with failpoints) killed and restarted under paid load, a mint that
//!   loses answers; exits non-zero on any loss (see `paygress_testkit::chaos`).
//! - `e2e-kind`: real-cluster tests on a kind cluster (needs Docker).
//! - `fuzz [--secs N] [--cmin] [target…]`: runs the cargo-fuzz targets in `fuzz/` one
//!   after the other (docs/FUZZING.md).
//! - `startup-order`: profiles `paygress serve` starting (valgrind) and writes
//!   `crates/paygress-bin/startup.order`, the functions the optimised build lays out
//!   together (`xtask/src/startup_order.rs`).
//! - `protoc-path`: prints the vendored protoc (`export PROTOC=$(cargo xtask protoc-path)`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod bench;
mod ci;
mod fuzz;
mod paygress;
mod soak;
mod startup_order;

use paygress::{chaos, run_paygress};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "ci" => ci::ci(),
        "demo" => {
            let mut a = vec!["dev".to_owned(), "--demo".to_owned()];
            a.extend(rest);
            run_paygress(&a)
        }
        "dev" => {
            let mut a = vec!["dev".to_owned()];
            a.extend(rest);
            run_paygress(&a)
        }
        "bench" => bench::bench(&rest),
        "chaos" => chaos(&rest),
        "e2e-kind" => {
            let script = root()?.join("deploy/kind-e2e.sh");
            cmd("bash", &[script.to_str().context("path")?])
        }
        "fuzz" => fuzz::fuzz(&rest),
        "startup-order" => startup_order::run(),
        "protoc-path" => {
            println!("{}", protoc()?.display());
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | demo [args] | dev [args] | bench [--quick] | bench cashu [args] | chaos [--requests N] [--seed S] | e2e-kind | fuzz [--secs N] [--cmin] [target…] | startup-order | protoc-path>"
            );
            bail!("unknown task {task:?}")
        }
    }
}

fn root() -> Result<PathBuf> {
    let manifest = env::var("CARGO_MANIFEST_DIR").context("run through `cargo xtask`")?;
    Ok(Path::new(&manifest)
        .parent()
        .context("xtask has a parent dir")?
        .to_path_buf())
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the workspace root.
fn target_dir() -> Result<PathBuf> {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(root()?.join("target")),
    }
}

fn protoc() -> Result<PathBuf> {
    if let Some(p) = env::var_os("PROTOC") {
        return Ok(PathBuf::from(p));
    }
    protoc_bin_vendored::protoc_bin_path().context("no vendored protoc for this platform")
}

/// `program args…` to run in the workspace root with `PROTOC` set.
fn command(program: &str, args: &[&str]) -> Result<Command> {
    let mut c = Command::new(program);
    c.args(args).current_dir(root()?).env("PROTOC", protoc()?);
    Ok(c)
}

/// Runs a command in the workspace root with `PROTOC` set; fails on non-zero exit.
fn cmd(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = command(program, args)?
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs a command as [`cmd`] does and returns its standard output.
fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = command(program, args)?
        .output()
        .with_context(|| format!("cannot start {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

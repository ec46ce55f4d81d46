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
//! - `protoc-path`: prints the vendored protoc (`export PROTOC=$(cargo xtask protoc-path)`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod soak;

/// Crates that must never appear in `paygress-core`'s normal dependency tree: network
/// clients and servers, Cashu/Nostr/Kubernetes libraries, and tokio's networking (mio).
const CORE_FORBIDDEN: &[&str] = &[
    "cdk",
    "cashu",
    "nostr",
    "kube",
    "k8s-openapi",
    "axum",
    "hyper",
    "reqwest",
    "tonic",
    "russh",
    "mio",
    "socket2",
    "rustls",
    "tokio-tungstenite",
];

/// Debian packages the test suite uses (the real `ssh` client, `sshpass`, bubblewrap,
/// headless Chromium and its WebDriver).
/// Each entry: a command on PATH (or an absolute file path) and the package providing it.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("ssh", "openssh-client"),
    ("sshpass", "sshpass"),
    ("bwrap", "bubblewrap"),
    ("/usr/lib/openssh/sftp-server", "openssh-sftp-server"),
    ("prlimit", "util-linux"),
    ("pasta", "passt"),
    ("ip", "iproute2"),
    // The buyer web page's browser test (headless, over WebDriver).
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];

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
        "ci" => ci(),
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
        "bench" => bench(&rest),
        "chaos" => chaos(&rest),
        "e2e-kind" => {
            let script = root()?.join("deploy/kind-e2e.sh");
            cmd("bash", &[script.to_str().context("path")?])
        }
        "fuzz" => fuzz(&rest),
        "protoc-path" => {
            println!("{}", protoc()?.display());
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | demo [args] | dev [args] | bench [--quick] | bench cashu [args] | chaos [--requests N] [--seed S] | e2e-kind | fuzz [--secs N] [--cmin] [target…] | protoc-path>"
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

fn protoc() -> Result<PathBuf> {
    if let Some(p) = env::var_os("PROTOC") {
        return Ok(PathBuf::from(p));
    }
    protoc_bin_vendored::protoc_bin_path().context("no vendored protoc for this platform")
}

/// Runs a command in the workspace root with `PROTOC` set; fails on non-zero exit.
fn cmd(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root()?)
        .env("PROTOC", protoc()?)
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(root()?)
        .env("PROTOC", protoc()?)
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

fn ci() -> Result<()> {
    ensure_tools()?;
    cmd("cargo", &["fmt", "--all", "--", "--check"])?;
    cmd(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    check_core_has_no_io()?;
    if root()?.join("deploy/validate.sh").exists() {
        cmd("bash", &["deploy/validate.sh"])?;
    }
    if have("cargo-nextest") {
        // Doc tests first, so the run closes on nextest's summary of every test.
        cmd("cargo", &["test", "--workspace", "--all-features", "--doc"])?;
        cmd(
            "cargo",
            &[
                "nextest",
                "run",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
            ],
        )?;
    } else {
        cmd(
            "cargo",
            &["test", "--workspace", "--all-features", "--no-fail-fast"],
        )?;
    }
    eprintln!("xtask: ci passed");
    Ok(())
}

/// Installs the Debian packages the tests use when running as root (CI, a fresh
/// container); otherwise names the command to run.
fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(bin, _)| {
            if bin.starts_with('/') {
                !Path::new(bin).exists()
            } else {
                !have(bin)
            }
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = output("id", &["-u"]).is_ok_and(|s| s.trim() == "0");
    if !is_root || !have("apt-get") {
        bail!(
            "the tests need {}: run `sudo apt-get update && sudo apt-get install -y {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    cmd("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    cmd("apt-get", &args)
}

/// Proves the architecture invariant: core depends on no I/O crate.
fn check_core_has_no_io() -> Result<()> {
    let tree = output(
        "cargo",
        &[
            "tree",
            "-p",
            "paygress-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ],
    )?;
    let offenders: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| {
            CORE_FORBIDDEN
                .iter()
                .any(|f| *name == *f || name.starts_with(&format!("{f}-")))
        })
        .collect();
    if !offenders.is_empty() {
        bail!(
            "paygress-core must not depend on I/O crates, found: {}",
            offenders.join(", ")
        );
    }
    let features = output(
        "cargo",
        &[
            "tree",
            "-p",
            "paygress-core",
            "-e",
            "normal,features",
            "-i",
            "tokio",
            "--prefix",
            "none",
        ],
    )?;
    if features.lines().any(|l| l.contains("\"net\"")) {
        bail!("paygress-core must not enable tokio's `net` feature");
    }
    eprintln!("xtask: paygress-core has no I/O dependencies");
    Ok(())
}

fn run_paygress(args: &[String]) -> Result<()> {
    // Debug profile: it shares the test build, and the demo needs no speed.
    let mut a = vec![
        "run",
        "--quiet",
        "-p",
        "paygress-bin",
        // The package has a second binary (`paygress-chaos`): name the one to run.
        "--bin",
        "paygress",
        "--features",
        "dev",
        "--",
    ];
    a.extend(args.iter().map(String::as_str));
    cmd("cargo", &a)
}

fn chaos(args: &[String]) -> Result<()> {
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
    let mut a = vec![
        "run",
        "--quiet",
        "-p",
        "paygress-bin",
        "--features",
        "chaos",
        "--bin",
        "paygress-chaos",
        "--",
    ];
    a.extend(args.iter().map(String::as_str));
    cmd("cargo", &a)
}

/// `bench cashu [args]`: the redeem-only benchmark. `bench [--quick]`: the whole suite
/// (`bench/`, issue 18): builds `paygress` and the bench in release (one invocation,
/// so they share one build of the dependencies), runs every scenario and writes
/// `docs/BENCHMARKS.md` and `docs/bench-latency.png`.
fn bench(args: &[String]) -> Result<()> {
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
        None | Some("--quick") => {
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
            let target = env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().map(|r| r.join("target")).unwrap_or_default());
            let release = target.join("release");
            let bench = release.join("paygress-bench");
            let paygress = release.join("paygress");
            let mut a = vec![
                "run",
                "--paygress",
                paygress.to_str().context("path")?,
                "--out",
                "docs/BENCHMARKS.md",
            ];
            a.extend(args.iter().map(String::as_str));
            cmd(bench.to_str().context("path")?, &a)
        }
        Some("soak") => soak::run(&args[1..]),
        _ => {
            bail!("usage: cargo xtask bench [--quick] | bench cashu [--n N] | bench soak --hours H")
        }
    }
}

/// The cargo-fuzz targets in `fuzz/` (bodies in `crates/paygress-fuzz`).
const FUZZ_TARGETS: &[&str] = &[
    "names",
    "request_json",
    "nostr_direct",
    "nostr_gift_wrap",
    "cashu_token",
    "http_request",
];

/// Runs each fuzz target (all by default) for `--secs` seconds (default 60), one at a
/// time on one core, growing `fuzz/corpus/<target>`; `--cmin` minimises each corpus
/// afterwards (`--secs 0 --cmin`: only that). Needs `cargo install cargo-fuzz`; the stable toolchain does, with
/// `RUSTC_BOOTSTRAP=1` for the sanitizer-coverage flags cargo-fuzz passes. The build is
/// instrumented and goes to `fuzz/target`, apart from the workspace's.
fn fuzz(args: &[String]) -> Result<()> {
    let mut secs: u64 = 60;
    let mut cmin = false;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => {
                secs = it
                    .next()
                    .context("--secs needs a value")?
                    .parse()
                    .context("--secs takes whole seconds")?;
            }
            "--cmin" => cmin = true,
            t if FUZZ_TARGETS.contains(&t) => targets.push(t),
            other => bail!(
                "unknown fuzz argument {other:?}; targets: {}",
                FUZZ_TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.to_vec();
    }
    if !have("cargo-fuzz") {
        bail!("cargo-fuzz is missing: run `cargo install cargo-fuzz --locked`");
    }
    let root = root()?;
    let logs = root.join("fuzz/logs");
    std::fs::create_dir_all(&logs)?;
    // The same flags for every call, so that one build serves them all.
    let target_dir = root.join("fuzz/target");
    let target_dir = target_dir.to_str().context("path")?;
    let build = [
        "--sanitizer",
        "none",
        "--debug-assertions",
        "--target-dir",
        target_dir,
    ];
    let fuzz_cmd = |args: &[&str]| -> Result<()> {
        eprintln!("xtask: $ RUSTC_BOOTSTRAP=1 cargo {}", args.join(" "));
        let status = Command::new("cargo")
            .args(args)
            .current_dir(&logs)
            .env("RUSTC_BOOTSTRAP", "1")
            .env_remove("CARGO_TARGET_DIR")
            .env("PROTOC", protoc()?)
            .status()
            .context("cannot start cargo fuzz")?;
        if !status.success() {
            bail!("`cargo {}` failed ({status})", args.join(" "));
        }
        Ok(())
    };
    let fuzz_dir = root.join("fuzz");
    let fuzz_dir = fuzz_dir.to_str().context("path")?;
    let mut build_args = vec!["fuzz", "build", "--fuzz-dir", fuzz_dir];
    build_args.extend(build);
    fuzz_cmd(&build_args)?;
    // The smallest subset of the corpus covering the same code edges (libFuzzer's
    // set-cover merge on edges, not hit counts: a few hundred files at most, where
    // cargo-fuzz's default merge keeps thousands).
    let minimise = |target: &str| {
        let mut c = vec!["fuzz", "cmin", "--fuzz-dir", fuzz_dir];
        c.extend(build);
        c.extend([target, "--", "-set_cover_merge=1", "-use_counters=0"]);
        fuzz_cmd(&c)
    };
    let max_time = format!("-max_total_time={secs}");
    for target in targets {
        if secs == 0 {
            // Nothing to run (libFuzzer would read 0 as "no limit"): `--cmin` only.
            if cmin {
                minimise(target)?;
            }
            continue;
        }
        let mut run = vec!["fuzz", "run", "--fuzz-dir", fuzz_dir];
        run.extend(build);
        // One process on one core: libFuzzer writes its output to fuzz-0.log in fuzz/logs.
        run.extend([
            target,
            "--",
            &max_time,
            "-jobs=1",
            "-workers=1",
            "-timeout=10",
        ]);
        run.extend(["-rss_limit_mb=2048", "-print_final_stats=1"]);
        let result = fuzz_cmd(&run);
        let log = logs.join("fuzz-0.log");
        let kept = logs.join(format!("{target}.log"));
        if log.exists() {
            std::fs::rename(&log, &kept)?;
            let text = std::fs::read_to_string(&kept).unwrap_or_default();
            for line in text.lines().filter(|l| {
                l.starts_with("stat::") || l.starts_with("Done ") || l.contains("ERROR")
            }) {
                eprintln!("xtask: {target}: {line}");
            }
        }
        result.with_context(|| format!("fuzz target {target} failed; see {}", kept.display()))?;
        if cmin {
            minimise(target)?;
        }
    }
    Ok(())
}

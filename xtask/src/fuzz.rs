//! `cargo xtask fuzz`: the cargo-fuzz targets, one after the other.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{have, protoc, root};

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
pub fn fuzz(args: &[String]) -> Result<()> {
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

//! `cargo xtask ci`: what CI runs.

use std::path::Path;

use anyhow::{Result, bail};

use crate::{cmd, have, output, root};

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

pub fn ci() -> Result<()> {
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

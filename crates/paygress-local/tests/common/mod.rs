//! Shared helpers for the local backend's integration tests (system `ssh` + `sshpass`).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use paygress_core::contract::sample_spec;
use paygress_core::lease::LeaseSpec;
use paygress_local::{LocalBackend, LocalConfig, PortRange, SandboxMode};

/// Starts a backend in `dir` on ports `start..start+9` of 127.0.0.1.
pub async fn backend(dir: &Path, start: u16, mode: SandboxMode) -> LocalBackend {
    let mut config = LocalConfig::new(dir);
    config.port_range = PortRange::new(start, start + 9).unwrap();
    config.sandbox = mode;
    LocalBackend::start(config)
        .await
        .expect("start local backend")
}

/// A lease for `alice` ending `seconds` from now.
pub fn spec_for(seconds: i64) -> LeaseSpec {
    let mut spec = sample_spec(5);
    spec.expires_at = Timestamp::now()
        .checked_add(SignedDuration::from_secs(seconds))
        .unwrap();
    spec
}

/// Output of one `ssh` run.
#[derive(Debug)]
pub struct Out {
    /// Exit code of `ssh`.
    pub code: Option<i32>,
    /// Remote stdout.
    pub stdout: String,
    /// Remote stderr plus ssh's own messages.
    pub stderr: String,
}

fn ssh_command(port: u16, user: &str, password: &str, extra: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sshpass");
    c.args(["-p", password, "ssh"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-p",
        ])
        .arg(port.to_string())
        .args(extra)
        .arg(format!("{user}@127.0.0.1"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// `sshpass -p PW ssh … -p PORT USER@127.0.0.1 [extra…] CMD`.
pub async fn ssh(port: u16, user: &str, password: &str, extra: &[&str], cmd: &str) -> Out {
    let mut c = ssh_command(port, user, password, extra);
    if !cmd.is_empty() {
        c.arg(cmd);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("ssh did not finish within 60 s")
        .expect("run sshpass/ssh");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Like [`ssh`] but feeding `stdin` to the remote side.
pub async fn ssh_stdin(
    port: u16,
    user: &str,
    password: &str,
    extra: &[&str],
    cmd: &str,
    stdin: &str,
) -> Out {
    use tokio::io::AsyncWriteExt;
    let mut c = ssh_command(port, user, password, extra);
    if !cmd.is_empty() {
        c.arg(cmd);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn ssh");
    let mut w = child.stdin.take().unwrap();
    let input = stdin.to_owned();
    tokio::spawn(async move {
        let _ = w.write_all(input.as_bytes()).await;
        // Keep stdin open a little for interactive shells to read it; closing is EOF.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("ssh did not finish within 60 s")
        .expect("wait ssh");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts `ssh … CMD` in the background (killed on drop).
pub fn ssh_background(port: u16, user: &str, password: &str, cmd: &str) -> tokio::process::Child {
    let mut c = ssh_command(port, user, password, &[]);
    c.arg(cmd).stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn().expect("spawn ssh")
}

/// Pids of processes whose command line is exactly `argv`.
pub fn pids_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let state = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .next()?
                .to_owned();
            (cmdline == want && state != "Z").then_some(pid)
        })
        .collect()
}

/// Polls `check` every 100 ms until it returns true or `limit` passes; returns whether
/// it became true. A deadline for liveness only, never a speed assertion.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A number unlikely to be used by any other test or engineer on this machine.
pub fn unique_number() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    100_000 + (nanos ^ std::process::id()) % 800_000
}

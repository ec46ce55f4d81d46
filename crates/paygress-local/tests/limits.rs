//! Abuse limits of the lease SSH servers: input backpressure, floods of idle
//! connections, the login deadline and the session cap, with the system OpenSSH client.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use paygress_core::ports::PodBackend;
use paygress_local::{ConnectionLimits, LocalBackend, LocalConfig, PortRange, SandboxMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;

async fn backend_with(dir: &Path, start: u16, limits: ConnectionLimits) -> LocalBackend {
    let mut config = LocalConfig::new(dir);
    config.port_range = PortRange::new(start, start + 9).unwrap();
    config.sandbox = SandboxMode::Bubblewrap;
    config.connections = limits;
    LocalBackend::start(config).await.unwrap()
}

/// This process's resident set (the backend runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn ssh_piped(port: u16, password: &str, cmd: &str) -> tokio::process::Child {
    tokio::process::Command::new("sshpass")
        .args(["-p", password, "ssh"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR", "-o", "PubkeyAuthentication=no"])
        .args(["-p", &port.to_string(), "alice@127.0.0.1", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_into_a_command_that_never_reads_is_backpressured() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(dir.path(), 24400, ConnectionLimits::default()).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();

    let before = rss();
    let mut client = ssh_piped(port, spec.password.expose(), "sleep 600");
    let mut stdin = client.stdin.take().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let total = 512 * MIB;
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        let chunk = vec![0u8; MIB as usize];
        while counter.load(Ordering::SeqCst) < total {
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(MIB, Ordering::SeqCst);
        }
    });
    // Wait until the writer is stuck (no progress for 3 s) or has sent everything.
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = written.load(Ordering::SeqCst);
        if now == last || now >= total || writer.is_finished() {
            break;
        }
        last = now;
    }
    let sent = written.load(Ordering::SeqCst);
    let grown = rss().saturating_sub(before);
    eprintln!(
        "stdin flood: {} MiB accepted by ssh, service RSS grew by {} MiB",
        sent / MIB,
        grown / MIB
    );
    assert!(
        sent < 128 * MIB,
        "the client could push {} MiB into a command that reads nothing",
        sent / MIB
    );
    assert!(grown < 96 * MIB, "RSS grew by {} MiB", grown / MIB);

    // The lease still serves other logins meanwhile.
    let out = ssh(
        port,
        "alice",
        spec.password.expose(),
        &[],
        "echo still-fine",
    )
    .await;
    assert_eq!(out.stdout, "still-fine\n", "{out:?}");
    writer.abort();
    drop(client);
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_input_and_output_at_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(dir.path(), 24410, ConnectionLimits::default()).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    // `cat` echoes 24 MiB back while it is still being sent: both directions under
    // flow control at the same time.
    let mut client = ssh_piped(port, spec.password.expose(), "cat");
    let mut stdin = client.stdin.take().unwrap();
    let mut stdout = client.stdout.take().unwrap();
    let size = 24 * MIB as usize;
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        stdin.write_all(&data).await.unwrap();
        drop(stdin);
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), stdout.read_to_end(&mut back))
        .await
        .expect("cat finished")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), size);
    assert!(back.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    let status = client.wait().await.unwrap();
    assert!(status.success());
    b.delete(&spec.id).await.unwrap();
}

/// Reads until the server closes the connection; whether it did within `limit`.
async fn closed_within(mut s: tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 512];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_flood_does_not_lock_out_the_buyer() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        auth_timeout: Duration::from_secs(3),
        ..ConnectionLimits::default()
    };
    let b = backend_with(dir.path(), 24420, limits).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();

    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // The buyer logs in while the 1,000 connections are open.
    let out = ssh(port, "alice", spec.password.expose(), &[], "echo buyer-in").await;
    assert_eq!(out.stdout, "buyer-in\n", "{out:?}");

    // Every idle connection is closed: pushed out by newer ones, the rest by the
    // login deadline (a liveness bound, not a speed assertion).
    let mut set = tokio::task::JoinSet::new();
    for s in idle {
        set.spawn(closed_within(s, Duration::from_secs(60)));
    }
    let mut open = 0;
    while let Some(closed) = set.join_next().await {
        if !closed.unwrap() {
            open += 1;
        }
    }
    assert_eq!(open, 0, "idle connections left open");

    // A lone idle connection (no flood to push it out) is closed by the deadline.
    let lone = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    assert!(closed_within(lone, Duration::from_secs(60)).await);
    // And a client that completes the handshake but never logs in, too.
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    half.write_all(b"SSH-2.0-idle\r\n").await.unwrap();
    assert!(closed_within(half, Duration::from_secs(60)).await);
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_lease_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ConnectionLimits {
        sessions_per_lease: 1,
        ..ConnectionLimits::default()
    };
    let b = backend_with(dir.path(), 24430, limits).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose().to_owned();
    let n = unique_number().to_string();
    let mut first = ssh_background(port, "alice", &pw, &format!("sleep {n}"));
    assert!(
        eventually(Duration::from_secs(30), async || !pids_with_cmdline(&[
            "sleep", &n
        ])
        .is_empty())
        .await
    );
    let out = ssh(port, "alice", &pw, &[], "echo second").await;
    assert_ne!(out.code, Some(0), "a second session is refused: {out:?}");
    first.kill().await.unwrap();
    let _ = first.wait().await;
    assert!(
        eventually(Duration::from_secs(30), async || {
            ssh(port, "alice", &pw, &[], "echo again").await.stdout == "again\n"
        })
        .await,
        "the slot is free again once the first session ended"
    );
    b.delete(&spec.id).await.unwrap();
}

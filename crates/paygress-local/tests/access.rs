//! How a buyer gets in and what the lease tells them, with the system OpenSSH client:
//! key-only logins, the host key verified from `known_hosts`, the message of the day,
//! `~/.paygress/lease.json` and the warning written to an open terminal before expiry.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use jiff::SignedDuration;
use paygress_core::lease::LeaseSpec;
use paygress_core::ports::{Extension, PodBackend};
use paygress_local::{LocalBackend, SandboxMode};
use tokio::io::AsyncReadExt;

const BW: SandboxMode = SandboxMode::Bubblewrap;

/// A new Ed25519 key pair in `dir`; returns the private key's path (`.pub` next to it).
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "buyer@test", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    key
}

fn public_key(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A `known_hosts` file naming the backend's host keys for `[127.0.0.1]:port`.
fn known_hosts(dir: &Path, b: &LocalBackend, port: u16) -> PathBuf {
    let path = dir.join(format!("known_hosts-{port}"));
    let keys = b.host_keys();
    assert!(!keys.is_empty(), "the local backend knows its host key");
    let lines: String = keys
        .iter()
        .map(|k| format!("[127.0.0.1]:{port} {}\n", k.public_key))
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// `ssh` with the key only (no password prompt possible), the host verified against
/// `known_hosts` (`StrictHostKeyChecking=yes`).
fn key_ssh(port: u16, key: &Path, known_hosts: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("ssh");
    c.args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", "PreferredAuthentications=publickey"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "ConnectTimeout=20", "-i"])
        .arg(key)
        .arg("-p")
        .arg(port.to_string())
        .args(extra)
        .arg("alice@127.0.0.1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn run(mut c: tokio::process::Command, cmd: &str) -> Out {
    c.arg(cmd);
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("ssh finishes")
        .unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn with_key(seconds: i64, key: &Path, password_login: bool) -> LeaseSpec {
    let mut spec = spec_for(seconds);
    spec.ssh_public_key = Some(public_key(key));
    spec.password_login = password_login;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_alone_logs_in_and_the_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24760, BW).await;
    let key = keygen(dir.path(), "id_ed25519");
    let spec = with_key(300, &key, false);
    let p = b.create(&spec).await.unwrap();
    let port = p.node_port.unwrap();
    assert_eq!(p.host_keys, b.host_keys(), "the reply carries the host key");
    assert!(p.host_keys[0].fingerprint.starts_with("SHA256:"));
    let kh = known_hosts(dir.path(), &b, port);

    let out = run(key_ssh(port, &key, &kh, &[]), "echo key-login").await;
    assert_eq!(out.stdout, "key-login\n", "{out:?}");
    assert_eq!(out.code, Some(0));

    let out = ssh(port, "alice", spec.password.expose(), &[], "echo pw-login").await;
    assert_ne!(out.code, Some(0), "password login is off: {out:?}");
    assert!(!out.stdout.contains("pw-login"));

    // Another key is refused.
    let other = keygen(dir.path(), "other");
    let out = run(key_ssh(port, &other, &kh, &[]), "echo other").await;
    assert_ne!(out.code, Some(0), "{out:?}");

    // The host key must match what known_hosts says: a wrong entry stops ssh.
    let wrong = dir.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{port} {}\n", public_key(&other)),
    )
    .unwrap();
    let out = run(key_ssh(port, &key, &wrong, &[]), "echo spoofed").await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("HOST KEY") || out.stderr.contains("host key"),
        "{out:?}"
    );
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_who_asks_for_both_gets_both() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24770, BW).await;
    let key = keygen(dir.path(), "id_ed25519");
    let spec = with_key(300, &key, true);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let kh = known_hosts(dir.path(), &b, port);

    let out = run(key_ssh(port, &key, &kh, &[]), "echo key-login").await;
    assert_eq!(out.stdout, "key-login\n", "{out:?}");
    let out = ssh(port, "alice", spec.password.expose(), &[], "echo pw-login").await;
    assert_eq!(out.stdout, "pw-login\n", "{out:?}");
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_shows_its_expiry_and_how_to_top_up() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24780, BW).await;
    let key = keygen(dir.path(), "id_ed25519");
    let spec = with_key(300, &key, false);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let kh = known_hosts(dir.path(), &b, port);

    // An interactive login shell starts with the message of the day.
    let mut c = key_ssh(port, &key, &kh, &["-tt"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"exit 0\n")
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("Paygress lease {}", spec.id)),
        "{text}"
    );
    assert!(
        text.contains(&format!("Paid until {}", spec.expires_at)),
        "{text}"
    );
    assert!(
        text.contains(&format!("paygress topup --pod {}", spec.id)),
        "{text}"
    );

    // A command (no terminal) gets no banner, and the lease file is there.
    let out = run(key_ssh(port, &key, &kh, &[]), "cat ~/.paygress/lease.json").await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(v["pod_name"], spec.id.as_str());
    assert_eq!(v["expires_at"], spec.expires_at.to_string());
    assert_eq!(
        v["top_up_command"],
        format!("paygress topup --pod {} --token <cashu token>", spec.id)
    );

    // A top-up rewrites it.
    let later = spec.expires_at + SignedDuration::from_mins(30);
    b.extend(
        &spec.id,
        &Extension {
            expires_at: later,
            paid_msat: 120_000,
        },
    )
    .await
    .unwrap();
    let out = run(key_ssh(port, &key, &kh, &[]), "cat ~/.paygress/lease.json").await;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(v["expires_at"], later.to_string(), "{out:?}");
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_terminal_is_warned_a_minute_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24790, BW).await;
    let key = keygen(dir.path(), "id_ed25519");
    // The one-minute warning is due three seconds after creation.
    let spec = with_key(63, &key, false);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let kh = known_hosts(dir.path(), &b, port);

    let mut c = key_ssh(port, &key, &kh, &["-tt"]);
    c.arg("echo ready; sleep 50")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let _stdin = child.stdin.take();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(45), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stdout.read(&mut buf).await.unwrap();
            if n == 0 {
                return false;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("ends in") && seen.contains("Top up:") {
                return true;
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(found, "no warning on the terminal: {seen:?}");
    assert!(seen.contains("ready"), "{seen:?}");
    assert!(
        seen.contains(&format!("lease {} ends in", spec.id)),
        "{seen:?}"
    );
    assert!(
        !seen.contains("Paygress lease"),
        "a command gets no message of the day: {seen:?}"
    );
    let _ = child.kill().await;
    b.delete(&spec.id).await.unwrap();
}

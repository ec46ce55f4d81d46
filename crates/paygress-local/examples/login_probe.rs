//! Where the time of a lease's creation and first login goes (issue 18), without the
//! rest of the service: `create` on the backend, then a login running `true`, once with
//! the system `ssh` (what a buyer runs) and once with an in-process russh client (no
//! client process start-up), in each sandbox and network mode given.
//!
//! ```text
//! cargo run --release -p paygress-local --example login_probe -- [RUNS] [MODE…]
//! ```
//! MODE is `unsandboxed`, `none` (bubblewrap, loopback only), `host` (bubblewrap, the
//! host's network) or `isolated` (bubblewrap, pasta; needs root); default: all four.
//! Prints p50 / p90 / max per stage in milliseconds. `PROBE_SPARES=N` sets
//! `LocalConfig::spare_networks`;
//! `PROBE_PAUSE_MS=N` waits that long between `create` and the logins (not timed).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paygress_core::contract::sample_spec;
use paygress_core::ports::PodBackend;
use paygress_local::{LocalBackend, LocalConfig, NetworkMode, PortRange, SandboxMode};
use russh::keys::PrivateKey;
use russh::{ChannelMsg, client};

struct Trusting;

impl client::Handler for Trusting {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

fn stats(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {name:<34} p50 {:7.2}  p90 {:7.2}  max {:7.2}  (n={})",
        at(0.5),
        at(0.9),
        at(1.0),
        v.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn system_ssh(port: u16, user: &str, key: &Path) -> bool {
    tokio::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "PreferredAuthentications=publickey",
            "-o",
            "LogLevel=ERROR",
            "-p",
        ])
        .arg(port.to_string())
        .arg(format!("{user}@127.0.0.1"))
        .arg("true")
        .stdin(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Connect, authenticate with `key`, exec `true`; returns (connected+authenticated,
/// exec→exit status) or `None` on failure.
async fn russh_login(port: u16, user: &str, key: &PrivateKey) -> Option<(Duration, Duration)> {
    let t0 = Instant::now();
    let config = Arc::new(client::Config {
        nodelay: true,
        ..Default::default()
    });
    let mut session = client::connect(config, ("127.0.0.1", port), Trusting)
        .await
        .ok()?;
    let key = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None);
    let auth = session.authenticate_publickey(user, key).await.ok()?;
    if !auth.success() {
        return None;
    }
    let t1 = Instant::now();
    let mut channel = session.channel_open_session().await.ok()?;
    channel.exec(true, "true").await.ok()?;
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        if let ChannelMsg::ExitStatus { exit_status } = msg {
            status = Some(exit_status);
            break;
        }
    }
    let t2 = Instant::now();
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    (status == Some(0)).then_some((t1 - t0, t2 - t1))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let mut modes: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    if modes.is_empty() {
        modes = vec!["unsandboxed", "none", "host", "isolated"];
    }
    let pause = Duration::from_millis(
        std::env::var("PROBE_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(key_path.with_extension("pub")).unwrap();
    let private = PrivateKey::from_openssh(std::fs::read_to_string(&key_path).unwrap()).unwrap();

    for (i, mode) in modes.iter().enumerate() {
        let mut config = LocalConfig::new(dir.path().join(format!("data-{mode}")));
        let start = 27500 + 20 * u16::try_from(i).unwrap();
        config.port_range = PortRange::new(start, start + 19).unwrap();
        (config.sandbox, config.network) = match *mode {
            "unsandboxed" => (SandboxMode::Unsandboxed, NetworkMode::Host),
            "none" => (SandboxMode::Bubblewrap, NetworkMode::None),
            "host" => (SandboxMode::Bubblewrap, NetworkMode::Host),
            "isolated" => (SandboxMode::Bubblewrap, NetworkMode::Isolated),
            other => panic!("unknown mode {other}"),
        };
        if let Some(n) = std::env::var("PROBE_SPARES")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.spare_networks = n;
        }
        let b = LocalBackend::start(config).await.unwrap();
        println!(
            "{mode}: sandbox {:?}, network {}",
            b.sandbox_mode(),
            b.network_mode()
        );
        let (mut create, mut delete, mut ssh, mut rconnect, mut rexec, mut rtotal) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for run in 0..=runs {
            let mut spec = sample_spec(10);
            spec.ssh_public_key = Some(public.trim().to_owned());
            spec.password_login = false;
            let t0 = Instant::now();
            let port = b.create(&spec).await.unwrap().ssh_port;
            let created = Instant::now() - t0;
            tokio::time::sleep(pause).await;
            let t1 = Instant::now();
            assert!(system_ssh(port, "alice", &key_path).await, "ssh login");
            let t2 = Instant::now();
            let (connect, exec) = russh_login(port, "alice", &private)
                .await
                .expect("russh login");
            let t3 = Instant::now();
            b.delete(&spec.id).await.unwrap();
            let t4 = Instant::now();
            if run == 0 {
                continue; // warm-up
            }
            create.push(ms(created));
            ssh.push(ms(t2 - t1));
            rconnect.push(ms(connect));
            rexec.push(ms(exec));
            rtotal.push(ms(t3 - t2));
            delete.push(ms(t4 - t3));
        }
        stats("create", create);
        stats("system ssh … true", ssh);
        stats("russh: connect + auth", rconnect);
        stats("russh: exec true → exit status", rexec);
        stats("russh: total", rtotal);
        stats("delete", delete);
        drop(b);
        // Let the dropped backend's namespaces go before the next mode.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

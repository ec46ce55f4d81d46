//! Lease network isolation (`LOCAL_NETWORK`), tried the way a buyer would: over real
//! ssh, a command in the lease connects to servers on the host.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use paygress_core::ports::PodBackend;
use paygress_local::{LocalBackend, LocalConfig, NetworkMode, PortRange, SandboxMode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const SECRET: &str = "PAYGRESS-HOST-ONLY-SERVICE";

/// A server on `addr` that greets every connection with [`SECRET`]; returns its port.
async fn secret_server(addr: &str) -> u16 {
    let listener = TcpListener::bind((addr, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(format!("{SECRET}\n").as_bytes()).await;
        }
    });
    port
}

async fn backend_with(dir: &Path, start: u16, network: NetworkMode) -> LocalBackend {
    let mut config = LocalConfig::new(dir);
    config.port_range = PortRange::new(start, start + 9).unwrap();
    config.sandbox = SandboxMode::Bubblewrap;
    config.network = network;
    LocalBackend::start(config).await.unwrap()
}

/// The host's IPv4 addresses other than loopback.
fn host_addresses() -> Vec<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|a| a.contains('.'))
        .map(str::to_owned)
        .collect()
}

/// Shell code that tries every `addr/port` and prints what each one answers.
fn probe_command(targets: &[String]) -> String {
    let list = targets.join(" ");
    format!(
        "for t in {list}; do timeout 5 bash -c \"exec 3<>/dev/tcp/$t && head -c 64 <&3\" 2>/dev/null; done; echo probed"
    )
}

/// Targets for a server on the host's loopback (`lo_port`) and one on all addresses
/// (`any_port`): the loopback, pasta's gateway (which pasta maps to the host's loopback
/// unless told not to), cloud metadata's address, and each host address.
fn targets(lo_port: u16, any_port: u16) -> Vec<String> {
    let mut t = vec![
        format!("127.0.0.1/{lo_port}"),
        format!("127.0.0.1/{any_port}"),
        format!("169.254.1.1/{lo_port}"),
        format!("169.254.1.1/{any_port}"),
        format!("169.254.169.254/{any_port}"),
    ];
    for a in host_addresses() {
        t.push(format!("{a}/{any_port}"));
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leases_cannot_reach_the_host() {
    let lo_port = secret_server("127.0.0.1").await;
    let any_port = secret_server("0.0.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(dir.path(), 24300, NetworkMode::Isolated).await;
    let root = rustix_is_root();
    if root && which("pasta") {
        assert_eq!(b.network_mode(), NetworkMode::Isolated, "pasta is used");
    }
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose();

    let out = ssh(
        port,
        "alice",
        pw,
        &[],
        &probe_command(&targets(lo_port, any_port)),
    )
    .await;
    assert!(out.stdout.ends_with("probed\n"), "{out:?}");
    assert!(
        !out.stdout.contains(SECRET),
        "a lease reached a server on the host: {out:?}"
    );

    if b.network_mode() == NetworkMode::Isolated {
        // The lease has its own interface (pasta's tap) and a default route through it
        // (internet egress itself cannot be shown here: tests never leave the machine).
        let out = ssh(
            port,
            "alice",
            pw,
            &[],
            "ip -4 route show default; ip -o -4 addr show scope global",
        )
        .await;
        assert!(out.stdout.contains("default via 169.254.1.1"), "{out:?}");
        assert!(out.stdout.contains("inet 169.254.1.2/29"), "{out:?}");
        // DNS goes to pasta's forwarder (the host's resolver itself is not reachable).
        let out = ssh(port, "alice", pw, &[], "cat /etc/resolv.conf").await;
        assert!(out.stdout.contains("nameserver 169.254.1.3"), "{out:?}");
        // Blocked destinations fail at once (a `prohibit` route), not by timing out.
        let out = ssh(
            port,
            "alice",
            pw,
            &[],
            "ip -4 route get 169.254.169.254; ip -4 route get 10.1.2.3",
        )
        .await;
        assert!(!out.stdout.contains("via"), "{out:?}");
    }
    b.delete(&spec.id).await.unwrap();
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_reaches_the_host_and_none_has_no_route() {
    let lo_port = secret_server("127.0.0.1").await;
    let any_port = secret_server("0.0.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    {
        // LOCAL_NETWORK=host: the same probe does reach the host (the probe can fail).
        let b = backend_with(dir.path(), 24310, NetworkMode::Host).await;
        assert_eq!(b.network_mode(), NetworkMode::Host);
        let spec = spec_for(300);
        let port = b.create(&spec).await.unwrap().node_port.unwrap();
        let out = ssh(
            port,
            "alice",
            spec.password.expose(),
            &[],
            &probe_command(&[format!("127.0.0.1/{lo_port}")]),
        )
        .await;
        assert_eq!(out.stdout, format!("{SECRET}\nprobed\n"), "{out:?}");
        b.delete(&spec.id).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(dir.path(), 24320, NetworkMode::None).await;
    assert_eq!(b.network_mode(), NetworkMode::None);
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose();
    let out = ssh(
        port,
        "alice",
        pw,
        &[],
        &probe_command(&targets(lo_port, any_port)),
    )
    .await;
    assert_eq!(out.stdout, "probed\n", "{out:?}");
    let out = ssh(
        port,
        "alice",
        pw,
        &[],
        "ip -4 route; ip -o link | grep -vc ' lo:'",
    )
    .await;
    assert_eq!(out.stdout, "0\n", "loopback only, no route: {out:?}");
    b.delete(&spec.id).await.unwrap();
}

fn rustix_is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

fn which(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

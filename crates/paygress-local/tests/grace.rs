//! The grace period (`GRACE_MINUTES`) on the local backend, with the system OpenSSH
//! client: at expiry logins stop and processes are killed but the home is kept; an
//! extension within the grace period brings the lease back with its files; after the
//! grace period the lease and its home are removed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use jiff::{SignedDuration, Timestamp};
use paygress_core::lease::LeaseSpec;
use paygress_core::ports::{Extension, PodBackend};
use paygress_local::{LocalBackend, LocalConfig, PortRange, SandboxMode};

const BW: SandboxMode = SandboxMode::Bubblewrap;

/// A bubblewrap backend in `dir` on ports `start..start+9` keeping expired leases
/// `grace` long.
async fn backend_with_grace(dir: &Path, start: u16, grace: Duration) -> LocalBackend {
    let mut config = LocalConfig::new(dir);
    config.port_range = PortRange::new(start, start + 9).unwrap();
    config.sandbox = BW;
    config.grace = grace;
    LocalBackend::start(config)
        .await
        .expect("start local backend")
}

/// Sleeps until just past `spec`'s paid end.
async fn wait_past_expiry(spec: &LeaseSpec) {
    let past = spec
        .expires_at
        .checked_add(SignedDuration::from_millis(500))
        .unwrap();
    tokio::time::sleep(Timestamp::now().duration_until(past).unsigned_abs()).await;
}

/// Moves `spec`'s lease's expiry to five minutes from now.
async fn top_up(b: &LocalBackend, spec: &LeaseSpec) {
    let later = Timestamp::now()
        .checked_add(SignedDuration::from_mins(5))
        .unwrap();
    b.extend(
        &spec.id,
        &Extension {
            expires_at: later,
            paid_msat: spec.paid_msat + 1,
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_in_grace_brings_the_lease_back_with_its_home() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with_grace(dir.path(), 24800, Duration::from_secs(120)).await;
    let spec = spec_for(6);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose().to_owned();
    let out = ssh(port, "alice", &pw, &[], "echo kept > ~/f; echo ok").await;
    assert_eq!(out.stdout, "ok\n", "{out:?}");
    let n = unique_number().to_string();
    let _client = ssh_background(port, "alice", &pw, &format!("sleep {n}"));
    assert!(
        eventually(Duration::from_secs(30), async || {
            !pids_with_cmdline(&["sleep", &n]).is_empty()
        })
        .await,
        "the lease's sleep started"
    );

    wait_past_expiry(&spec).await;
    assert!(
        eventually(Duration::from_secs(30), async || {
            pids_with_cmdline(&["sleep", &n]).is_empty()
        })
        .await,
        "the lease's processes are stopped at expiry"
    );
    let out = ssh(port, "alice", &pw, &[], "echo hello").await;
    assert_ne!(out.code, Some(0), "logins refused in grace: {out:?}");
    assert!(!out.stdout.contains("hello"));
    let record = b.get(&spec.id).await.unwrap().expect("kept in grace");
    assert_eq!(record.expires_at, spec.expires_at);
    assert_eq!(
        std::fs::read_to_string(b.home_dir(&spec.id).join("f")).unwrap(),
        "kept\n",
        "the home is kept"
    );

    top_up(&b, &spec).await;
    let port = b.get(&spec.id).await.unwrap().unwrap().node_port.unwrap();
    let out = ssh(port, "alice", &pw, &[], "cat ~/f").await;
    assert_eq!(
        out.stdout, "kept\n",
        "logged in again, file intact: {out:?}"
    );
    b.delete(&spec.id).await.unwrap();
    assert!(!b.home_dir(&spec.id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_removed_with_its_home_when_its_grace_period_ends() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with_grace(dir.path(), 24810, Duration::from_secs(3)).await;
    let spec = spec_for(3);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let out = ssh(port, "alice", spec.password.expose(), &[], "echo x > ~/f").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    wait_past_expiry(&spec).await;
    assert!(b.get(&spec.id).await.unwrap().is_some(), "in grace");
    let home = b.home_dir(&spec.id);
    assert!(
        eventually(Duration::from_secs(30), async || {
            b.get(&spec.id).await.unwrap().is_none() && !home.exists()
        })
        .await,
        "removed with its home after the grace period"
    );
    let stored = std::fs::read_to_string(dir.path().join("local/leases.json")).unwrap();
    assert!(!stored.contains(spec.id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_in_grace_survives_a_restart_stopped_and_can_be_brought_back() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(120);
    let spec = spec_for(3);
    let pw = spec.password.expose().to_owned();
    {
        let b = backend_with_grace(dir.path(), 24820, grace).await;
        let port = b.create(&spec).await.unwrap().node_port.unwrap();
        let out = ssh(port, "alice", &pw, &[], "echo kept > ~/f; echo ok").await;
        assert_eq!(out.stdout, "ok\n", "{out:?}");
        // Dropped: Paygress goes down.
    }
    wait_past_expiry(&spec).await;
    let b = backend_with_grace(dir.path(), 24820, grace).await;
    let record = b.get(&spec.id).await.unwrap().expect("kept: in grace");
    let port = record.node_port.unwrap();
    let out = ssh(port, "alice", &pw, &[], "echo hello").await;
    assert_ne!(out.code, Some(0), "logins refused in grace: {out:?}");
    top_up(&b, &spec).await;
    let port = b.get(&spec.id).await.unwrap().unwrap().node_port.unwrap();
    let out = ssh(port, "alice", &pw, &[], "cat ~/f").await;
    assert_eq!(out.stdout, "kept\n", "{out:?}");
    b.delete(&spec.id).await.unwrap();
}

/// The whole flow through the service: a lease bought for a few seconds expires, its
/// owner's status says `grace`, a top-up brings it back (priced from the top-up, and the
/// reply says so) and the file written before the expiry is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_tops_up_a_lease_in_grace_and_its_owner_finds_the_home_intact() {
    use std::sync::Arc;

    use paygress_core::lease::{LeaseState, Requester};
    use paygress_core::memory::MemoryVerifier;
    use paygress_core::money::{Amount, MintUrl};
    use paygress_core::ports::RequestKey;
    use paygress_core::pricing::{DurationLimits, Rate};
    use paygress_core::protocol::{Reply, Request, SpawnRequest, StatusRequest, TopUpRequest};
    use paygress_core::{Paygress, ServiceConfig};

    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(120);
    let backend = backend_with_grace(dir.path(), 24830, grace).await;
    let mint = MintUrl::new("http://127.0.0.1:3338");
    let wallet = MemoryVerifier::new(vec![mint.clone()]);
    // One sat a second.
    let config = ServiceConfig::default()
        .with_rate(Rate::from_sats_per_hour(3600).unwrap())
        .with_limits(DurationLimits {
            min_seconds: 1,
            max_seconds: 3600,
        })
        .with_grace(grace);
    let service =
        Paygress::builder(config, Arc::new(wallet.clone()), Arc::new(backend.clone())).build();
    let owner = Requester::new("test", "owner");
    let key = |k: &str| RequestKey::new("test", k);

    let spawn = Request::Spawn(
        SpawnRequest::new(wallet.mint_token(&mint, Amount::sat(5))).with_ssh_username("alice"),
    );
    let access = match service.handle(&key("spawn"), &owner, spawn).await {
        Reply::AccessDetails(a) => a,
        other => panic!("expected access, got {other:?}"),
    };
    let port = access.node_port.unwrap();
    let pw = access.ssh_password.expose().to_owned();
    let out = ssh(port, "alice", &pw, &[], "echo kept > ~/f; echo ok").await;
    assert_eq!(out.stdout, "ok\n", "{out:?}");

    let past = access
        .expires_at
        .checked_add(SignedDuration::from_millis(500))
        .unwrap();
    tokio::time::sleep(Timestamp::now().duration_until(past).unsigned_abs()).await;
    let status = Request::Status(StatusRequest {
        pod_name: access.pod_name.to_string(),
    });
    match service.handle(&key("status"), &owner, status).await {
        Reply::Status(s) => assert_eq!(s.state, LeaseState::Grace),
        other => panic!("expected status, got {other:?}"),
    }
    let out = ssh(port, "alice", &pw, &[], "echo hello").await;
    assert_ne!(out.code, Some(0), "logins refused in grace: {out:?}");

    let top_up = Request::TopUp(TopUpRequest {
        pod_name: access.pod_name.to_string(),
        cashu_token: wallet.mint_token(&mint, Amount::sat(60)),
    });
    let before = Timestamp::now();
    let result = match service.handle(&key("top-up"), &owner, top_up).await {
        Reply::TopUp(t) => t,
        other => panic!("expected a top-up, got {other:?}"),
    };
    assert_eq!(result.added_seconds, 60);
    assert!(
        result.expires_at >= before.checked_add(SignedDuration::from_secs(60)).unwrap(),
        "60 s from the top-up, not from the past expiry: {result:?}"
    );
    assert!(result.message.is_some(), "the reply says so");
    let port = backend
        .get(&access.pod_name)
        .await
        .unwrap()
        .unwrap()
        .node_port
        .unwrap();
    let out = ssh(port, "alice", &pw, &[], "cat ~/f").await;
    assert_eq!(out.stdout, "kept\n", "{out:?}");
    backend.delete(&access.pod_name).await.unwrap();
}

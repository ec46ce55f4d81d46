//! The development mode without bubblewrap.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use paygress_core::contract;
use paygress_core::ports::PodBackend;
use paygress_local::SandboxMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsandboxed_runs_commands_and_kills_them_on_delete() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24200, SandboxMode::Unsandboxed).await;
    contract::run_all(&b).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose().to_owned();
    let out = ssh(port, "alice", &pw, &[], "echo $USER; exit 4").await;
    assert_eq!(out.stdout, "alice\n", "{out:?}");
    assert_eq!(out.code, Some(4));
    let out = ssh(port, "alice", &pw, &[], "pwd").await;
    assert_eq!(out.stdout.trim(), b.home_dir(&spec.id).to_str().unwrap());

    let n = unique_number().to_string();
    let _client = ssh_background(port, "alice", &pw, &format!("sleep {n}"));
    assert!(
        eventually(Duration::from_secs(30), async || !pids_with_cmdline(&[
            "sleep", &n
        ])
        .is_empty())
        .await,
        "sleep started"
    );
    b.delete(&spec.id).await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), async || pids_with_cmdline(&[
            "sleep", &n
        ])
        .is_empty())
        .await,
        "delete kills the lease's processes"
    );
    assert!(!b.home_dir(&spec.id).exists());
}

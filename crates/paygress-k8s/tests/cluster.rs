//! Tests against a real cluster (`deploy/kind-e2e.sh` creates one with kind). They use
//! the current kubeconfig context and the namespace `POD_NAMESPACE` (default
//! `user-workloads`), which must exist. Run with
//! `cargo test -p paygress-k8s --test cluster -- --ignored`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::ListParams;
use kube::{Api, Client};
use paygress_core::{Extension, PodBackend};
use paygress_k8s::{K8sBackend, K8sConfig};

async fn backend() -> (Client, K8sBackend) {
    let config = K8sConfig::from_env().expect("config");
    let client = Client::try_default()
        .await
        .expect("a kubeconfig or in-cluster account");
    (client.clone(), K8sBackend::new(client, config))
}

/// Polls `check` every second, up to `secs` seconds (cluster controllers act
/// asynchronously; this is waiting for an effect, not a timing assertion).
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("{what} did not happen within {secs} s");
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn contract_on_a_real_cluster() {
    let (_, backend) = backend().await;
    paygress_core::contract::run_all(&backend).await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn garbage_collector_removes_service_and_secret_after_job_delete() {
    let (client, backend) = backend().await;
    let ns = backend.config().namespace.clone();
    let spec = paygress_core::contract::sample_spec(5);
    let id = spec.id.to_string();
    let provisioned = backend.create(&spec).await.expect("create");
    assert!(provisioned.node_port.is_some(), "NodePort allocated");

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert!(
        services
            .get_opt(&format!("{id}-ssh"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        secrets
            .get_opt(&format!("{id}-auth"))
            .await
            .unwrap()
            .is_some()
    );

    backend.delete(&spec.id).await.expect("delete");
    let lp = ListParams::default().labels(&format!("paygress.io/lease={id}"));
    eventually(60, "GC of Service, Secret and Pod", || {
        let (services, secrets, pods, lp) =
            (services.clone(), secrets.clone(), pods.clone(), lp.clone());
        async move {
            services.list(&lp).await.unwrap().items.is_empty()
                && secrets.list(&lp).await.unwrap().items.is_empty()
                && pods.list(&lp).await.unwrap().items.is_empty()
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn top_up_raises_the_job_deadline_on_a_real_cluster() {
    let (client, backend) = backend().await;
    let jobs: Api<Job> = Api::namespaced(client, &backend.config().namespace);
    let spec = paygress_core::contract::sample_spec(2);
    backend.create(&spec).await.expect("create");
    let before = jobs.get(spec.id.as_str()).await.unwrap();
    let before = before.spec.unwrap().active_deadline_seconds.unwrap();
    let later = spec.expires_at + jiff::SignedDuration::from_mins(20);
    backend
        .extend(
            &spec.id,
            &Extension {
                expires_at: later,
                paid_msat: 1,
            },
        )
        .await
        .expect("the API server accepts a raised Job deadline");
    let after = jobs.get(spec.id.as_str()).await.unwrap();
    let after = after.spec.unwrap().active_deadline_seconds.unwrap();
    assert!(after >= before + 20 * 60 - 5, "{before} -> {after}");
    backend.delete(&spec.id).await.expect("delete");
}

/// Logs in with the system `ssh` (through `sshpass`) and runs `true`.
fn ssh_login(host: &str, port: u16, user: &str, password: &str) -> bool {
    std::process::Command::new("sshpass")
        .args(["-e", "ssh"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "ConnectTimeout=10",
            "-p",
            &port.to_string(),
            &format!("{user}@{host}"),
            "true",
        ])
        .env("SSHPASS", password)
        .status()
        .is_ok_and(|s| s.success())
}

/// The real image, end to end: the reply comes once sshd answers (so the first login
/// works at once), a top-up keeps the pod past its first deadline, and it ends at the
/// new one. Needs `ssh` and `sshpass`, and the node address reachable from here (kind on
/// Linux: the Docker network).
#[tokio::test]
#[ignore = "needs cluster"]
async fn ssh_login_top_up_and_outlive_the_first_deadline() {
    let (client, backend) = backend().await;
    let pods: Api<Pod> = Api::namespaced(client, &backend.config().namespace);
    let spec = paygress_core::contract::sample_spec(1);
    let provisioned = backend.create(&spec).await.expect("create (pod ready)");
    let host = provisioned.ssh_host.clone().expect("a host for buyers");
    let port = provisioned.node_port.unwrap_or(provisioned.ssh_port);
    let password = spec.password.expose().to_owned();
    assert!(
        ssh_login(&host, port, spec.username.as_str(), &password),
        "login right after the reply"
    );
    let first = provisioned.expires_at.expect("real expiry");
    backend
        .extend(
            &spec.id,
            &Extension {
                expires_at: first + jiff::SignedDuration::from_mins(2),
                paid_msat: 3,
            },
        )
        .await
        .expect("top-up");
    // Wait until 20 s past the first deadline: the pod must still run and accept logins.
    let wait = first
        .duration_since(jiff::Timestamp::now())
        .as_secs()
        .max(0)
        + 20;
    tokio::time::sleep(Duration::from_secs(wait.unsigned_abs())).await;
    let lp = ListParams::default().labels(&format!("paygress.io/lease={}", spec.id));
    let running = pods
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"));
    assert!(running, "the pod outlives its first deadline");
    assert!(
        ssh_login(&host, port, spec.username.as_str(), &password),
        "login after the first deadline"
    );
    // And it ends at the new one (the Job controller's deadline).
    eventually(180, "the pod ends at the topped-up deadline", || {
        let (pods, lp) = (pods.clone(), lp.clone());
        async move {
            pods.list(&lp).await.unwrap().items.iter().all(|p| {
                p.metadata.deletion_timestamp.is_some()
                    || p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running")
            })
        }
    })
    .await;
    backend.delete(&spec.id).await.expect("delete");
}

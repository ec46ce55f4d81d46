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

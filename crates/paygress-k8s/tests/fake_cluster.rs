//! The backend against the stateful fake API server of `common`, which behaves like a
//! cluster for what Paygress relies on: the Job controller (`startTime`,
//! deadlines, the pod failure policy, conditions, TTL), readiness, the garbage collector
//! (background and orphan deletes), node addresses, validation and the RBAC of
//! `deploy/k8s/10-rbac.yaml`. Time is the fake cluster's clock, moved by hand.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::sync::Arc;

use common::{Fake, NS, assert_empty, on_fake, pod_of, spec_now, wait_for_pod};
use http::Method;
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use paygress_core::{BackendError, Clock, Extension, LeasePhase, LeaseState, PodBackend};
use paygress_k8s::K8sConfig;
use serde_json::json;

#[tokio::test]
async fn contract_holds_against_the_fake_cluster() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    let backend = on_fake(client, &fake, K8sConfig::default());
    paygress_core::contract::run_all(&backend).await;
    assert_empty(&fake);
    // Pods are only watched: never created, patched or read one by one.
    assert!(
        fake.log()
            .iter()
            .filter(|r| r.path.contains("/pods"))
            .all(|r| r.method == Method::GET && r.path.ends_with("/pods")),
        "the backend only lists and watches pods"
    );
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

#[tokio::test]
async fn fake_server_rejects_raising_a_pods_deadline() {
    // The rule that shapes the design, encoded in the fake: a Pod's deadline only goes down.
    let (client, fake) = Fake::start();
    fake.insert(
        "pods",
        json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "p", "namespace": NS, "resourceVersion": "1" },
                "spec": { "activeDeadlineSeconds": 600, "containers": [] } }),
    );
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let raise = json!({ "spec": { "activeDeadlineSeconds": 1200 } });
    match pods
        .patch("p", &PatchParams::default(), &Patch::Merge(&raise))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert!(
                status
                    .message
                    .contains("must be less than or equal to previous value")
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let lower = json!({ "spec": { "activeDeadlineSeconds": 300 } });
    pods.patch("p", &PatchParams::default(), &Patch::Merge(&lower))
        .await
        .expect("lowering is allowed");
}

#[tokio::test]
async fn the_paid_clock_starts_when_the_pod_is_ready() {
    let (client, fake) = Fake::start();
    fake.ready_after(Some(40));
    let backend = Arc::new(on_fake(client, &fake, K8sConfig::default()));
    let spec = spec_now(&fake, 5);
    let id = spec.id.clone();
    let b = backend.clone();
    let s = spec.clone();
    let create = tokio::spawn(async move { b.create(&s).await });
    // While the pod starts, the lease is visible as provisioning, its time not started.
    wait_for_pod(&fake, &create).await;
    let record = backend.get(&id).await.unwrap().expect("the lease exists");
    assert_eq!(record.phase, LeasePhase::Provisioning);
    assert_eq!(
        record.state_at(fake.clock().now()),
        LeaseState::Provisioning
    );
    assert_eq!(record.remaining_seconds(fake.clock().now()), 300);
    fake.advance(40);
    let provisioned = create.await.unwrap().expect("create");
    let ready = spec.created_at + SignedDuration::from_secs(40);
    assert_eq!(
        provisioned.expires_at,
        Some(ready + SignedDuration::from_mins(5))
    );
    let record = backend.get(&id).await.unwrap().unwrap();
    assert_eq!(record.phase, LeasePhase::Running);
    assert_eq!(record.expires_at, ready + SignedDuration::from_mins(5));
    // The Job ends exactly then: its deadline counts from the resume, 40 s earlier.
    let job = fake.object("jobs", id.as_str()).unwrap();
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 340);
    assert_eq!(
        job["metadata"]["annotations"]["paygress.io/ready-at"],
        ready.to_string()
    );
    fake.advance(299);
    assert!(
        pod_of(&fake, id.as_str()).is_some(),
        "still running 1 s before expiry"
    );
    fake.advance(1);
    assert!(
        pod_of(&fake, id.as_str()).is_none(),
        "pod killed at the paid expiry"
    );
    let record = backend.get(&id).await.unwrap().unwrap();
    assert_eq!(record.phase, LeasePhase::Ended);
}

#[tokio::test(start_paused = true)]
async fn a_pod_never_ready_is_deleted_after_the_timeout() {
    let (client, fake) = Fake::start();
    fake.ready_after(None);
    let backend = on_fake(client, &fake, K8sConfig::default());
    let spec = spec_now(&fake, 5);
    match backend.create(&spec).await {
        Err(BackendError::Unavailable(e)) => {
            assert!(
                e.to_string().contains("not become ready within 120 s"),
                "{e}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_empty(&fake);
}

#[tokio::test]
async fn a_pod_that_fails_to_start_ends_the_wait_at_once() {
    let (client, fake) = Fake::start();
    fake.ready_after(None);
    let backend = Arc::new(on_fake(client, &fake, K8sConfig::default()));
    let spec = spec_now(&fake, 5);
    let b = backend.clone();
    let s = spec.clone();
    let create = tokio::spawn(async move { b.create(&s).await });
    wait_for_pod(&fake, &create).await;
    let pod = pod_of(&fake, spec.id.as_str()).unwrap();
    fake.crash(&pod);
    assert!(matches!(
        create.await.unwrap(),
        Err(BackendError::Rejected(_))
    ));
    assert_empty(&fake);
}

#[tokio::test]
async fn top_up_raises_the_job_deadline_and_the_controller_re_arms_it() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, K8sConfig::default());
    let spec = spec_now(&fake, 1);
    let id = spec.id.clone();
    let provisioned = backend.create(&spec).await.expect("create");
    let expires = provisioned.expires_at.unwrap();
    fake.advance(30);
    backend
        .extend(
            &id,
            &Extension {
                expires_at: expires + SignedDuration::from_secs(120),
                paid_msat: 99_000,
            },
        )
        .await
        .expect("extend");
    let job = fake.object("jobs", id.as_str()).unwrap();
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 180);
    fake.advance(60);
    assert!(pod_of(&fake, id.as_str()).is_some(), "running at 90 s");
    fake.advance(89);
    assert!(pod_of(&fake, id.as_str()).is_some(), "running at 179 s");
    fake.advance(1);
    assert!(pod_of(&fake, id.as_str()).is_none(), "gone at 180 s");
    // Only the Job was ever patched, but for the ownerReferences of its Secret and
    // Service (set once, right after the create).
    let patched: Vec<(String, serde_json::Value)> = fake
        .log()
        .iter()
        .filter(|r| r.method == Method::PATCH)
        .map(|r| (r.path.clone(), r.body.clone()))
        .collect();
    let (job_patches, owner_patches): (Vec<_>, Vec<_>) =
        patched.iter().partition(|(p, _)| p.ends_with(id.as_str()));
    assert_eq!(job_patches.len(), 2, "started, top-up: {patched:?}");
    assert_eq!(owner_patches.len(), 2, "{patched:?}");
    for (_, body) in owner_patches {
        assert_eq!(
            body.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["metadata"]
        );
        assert_eq!(
            body["metadata"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["ownerReferences"]
        );
    }
    // The finished Job (and everything it owns) goes after its TTL.
    fake.advance(60);
    assert_empty(&fake);
}

#[tokio::test]
async fn failed_dependent_creates_leave_nothing_behind() {
    for (suffix, code, reason) in [
        ("/services", 500, "InternalError"),
        ("/secrets", 503, "ServiceUnavailable"),
    ] {
        let (client, fake) = Fake::start();
        let backend = on_fake(client, &fake, K8sConfig::default());
        fake.fail(Method::POST, suffix, code, reason);
        let spec = spec_now(&fake, 5);
        assert!(
            matches!(
                backend.create(&spec).await,
                Err(BackendError::Unavailable(_))
            ),
            "{suffix}"
        );
        assert_empty(&fake);
        assert_eq!(backend.get(&spec.id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_rejected_service_is_a_rejection() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, K8sConfig::default());
    fake.fail(Method::POST, "/services", 422, "Invalid");
    let spec = spec_now(&fake, 5);
    assert!(matches!(
        backend.create(&spec).await,
        Err(BackendError::Rejected(_))
    ));
    assert_empty(&fake);
}

#[tokio::test]
async fn delete_removes_dependents_through_owner_references() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, K8sConfig::default());
    let spec = spec_now(&fake, 5);
    let provisioned = backend.create(&spec).await.expect("create");
    // The ownerReferences are set after the reply.
    backend.settled(&spec.id).await;
    let id = spec.id.as_str();
    let job_uid = fake.object("jobs", id).unwrap()["metadata"]["uid"].clone();
    for (resource, name) in [
        ("services", format!("{id}-ssh")),
        ("secrets", format!("{id}-auth")),
    ] {
        let object = fake.object(resource, &name).expect("created");
        assert_eq!(
            object["metadata"]["ownerReferences"][0]["uid"], job_uid,
            "{resource}"
        );
    }
    assert_eq!(provisioned.node_port, Some(30_000));
    assert_eq!(fake.names("pods").len(), 1);
    backend.delete(&spec.id).await.expect("delete");
    assert_empty(&fake);
}

#[tokio::test]
async fn an_eviction_replaces_the_pod_and_keeps_the_lease() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, K8sConfig::default());
    let spec = spec_now(&fake, 5);
    backend.create(&spec).await.expect("create");
    let first = pod_of(&fake, spec.id.as_str()).unwrap();
    fake.evict(&first);
    let second = pod_of(&fake, spec.id.as_str()).expect("a replacement pod");
    assert_ne!(first, second);
    let record = backend.get(&spec.id).await.unwrap().unwrap();
    assert_eq!(record.phase, LeasePhase::Running);
    assert_eq!(record.state_at(fake.clock().now()), LeaseState::Active);
    // Same Secret and Service: same password and port.
    assert_eq!(fake.names("secrets").len(), 1);
    assert_eq!(fake.names("services").len(), 1);
}

/// The backend contract core holds every backend to, one test per check, each on a
/// fresh fake cluster enforcing the shipped RBAC.
mod contract {
    use super::common::{Fake, on_fake};
    use paygress_k8s::{K8sBackend, K8sConfig};

    async fn fresh(_check: u16) -> (K8sBackend, Fake) {
        let (client, fake) = Fake::start();
        fake.enforce_rbac();
        (on_fake(client, &fake, K8sConfig::default()), fake)
    }

    paygress_core::pod_backend_tests!(fresh);
}

/// Creates that find their node's address unknown read the node once between them, not
/// once each (64 creates at once on a fresh backend read it up to 39 times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_arriving_together_read_their_node_once() {
    let (client, fake) = Fake::start();
    let backend = Arc::new(on_fake(client, &fake, K8sConfig::default()));
    let creates = (0..24).map(|_| {
        let backend = backend.clone();
        let spec = spec_now(&fake, 5);
        tokio::spawn(async move { backend.create(&spec).await })
    });
    for created in futures::future::join_all(creates).await {
        created.unwrap().unwrap();
    }
    let tally = fake.tally();
    assert_eq!(tally.get("GET nodes"), Some(&1), "{tally:?}");
    backend.shutdown().await;
}

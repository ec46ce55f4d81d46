//! The backend against the stateful fake API server of `common`, which behaves like a
//! cluster for what Paygress relies on: the Job controller (suspend, `startTime`,
//! deadlines, the pod failure policy, conditions, TTL), readiness, the garbage collector
//! (background and orphan deletes), node addresses, validation and the RBAC of
//! `deploy/k8s/10-rbac.yaml`. Time is the fake cluster's clock, moved by hand.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fake, NS, on_fake, spec_now};
use http::Method;
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use paygress_core::memory::{MemoryJournal, MemoryVerifier};
use paygress_core::{
    Amount, BackendError, Clock, DurationLimits, Extension, LeasePhase, LeaseState, MintUrl,
    Paygress, PodBackend, Reply, Request, RequestKey, Requester, ServiceConfig, SpawnRequest,
    StatusRequest, TopUpRequest, Unit,
};
use paygress_k8s::{K8sConfig, ServiceType};
use serde_json::json;

const ALL: [&str; 4] = ["jobs", "pods", "secrets", "services"];

fn assert_empty(fake: &Fake) {
    for resource in ALL {
        assert!(
            fake.names(resource).is_empty(),
            "{resource} left: {:?}",
            fake.names(resource)
        );
    }
}

/// Waits until the lease's pod exists; panics (with the task's outcome) if the task
/// creating it ended first.
async fn wait_for_pod<T: std::fmt::Debug>(fake: &Fake, task: &tokio::task::JoinHandle<T>) {
    while fake.names("pods").is_empty() {
        assert!(
            !task.is_finished(),
            "the create ended before its pod existed"
        );
        tokio::task::yield_now().await;
    }
}

fn pod_of(fake: &Fake, lease: &str) -> Option<String> {
    fake.names("pods")
        .into_iter()
        .find(|p| p.starts_with(lease))
}

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
    // Only the Job was ever patched.
    let patched: Vec<String> = fake
        .log()
        .iter()
        .filter(|r| r.method == Method::PATCH)
        .map(|r| r.path.clone())
        .collect();
    assert!(
        patched.iter().all(|p| p.ends_with(id.as_str())),
        "{patched:?}"
    );
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

#[tokio::test]
async fn a_failed_pod_ends_the_lease_and_get_and_list_say_so() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, K8sConfig::default());
    let spec = spec_now(&fake, 5);
    backend.create(&spec).await.expect("create");
    fake.crash(&pod_of(&fake, spec.id.as_str()).unwrap());
    let now = fake.clock().now();
    let record = backend.get(&spec.id).await.unwrap().unwrap();
    assert_eq!(record.phase, LeasePhase::Ended);
    assert_eq!(record.state_at(now), LeaseState::Expired);
    assert_eq!(record.remaining_seconds(now), 0);
    let listed = backend.list().await.unwrap();
    assert_eq!(listed[0].state_at(now), LeaseState::Expired);
    // A top-up of an ended lease is refused before any patch.
    assert!(matches!(
        backend
            .extend(
                &spec.id,
                &Extension {
                    expires_at: record.expires_at + SignedDuration::from_mins(5),
                    paid_msat: 1,
                }
            )
            .await,
        Err(BackendError::Rejected(_))
    ));
}

#[tokio::test]
async fn the_sweep_removes_what_an_orphaning_delete_left_running() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    let backend = on_fake(client, &fake, K8sConfig::default());
    let kept = spec_now(&fake, 5);
    let orphaned = spec_now(&fake, 5);
    backend.create(&kept).await.expect("create");
    backend.create(&orphaned).await.expect("create");
    assert_eq!(backend.sweep().await.unwrap(), 0, "nothing to sweep");
    // `kubectl delete job --cascade=orphan` (the raw API's default for Jobs).
    fake.delete("jobs", orphaned.id.as_str(), "Orphan");
    assert!(
        pod_of(&fake, orphaned.id.as_str()).is_some(),
        "the pod runs on, unpaid"
    );
    assert_eq!(fake.names("services").len(), 2);
    assert_eq!(backend.sweep().await.unwrap(), 3, "pod, Service and Secret");
    assert!(pod_of(&fake, orphaned.id.as_str()).is_none());
    assert_eq!(fake.names("services").len(), 1);
    assert_eq!(fake.names("secrets").len(), 1);
    assert!(
        pod_of(&fake, kept.id.as_str()).is_some(),
        "the paid lease is untouched"
    );
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

#[tokio::test]
async fn rbac_allows_exactly_what_the_backend_does_and_refuses_the_rest() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    // The pod takes a while: the backend lists, then watches.
    fake.ready_after(Some(3));
    let backend = Arc::new(on_fake(client.clone(), &fake, K8sConfig::default()));
    backend.check_reachability().await.expect("nodes readable");
    let spec = spec_now(&fake, 5);
    let b = backend.clone();
    let s = spec.clone();
    let create = tokio::spawn(async move { b.create(&s).await });
    wait_for_pod(&fake, &create).await;
    fake.advance(3);
    let provisioned = create.await.unwrap().expect("create");
    assert!(
        fake.log()
            .iter()
            .any(|r| r.path.ends_with("/pods") && r.query.contains_key("watch")),
        "the pod was watched"
    );
    backend
        .extend(
            &spec.id,
            &Extension {
                expires_at: provisioned.expires_at.unwrap() + SignedDuration::from_mins(5),
                paid_msat: 2,
            },
        )
        .await
        .expect("extend");
    backend.get(&spec.id).await.unwrap().expect("get");
    backend.list().await.unwrap();
    backend.sweep().await.unwrap();
    backend.delete(&spec.id).await.unwrap();
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
    // What the Role does not grant is refused: creating pods, reading a Secret.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "rogue" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    }))
    .unwrap();
    match pods.create(&PostParams::default(), &pod).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, NS);
    match secrets.get("anything").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(fake.forbidden(), ["create /pods", "get /secrets"]);
}

#[tokio::test]
async fn buyers_get_the_nodes_external_ip_then_internal_ip_or_ssh_host() {
    let (client, fake) = Fake::start();
    fake.add_node(
        "kind-worker",
        &[("InternalIP", "10.0.0.7"), ("ExternalIP", "198.51.100.7")],
    );
    let backend = on_fake(client.clone(), &fake, K8sConfig::default());
    let p = backend.create(&spec_now(&fake, 5)).await.unwrap();
    assert_eq!(p.ssh_host.as_deref(), Some("198.51.100.7"));

    let config = K8sConfig {
        ssh_host: Some("ssh.example.net".to_owned()),
        ..K8sConfig::default()
    };
    let backend = on_fake(client, &fake, config);
    let p = backend.create(&spec_now(&fake, 5)).await.unwrap();
    assert_eq!(p.ssh_host.as_deref(), Some("ssh.example.net"));
    assert_eq!(p.node_port, Some(30_001));
}

#[tokio::test]
async fn a_load_balancer_address_is_read_back() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    let config = K8sConfig {
        service_type: ServiceType::LoadBalancer,
        ..K8sConfig::default()
    };
    let backend = Arc::new(on_fake(client, &fake, config));
    let spec = spec_now(&fake, 5);
    let b = backend.clone();
    let s = spec.clone();
    let create = tokio::spawn(async move { b.create(&s).await });
    wait_for_pod(&fake, &create).await;
    // The pod is ready; the cloud has not given an address yet.
    fake.load_balancer_ip(Some("203.0.113.10"));
    let p = create.await.unwrap().expect("create");
    assert_eq!(p.ssh_host.as_deref(), Some("203.0.113.10"));
    assert_eq!(p.node_port, None);
    assert_eq!(p.ssh_port, 2222);
    let svc = fake
        .object("services", &format!("{}-ssh", spec.id))
        .unwrap();
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

#[tokio::test]
async fn startup_refuses_when_no_buyer_could_reach_a_pod() {
    let (client, fake) = Fake::start();
    fake.remove_nodes();
    fake.add_node("bare", &[("Hostname", "bare")]);
    let backend = on_fake(client.clone(), &fake, K8sConfig::default());
    let err = backend.check_reachability().await.unwrap_err().to_string();
    assert!(
        err.contains("no node has an ExternalIP or InternalIP"),
        "{err}"
    );
    assert!(err.contains("SSH_HOST"), "{err}");
    // Nodes not readable (a cluster without the ClusterRole).
    fake.fail(Method::GET, "/nodes", 403, "Forbidden");
    let err = backend.check_reachability().await.unwrap_err().to_string();
    assert!(err.contains("cannot read the cluster's nodes"), "{err}");
    for config in [
        K8sConfig {
            ssh_host: Some("ssh.example.net".to_owned()),
            ..K8sConfig::default()
        },
        K8sConfig {
            service_type: ServiceType::LoadBalancer,
            ..K8sConfig::default()
        },
    ] {
        on_fake(client.clone(), &fake, config)
            .check_reachability()
            .await
            .expect("SSH_HOST or a load balancer works without node addresses");
    }
}

#[tokio::test]
async fn the_fake_validates_what_the_api_server_would_refuse() {
    let (client, _fake) = Fake::start();
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client, NS);
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(json!({
        "metadata": { "name": "bad" },
        "spec": {
            "podFailurePolicy": { "rules": [] },
            "template": { "spec": { "restartPolicy": "OnFailure",
                "containers": [{ "name": "c", "image": "x" }] } },
        },
    }))
    .unwrap();
    match jobs.create(&PostParams::default(), &job).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("podFailurePolicy"), "{}", s.message);
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

// ------------------------------------------------------------- the whole service

const MINT: &str = "http://127.0.0.1:3338";

fn buyer() -> Requester {
    Requester::new("test", "buyer")
}

fn service(fake: &Fake, backend: Arc<paygress_k8s::K8sBackend>) -> (Paygress, MemoryVerifier) {
    let wallet = MemoryVerifier::new(vec![MintUrl::new(MINT)]);
    let config = ServiceConfig {
        limits: DurationLimits {
            min_seconds: 60,
            max_seconds: 24 * 3600,
        },
        ..ServiceConfig::default()
    };
    let service = Paygress::builder(config, Arc::new(wallet.clone()), backend)
        .journal(Arc::new(MemoryJournal::new()))
        .clock(Arc::new(fake.clock()))
        .build();
    (service, wallet)
}

#[tokio::test]
async fn lifecycle_a_60_s_lease_topped_up_by_120_s_runs_180_s_from_readiness() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    fake.ready_after(Some(5));
    let backend = Arc::new(on_fake(client, &fake, K8sConfig::default()));
    let (service, wallet) = service(&fake, backend.clone());
    let service = Arc::new(service);
    let mint = MintUrl::new(MINT);
    // The default rate: 60 sat an hour, 1 sat a minute.
    let token = wallet.mint_token(&mint, Amount::sat(1));
    let s = service.clone();
    let spawn = tokio::spawn(async move {
        s.handle(
            &RequestKey::new("test", "spawn"),
            &buyer(),
            Request::Spawn(SpawnRequest {
                cashu_token: token,
                ssh_username: Some("alice".to_owned()),
                pod_image: None,
                duration_minutes: Some(1),
                tier: None,
                ssh_public_key: None,
                password_login: None,
            }),
        )
        .await
    });
    wait_for_pod(&fake, &spawn).await;
    fake.advance(5);
    let access = match spawn.await.unwrap() {
        Reply::AccessDetails(a) => a,
        other => panic!("{other:?}"),
    };
    let ready = common::epoch() + SignedDuration::from_secs(5);
    assert_eq!(access.expires_at, ready + SignedDuration::from_secs(60));
    assert_eq!(access.ssh_host, "172.18.0.3");
    let pod = access.pod_name.clone();
    fake.advance(30);
    let top_up = wallet.mint_token(&mint, Amount::sat(2));
    match service
        .handle(
            &RequestKey::new("test", "top-up"),
            &buyer(),
            Request::TopUp(TopUpRequest {
                pod_name: pod.to_string(),
                cashu_token: top_up,
            }),
        )
        .await
    {
        Reply::TopUp(t) => assert_eq!(t.added_seconds, 120),
        other => panic!("{other:?}"),
    }
    fake.advance(60);
    assert!(pod_of(&fake, pod.as_str()).is_some(), "running at 90 s");
    let status = service
        .handle(
            &RequestKey::new("test", "status"),
            &buyer(),
            Request::Status(StatusRequest {
                pod_name: pod.to_string(),
            }),
        )
        .await;
    match status {
        Reply::Status(s) => {
            assert_eq!(s.state, LeaseState::Active);
            assert_eq!(s.remaining_seconds, 90);
        }
        other => panic!("{other:?}"),
    }
    fake.advance(90);
    assert!(pod_of(&fake, pod.as_str()).is_none(), "gone at 180 s");
    assert_eq!(service.reap_expired().await.unwrap(), 1);
    assert_empty(&fake);
    assert_eq!(wallet.balance(&mint, Unit::Sat), 3);
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

#[tokio::test(start_paused = true)]
async fn lifecycle_a_pod_never_ready_is_refunded_in_full() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    fake.ready_after(None);
    let config = K8sConfig {
        ready_timeout: Duration::from_secs(120),
        ..K8sConfig::default()
    };
    let backend = Arc::new(on_fake(client, &fake, config));
    let (service, wallet) = service(&fake, backend);
    let mint = MintUrl::new(MINT);
    let token = wallet.mint_token(&mint, Amount::sat(10));
    let reply = service
        .handle(
            &RequestKey::new("test", "spawn"),
            &buyer(),
            Request::Spawn(SpawnRequest {
                cashu_token: token,
                ssh_username: Some("alice".to_owned()),
                pod_image: None,
                duration_minutes: Some(10),
                tier: None,
                ssh_public_key: None,
                password_login: None,
            }),
        )
        .await;
    let refund = match reply {
        Reply::Error(e) => e.refund_token.expect("a refund"),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        wallet.spend(&refund),
        Some(Amount::sat(10)),
        "refunded in full"
    );
    assert_eq!(wallet.balance(&mint, Unit::Sat), 0);
    assert_empty(&fake);
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
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

//! The backend against the stateful fake API server: what happens after a lease runs
//! (a failed pod, orphans swept), the RBAC of `deploy/k8s/10-rbac.yaml`, the address
//! buyers are given, the startup check, and the API's validation as the fake encodes it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::sync::Arc;

use common::{Fake, NS, on_fake, pod_of, spec_now, wait_for_pod};
use http::Method;
use jiff::SignedDuration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::PostParams;
use paygress_core::{BackendError, Clock, Extension, LeasePhase, LeaseState, PodBackend};
use paygress_k8s::{K8sConfig, ServiceType};
use serde_json::json;

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
    // Sweeping at every call (the watched path is in watch_view.rs).
    let backend = on_fake(client, &fake, K8sConfig::default()).without_watch();
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
    // The pod (running unpaid) at once; the Service and Secret, left without an owner
    // like those of a create under way, once older than any create can take.
    assert_eq!(backend.sweep().await.unwrap(), 1, "the pod");
    assert!(pod_of(&fake, orphaned.id.as_str()).is_none());
    assert_eq!(fake.names("services").len(), 2);
    fake.advance(120 + 30);
    assert_eq!(backend.sweep().await.unwrap(), 2, "Service and Secret");
    assert_eq!(fake.names("services").len(), 1);
    assert_eq!(fake.names("secrets").len(), 1);
    assert!(
        pod_of(&fake, kept.id.as_str()).is_some(),
        "the paid lease is untouched"
    );
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

#[tokio::test]
async fn the_sweep_lists_in_pages_and_finds_orphans_on_every_page() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, K8sConfig::default())
        .without_watch()
        .with_list_page(2);
    let mut specs = Vec::new();
    for _ in 0..5 {
        let spec = spec_now(&fake, 5);
        backend.create(&spec).await.expect("create");
        specs.push(spec);
    }
    assert_eq!(backend.sweep().await.unwrap(), 0, "nothing to sweep");
    // Three Jobs deleted with orphaning: their pods run on, on whichever pages.
    for spec in &specs[..3] {
        fake.delete("jobs", spec.id.as_str(), "Orphan");
    }
    let before = fake.log().len();
    assert_eq!(backend.sweep().await.unwrap(), 3, "the three pods");
    for spec in &specs[..3] {
        assert!(pod_of(&fake, spec.id.as_str()).is_none());
    }
    for spec in &specs[3..] {
        assert!(
            pod_of(&fake, spec.id.as_str()).is_some(),
            "paid leases untouched"
        );
    }
    let pages = |resource: &str| -> Vec<Option<String>> {
        fake.log()[before..]
            .iter()
            .filter(|r| r.method == Method::GET && r.path.ends_with(&format!("/{resource}")))
            .map(|r| r.query.get("limit").cloned())
            .collect()
    };
    assert_eq!(
        pages("pods"),
        vec![Some("2".to_owned()); 3],
        "5 pods, 2 a page"
    );
    assert_eq!(pages("services"), vec![Some("2".to_owned()); 3]);
    assert_eq!(
        pages("jobs"),
        vec![Some("2".to_owned())],
        "2 Jobs left: one page"
    );
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

#[tokio::test]
async fn a_pod_waits_for_the_secret_its_environment_reads() {
    // The kubelet's rule the create flow relies on, encoded in the fake: no container
    // starts before the Secret its environment reads exists.
    let (client, fake) = Fake::start();
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "j" },
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "c", "image": "busybox", "env": [{
                "name": "P",
                "valueFrom": { "secretKeyRef": { "name": "j-auth", "key": "password" } },
            }] }],
        } } },
    }))
    .unwrap();
    let job = jobs.create(&PostParams::default(), &job).await.unwrap();
    let pod = pod_of(&fake, "j").expect("the controller made a pod");
    fake.advance(5);
    assert_eq!(
        fake.object("pods", &pod).unwrap()["status"]["phase"],
        "Pending"
    );
    let secrets: Api<Secret> = Api::namespaced(client, NS);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "j-auth", "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": "j",
            "uid": job.metadata.uid.unwrap(), "controller": true,
        }] },
        "stringData": { "password": "x" },
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let pod = fake.object("pods", &pod).unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["conditions"][0]["type"], "Ready");
}

#[tokio::test]
async fn label_selected_lists_and_watches_follow_relabels_and_deletes() {
    // The fake answers label selectors from an index kept on every write (so that one
    // lease's objects among thousands cost what they are): what it answers must stay
    // what matching every object would answer, through relabels and deletes.
    use futures::StreamExt;
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
    let (client, fake) = Fake::start();
    let pods: Api<Pod> = Api::namespaced(client, NS);
    for (name, tier) in [("p1", "a"), ("p2", "a"), ("p3", "b")] {
        fake.insert(
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": name, "labels": { "tier": tier, "lease": name } },
            }),
        );
    }
    let names = async |selector: &str, name: Option<&str>| -> Vec<String> {
        let mut lp = ListParams::default().labels(selector);
        if let Some(name) = name {
            lp = lp.fields(&format!("metadata.name={name}"));
        }
        let list = pods.list(&lp).await.unwrap();
        list.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(names("tier=a", None).await, ["p1", "p2"]);
    assert_eq!(names("tier=a,lease=p2", None).await, ["p2"]);
    assert_eq!(names("lease=p2,tier=b", None).await, Vec::<String>::new());
    assert_eq!(names("tier=c", None).await, Vec::<String>::new());
    assert_eq!(names("", None).await, ["p1", "p2", "p3"]);
    assert_eq!(names("tier=b", Some("p3")).await, ["p3"]);
    assert_eq!(names("tier=a", Some("p3")).await, Vec::<String>::new());

    let pp = PatchParams::default();
    let relabel =
        |tier: Option<&str>| Patch::Merge(json!({ "metadata": { "labels": { "tier": tier } } }));
    pods.patch("p1", &pp, &relabel(Some("b"))).await.unwrap();
    assert_eq!(names("tier=a", None).await, ["p2"]);
    assert_eq!(names("tier=b", None).await, ["p1", "p3"]);
    pods.patch("p3", &pp, &relabel(None)).await.unwrap();
    assert_eq!(names("tier=b", None).await, ["p1"]);
    assert_eq!(names("lease=p3", None).await, ["p3"]);
    pods.delete("p2", &DeleteParams::default()).await.unwrap();
    assert_eq!(names("tier=a", None).await, Vec::<String>::new());
    assert_eq!(names("lease=p2", None).await, Vec::<String>::new());

    // A watch from no resourceVersion: the matching objects as they are, then changes.
    let mut events = pods
        .watch(&WatchParams::default().labels("tier=b"), "0")
        .await
        .unwrap()
        .boxed();
    let mut next = async || match events.next().await.unwrap().unwrap() {
        WatchEvent::Added(p) => p.metadata.name.unwrap(),
        other => panic!("expected ADDED, got {other:?}"),
    };
    assert_eq!(next().await, "p1");
    fake.insert(
        "pods",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p4", "labels": { "tier": "b" } },
        }),
    );
    assert_eq!(next().await, "p4");
}

//! The backend's watched view of lease Jobs (what `list` reads once synced) against the
//! fake API: leases written by another replica or `kubectl` appear and disappear
//! through the watch, `list` reads the API before the view is synced and while its
//! watch is broken, and the sweep lists only when a Job went away by another hand.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::{Fake, on_fake, pod_of, spec_now};
use http::Method;
use paygress_core::{LeaseId, PodBackend};
use paygress_k8s::{K8sBackend, K8sConfig};

/// LIST requests of lease Jobs (not watches) the fake has answered.
fn job_lists(fake: &Fake) -> usize {
    fake.log()
        .iter()
        .filter(|r| {
            r.method == Method::GET && r.path.ends_with("/jobs") && !r.query.contains_key("watch")
        })
        .count()
}

/// LIST requests of any kind the sweep reads (Jobs, pods, Services, Secrets). Writes a
/// create left after its reply (PATCHes) may land at any time and are not counted.
fn lists(fake: &Fake) -> usize {
    fake.log()
        .iter()
        .filter(|r| {
            r.method == Method::GET
                && !r.query.contains_key("watch")
                && ["/jobs", "/pods", "/services", "/secrets"]
                    .iter()
                    .any(|kind| r.path.ends_with(kind))
        })
        .count()
}

/// Polls `done` every 10 ms for up to 60 s (the watch's retry backoff included).
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..6000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 60 s: {what}");
}

async fn listed(backend: &K8sBackend, id: &LeaseId) -> bool {
    backend.list().await.unwrap().iter().any(|r| &r.id == id)
}

#[tokio::test]
async fn leases_written_elsewhere_come_and_go_through_the_watch_without_a_list() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    let backend = on_fake(client.clone(), &fake, K8sConfig::default());
    // Another replica (or kubectl) on the same cluster.
    let other = on_fake(client, &fake, K8sConfig::default()).without_watch();
    backend.start_watch();
    eventually("the view syncs", async || backend.watch_synced()).await;
    let lists = job_lists(&fake);
    let spec = spec_now(&fake, 5);
    other.create(&spec).await.unwrap();
    let from_api = other.get(&spec.id).await.unwrap().unwrap();
    assert!(from_api.node_port.is_some());
    // The view's record becomes the API's, node port included.
    eventually("the other replica's lease is listed", async || {
        backend.list().await.unwrap().iter().any(|r| r == &from_api)
    })
    .await;
    // `kubectl delete job` (background propagation).
    fake.delete("jobs", spec.id.as_str(), "Background");
    eventually("the deleted lease is no longer listed", async || {
        !listed(&backend, &spec.id).await
    })
    .await;
    assert_eq!(job_lists(&fake), lists, "list read the view, not the API");
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

#[tokio::test]
async fn list_reads_the_api_while_the_watch_is_broken_and_the_view_after_it_recovers() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client.clone(), &fake, K8sConfig::default());
    let other = on_fake(client, &fake, K8sConfig::default()).without_watch();
    // Before the view has synced, `list` reads the API (and starts the watches).
    let first = spec_now(&fake, 5);
    other.create(&first).await.unwrap();
    let lists = job_lists(&fake);
    assert!(!backend.watch_synced());
    assert!(listed(&backend, &first.id).await);
    assert!(
        job_lists(&fake) > lists,
        "read from the API before the sync"
    );
    eventually("the view syncs", async || backend.watch_synced()).await;
    // The API server drops the watches of Jobs and refuses new ones.
    fake.refuse_watches("jobs", true);
    eventually("the broken watch is noticed", async || {
        !backend.watch_synced()
    })
    .await;
    let second = spec_now(&fake, 5);
    other.create(&second).await.unwrap();
    let lists = job_lists(&fake);
    assert!(
        listed(&backend, &second.id).await,
        "a lease made while the watch is broken is listed"
    );
    assert!(job_lists(&fake) > lists, "read from the API while broken");
    // The watch comes back, resumes, and the view has what it missed.
    fake.refuse_watches("jobs", false);
    eventually("the view syncs again", async || backend.watch_synced()).await;
    let lists = job_lists(&fake);
    assert!(listed(&backend, &second.id).await);
    assert!(listed(&backend, &first.id).await);
    assert_eq!(job_lists(&fake), lists, "read from the view again");
}

#[tokio::test]
async fn a_watch_resumed_past_the_fakes_history_lists_again() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client.clone(), &fake, K8sConfig::default());
    let other = on_fake(client, &fake, K8sConfig::default()).without_watch();
    backend.start_watch();
    eventually("the view syncs", async || backend.watch_synced()).await;
    fake.refuse_watches("jobs", true);
    eventually("the broken watch is noticed", async || {
        !backend.watch_synced()
    })
    .await;
    let spec = spec_now(&fake, 5);
    other.create(&spec).await.unwrap();
    // More events than the fake keeps: the resumed watch gets 410 Gone.
    for _ in 0..paygress_k8s::fake::HISTORY {
        fake.insert(
            "configmaps",
            serde_json::json!({ "metadata": { "name": "churn" } }),
        );
    }
    let lists = job_lists(&fake);
    fake.refuse_watches("jobs", false);
    eventually("the view syncs again", async || backend.watch_synced()).await;
    assert!(job_lists(&fake) > lists, "the watcher listed again");
    assert!(listed(&backend, &spec.id).await);
}

#[tokio::test]
async fn the_sweep_lists_only_after_a_job_went_away_by_another_hand() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, K8sConfig::default());
    backend.start_watch();
    eventually("the view syncs", async || backend.watch_synced()).await;
    let ours = spec_now(&fake, 5);
    let orphaned = spec_now(&fake, 5);
    backend.create(&ours).await.unwrap();
    backend.create(&orphaned).await.unwrap();
    // The first sweep looks (orphans may predate this process).
    assert_eq!(backend.sweep().await.unwrap(), 0);
    let before = lists(&fake);
    assert_eq!(backend.sweep().await.unwrap(), 0);
    assert_eq!(lists(&fake), before, "nothing went away: no list");
    // This backend's own delete (background propagation) leaves no orphans.
    backend.delete(&ours.id).await.unwrap();
    eventually("the watch saw the delete", async || {
        !listed(&backend, &ours.id).await
    })
    .await;
    let before = lists(&fake);
    assert_eq!(backend.sweep().await.unwrap(), 0);
    assert_eq!(lists(&fake), before, "our own delete: no list");
    // `kubectl delete job --cascade=orphan`: the pod runs on, unpaid, until swept.
    fake.delete("jobs", orphaned.id.as_str(), "Orphan");
    let mut swept = 0;
    eventually("the orphaned pod is swept", async || {
        swept += backend.sweep().await.unwrap();
        swept == 1
    })
    .await;
    assert!(pod_of(&fake, orphaned.id.as_str()).is_none());
    // The Service and Secret, left without an owner (as those of a create under way),
    // once older than any create can take: the sweep keeps looking until then.
    assert_eq!(fake.names("services").len(), 1);
    fake.advance(120 + 30);
    eventually("the orphans are swept", async || {
        swept += backend.sweep().await.unwrap();
        swept == 3
    })
    .await;
    assert!(pod_of(&fake, orphaned.id.as_str()).is_none());
    assert!(fake.names("services").is_empty());
    assert!(fake.names("secrets").is_empty());
}

/// The watch may report this backend's own delete before the delete's reply arrives (a
/// real API server sends both at once): the sweep still knows the Job went away by our
/// hand and lists nothing. (With 10,000 leases, each lease the reaper removed could make
/// the next sweep list every object, seconds of lists while expiries waited.)
#[tokio::test]
async fn our_delete_seen_by_the_watch_before_its_reply_does_not_make_the_sweep_list() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, K8sConfig::default());
    backend.start_watch();
    eventually("the view syncs", async || backend.watch_synced()).await;
    let spec = spec_now(&fake, 5);
    backend.create(&spec).await.unwrap();
    backend.shutdown().await;
    // The first sweep looks (orphans may predate this process).
    assert_eq!(backend.sweep().await.unwrap(), 0);
    fake.delay_replies(Duration::from_millis(300));
    backend.delete(&spec.id).await.unwrap();
    fake.delay_replies(Duration::ZERO);
    assert!(fake.names("jobs").is_empty());
    let before = lists(&fake);
    assert_eq!(backend.sweep().await.unwrap(), 0);
    assert_eq!(lists(&fake), before, "our own delete: no list");
}

/// A sweep that meets this process's own create under way (its Secret and Service not
/// owned yet) does not list everything again at the next pass: under a steady stream
/// of creates it would list at every pass (10,000 leases: a reaper pass of seconds).
#[tokio::test]
async fn a_create_under_way_does_not_make_the_next_sweep_list_again() {
    let (client, fake) = Fake::start();
    fake.ready_after(Some(3));
    let backend = std::sync::Arc::new(on_fake(client, &fake, K8sConfig::default()));
    backend.start_watch();
    eventually("the view syncs", async || backend.watch_synced()).await;
    let spec = spec_now(&fake, 5);
    // The ownerReference patches' first tries fail: the objects stay unowned a while.
    for kind in ["secrets", "services"] {
        let suffix = match kind {
            "secrets" => format!("/secrets/{}-auth", spec.id),
            _ => format!("/services/{}-ssh", spec.id),
        };
        fake.fail(http::Method::PATCH, &suffix, 500, "InternalError");
    }
    let (b, s) = (backend.clone(), spec.clone());
    let create = tokio::spawn(async move { b.create(&s).await });
    common::wait_for_pod(&fake, &create).await;
    // The first sweep looks, and leaves the create's objects alone.
    assert_eq!(backend.sweep().await.unwrap(), 0);
    let secret = fake
        .object("secrets", &format!("{}-auth", spec.id))
        .unwrap();
    assert!(
        secret["metadata"]["ownerReferences"].is_null(),
        "the sweep met the Secret unowned"
    );
    let before = lists(&fake);
    assert_eq!(backend.sweep().await.unwrap(), 0);
    assert_eq!(lists(&fake), before, "a create under way: no second list");
    fake.advance(3);
    create.await.unwrap().expect("create");
}

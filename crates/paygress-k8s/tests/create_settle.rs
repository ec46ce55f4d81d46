//! The writes a create leaves to finish after its reply (the Secret's and Service's
//! ownerReferences, the patch starting the paid clock): what this backend's reads and
//! top-ups see meanwhile, what is left when they never land (as after a crash), and
//! how the sweep and a failed create deal with Secrets and Services without an owner.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fake, assert_empty, on_fake, pod_of, spec_now};
use http::Method;
use jiff::SignedDuration;
use paygress_core::{BackendError, Extension, LeasePhase, LeaseState, PodBackend};
use paygress_k8s::K8sConfig;
use serde_json::json;

const RTT: Duration = Duration::from_millis(25);

/// Every try of the writes a create leaves to finish (`SETTLE_ATTEMPTS`).
const ATTEMPTS: usize = 5;

fn with_host() -> K8sConfig {
    K8sConfig {
        ssh_host: Some("pods.example.org".to_owned()),
        ..K8sConfig::default()
    }
}

/// Makes every ownerReference patch of lease `id`'s Secret and Service fail.
fn refuse_owner_patches(fake: &Fake, id: &str) {
    fail_patches(fake, &format!("/secrets/{id}-auth"), ATTEMPTS);
    fail_patches(fake, &format!("/services/{id}-ssh"), ATTEMPTS);
}

/// The next `times` PATCHes of a path ending in `suffix` are answered 500.
fn fail_patches(fake: &Fake, suffix: &str, times: usize) {
    for _ in 0..times {
        fake.fail(Method::PATCH, suffix, 500, "InternalError");
    }
}

/// A top-up taken right after the reply: the started patch is delayed (its first try
/// failed); `get` shows the lease as it will make it (running until the expiry the
/// buyer was told) and `extend` waits for it, so the top-up is what stays.
#[tokio::test(start_paused = true)]
async fn a_top_up_right_after_the_reply_waits_for_the_started_patch() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let backend = on_fake(client, &fake, with_host());
    let spec = spec_now(&fake, 5);
    let id = spec.id.as_str();
    fail_patches(&fake, &format!("/jobs/{id}"), 1);
    let provisioned = backend.create(&spec).await.expect("create");
    let told = provisioned.expires_at.unwrap();
    // What core reads before a top-up, while the patch has not landed.
    let record = backend.get(&spec.id).await.unwrap().unwrap();
    assert_eq!(record.phase, LeasePhase::Running);
    assert_eq!(record.expires_at, told);
    let job = fake.object("jobs", id).unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["paygress.io/starting"],
        "true"
    );
    let extension = Extension {
        expires_at: told + SignedDuration::from_secs(120),
        paid_msat: 99_000,
    };
    backend.extend(&spec.id, &extension).await.expect("extend");
    let job = fake.object("jobs", id).unwrap();
    let annotations = &job["metadata"]["annotations"];
    assert_eq!(
        annotations["paygress.io/expires-at"],
        extension.expires_at.to_string()
    );
    assert!(annotations.get("paygress.io/starting").is_none());
    // Counted from the Job's start (the fake's clock has not moved): paid + 120 s.
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 300 + 120);
}

/// `list` shows a lease whose started patch is on its way as that patch makes it.
#[tokio::test(start_paused = true)]
async fn list_shows_the_lease_as_the_started_patch_makes_it() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let backend = on_fake(client, &fake, with_host()).without_watch();
    let spec = spec_now(&fake, 5);
    fail_patches(&fake, &format!("/jobs/{}", spec.id), 1);
    let told = backend.create(&spec).await.unwrap().expires_at.unwrap();
    let listed = backend.list().await.unwrap();
    let record = listed.iter().find(|r| r.id == spec.id).unwrap();
    assert_eq!(record.phase, LeasePhase::Running);
    assert_eq!(record.expires_at, told);
    // The Job itself still waits for the patch (its retry comes later).
    let job = fake.object("jobs", spec.id.as_str()).unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["paygress.io/starting"],
        "true"
    );
}

/// A retry of the started patch first reads the Job: when the patch has landed already
/// (its answer was lost) and another replica has topped the lease up since, the retry
/// writes nothing.
#[tokio::test(start_paused = true)]
async fn a_retried_started_patch_never_undoes_another_replicas_top_up() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let backend = on_fake(client, &fake, with_host());
    let spec = spec_now(&fake, 5);
    let id = spec.id.as_str();
    fail_patches(&fake, &format!("/jobs/{id}"), 1);
    backend.create(&spec).await.expect("create");
    // The first try has failed (as far as this process knows); the retry waits.
    tokio::time::sleep(RTT * 3).await;
    // Meanwhile: the patch had landed after all, and another replica topped up.
    let mut job = fake.object("jobs", id).unwrap();
    let annotations = job["metadata"]["annotations"].as_object_mut().unwrap();
    annotations.remove("paygress.io/starting");
    annotations.insert(
        "paygress.io/ready-at".into(),
        json!(spec.created_at.to_string()),
    );
    annotations.insert(
        "paygress.io/expires-at".into(),
        json!("2026-01-01T09:00:00Z"),
    );
    job["spec"]["activeDeadlineSeconds"] = json!(9 * 3600);
    fake.insert("jobs", job);
    backend.settled(&spec.id).await;
    let record = backend.get(&spec.id).await.unwrap().unwrap();
    assert_eq!(record.expires_at.to_string(), "2026-01-01T09:00:00Z");
    assert_eq!(
        fake.object("jobs", id).unwrap()["spec"]["activeDeadlineSeconds"],
        9 * 3600
    );
}

/// The started patch never lands (as when the process dies right after the reply): the
/// lease reads as starting (the reaper leaves it alone) and its Job runs on its
/// provisioning deadline, past the expiry the buyer was told.
#[tokio::test(start_paused = true)]
async fn a_started_patch_that_never_lands_never_shortchanges_the_buyer() {
    let (client, fake) = Fake::start();
    fake.ready_after(Some(3));
    let backend = Arc::new(on_fake(client, &fake, K8sConfig::default()));
    let spec = spec_now(&fake, 5);
    let id = spec.id.as_str();
    for _ in 0..ATTEMPTS {
        fail_patches(&fake, &format!("/jobs/{id}"), 1);
    }
    let b = backend.clone();
    let s = spec.clone();
    let create = tokio::spawn(async move { b.create(&s).await });
    common::wait_for_pod(&fake, &create).await;
    fake.advance(3);
    let told = create.await.unwrap().expect("create").expires_at.unwrap();
    assert_eq!(told, spec.created_at + SignedDuration::from_secs(3 + 300));
    backend.settled(&spec.id).await;
    let record = backend.get(&spec.id).await.unwrap().unwrap();
    assert_eq!(record.phase, LeasePhase::Provisioning);
    // One second before the told expiry... and at it: the pod runs, nothing is due.
    fake.advance(300 - 1);
    assert!(pod_of(&fake, id).is_some());
    fake.advance(1);
    assert!(pod_of(&fake, id).is_some(), "running at the told expiry");
    let record = backend.get(&spec.id).await.unwrap().unwrap();
    assert_eq!(record.state_at(told), LeaseState::Provisioning);
    // It ends on its provisioning deadline: paid time + readiness timeout + 1 s.
    fake.advance(120 - 3);
    assert!(pod_of(&fake, id).is_some());
    fake.advance(1);
    assert!(pod_of(&fake, id).is_none(), "ended at its deadline");
    let record = backend.get(&spec.id).await.unwrap().unwrap();
    assert_eq!(record.phase, LeasePhase::Ended);
}

/// The ownerReferences never land (as when the process dies right after the create):
/// the next process's sweep gives Secret and Service their Job as owner, and the
/// lease's delete then takes them.
#[tokio::test(start_paused = true)]
async fn the_sweep_adopts_what_a_create_left_without_owner() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    let backend = on_fake(client.clone(), &fake, K8sConfig::default());
    let spec = spec_now(&fake, 5);
    let id = spec.id.as_str();
    refuse_owner_patches(&fake, id);
    backend.create(&spec).await.expect("create");
    backend.settled(&spec.id).await;
    let secret = format!("{id}-auth");
    let service = format!("{id}-ssh");
    for (resource, name) in [("secrets", &secret), ("services", &service)] {
        let object = fake.object(resource, name).unwrap();
        assert!(
            object["metadata"]["ownerReferences"].is_null(),
            "{resource}"
        );
    }
    // The next process: its first sweep looks.
    let next = on_fake(client, &fake, K8sConfig::default());
    assert_eq!(next.sweep().await.unwrap(), 0, "nothing removed");
    let job_uid = fake.object("jobs", id).unwrap()["metadata"]["uid"].clone();
    for (resource, name) in [("secrets", &secret), ("services", &service)] {
        let object = fake.object(resource, name).unwrap();
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], job_uid);
    }
    next.delete(&spec.id).await.unwrap();
    assert_empty(&fake);
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

/// The ownerReferences never landed and the Job went away (its TTL): the Secret and
/// Service are deleted by the sweep once older than any create under way can be.
#[tokio::test(start_paused = true)]
async fn the_sweep_removes_what_a_create_left_without_owner_once_its_job_is_gone() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client.clone(), &fake, K8sConfig::default());
    let spec = spec_now(&fake, 5);
    let id = spec.id.as_str();
    refuse_owner_patches(&fake, id);
    backend.create(&spec).await.expect("create");
    backend.settled(&spec.id).await;
    fake.delete("jobs", id, "Background");
    assert_eq!(fake.names("secrets").len(), 1, "no owner: not collected");
    let next = on_fake(client, &fake, K8sConfig::default()).without_watch();
    assert_eq!(
        next.sweep().await.unwrap(),
        0,
        "young: maybe a create under way"
    );
    fake.advance(120 + 30);
    assert_eq!(next.sweep().await.unwrap(), 2, "Secret and Service");
    assert_empty(&fake);
}

/// A sweep while a create is under way leaves its Secret and Service alone.
#[tokio::test]
async fn the_sweep_leaves_a_create_under_way_alone() {
    let (client, fake) = Fake::start();
    fake.ready_after(Some(3));
    let backend = Arc::new(on_fake(client, &fake, K8sConfig::default()).without_watch());
    let spec = spec_now(&fake, 5);
    let b = backend.clone();
    let s = spec.clone();
    let create = tokio::spawn(async move { b.create(&s).await });
    common::wait_for_pod(&fake, &create).await;
    assert_eq!(backend.sweep().await.unwrap(), 0);
    assert_eq!(fake.names("secrets").len(), 1);
    assert_eq!(fake.names("services").len(), 1);
    fake.advance(3);
    create.await.unwrap().expect("create");
}

/// A failed create deletes its Secret and Service itself: without their
/// ownerReferences, the Job's deletion would not take them.
#[tokio::test(start_paused = true)]
async fn a_failed_create_removes_secret_and_service_without_owner() {
    let (client, fake) = Fake::start();
    fake.ready_after(None);
    let backend = on_fake(client, &fake, K8sConfig::default());
    let spec = spec_now(&fake, 5);
    refuse_owner_patches(&fake, spec.id.as_str());
    assert!(matches!(
        backend.create(&spec).await,
        Err(BackendError::Unavailable(_))
    ));
    assert_empty(&fake);
}

/// An orderly shutdown (`PodBackend::shutdown`, called by the node within its grace)
/// lets the writes a create left land: the Job ends at the expiry the buyer was told
/// and its Secret and Service are owned by it, not left starting until the
/// provisioning deadline.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_writes_a_create_left() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let backend = on_fake(client, &fake, with_host());
    let spec = spec_now(&fake, 5);
    let id = spec.id.as_str();
    // The first try of the started patch fails: it is still on its way after the reply.
    fail_patches(&fake, &format!("/jobs/{id}"), 1);
    let told = backend.create(&spec).await.unwrap().expires_at.unwrap();
    let job = fake.object("jobs", id).unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["paygress.io/starting"],
        "true"
    );
    let dyn_backend: Arc<dyn PodBackend> = Arc::new(backend);
    dyn_backend.shutdown().await;
    let job = fake.object("jobs", id).unwrap();
    let annotations = &job["metadata"]["annotations"];
    assert!(annotations.get("paygress.io/starting").is_none());
    assert_eq!(annotations["paygress.io/expires-at"], told.to_string());
    for (kind, name) in [
        ("secrets", format!("{id}-auth")),
        ("services", format!("{id}-ssh")),
    ] {
        let owners = &fake.object(kind, &name).unwrap()["metadata"]["ownerReferences"];
        assert_eq!(owners[0]["kind"], "Job", "{kind}");
    }
}

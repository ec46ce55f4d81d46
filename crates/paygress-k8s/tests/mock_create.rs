//! Creating a lease against an API server that checks every request: the exact Job,
//! Secret and Service, and what each failure of the Job's create means (and removes).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::lease::*;
use common::{
    ApiHandle, Fake, NS, Seen, decode, expect_no_more_than_watch, is_pod_watch, mock_client,
    on_fake, respond, status_failure, status_success,
};
use http::{Method, Response};
use kube::client::Body;
use paygress_core::{BackendError, PodBackend};
use paygress_k8s::{K8sBackend, K8sConfig};
use serde_json::json;
use tower_test::mock::SendResponse;

#[tokio::test]
async fn create_sends_exact_job_secret_and_service_then_waits_for_ready() {
    let (client, fake) = Fake::start();
    let backend = on_fake(client, &fake, config());
    let provisioned = backend.create(&spec()).await.expect("create");
    let log = fake.log();
    let writes: Vec<(String, String)> = log
        .iter()
        .filter(|r| r.method != Method::GET)
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    // Job, Secret and Service together (any order); then, once the create returned,
    // the ownerReferences of Secret and Service (either order) and the readiness patch.
    let mut created: Vec<String> = writes[..3].iter().map(|(_, p)| p.clone()).collect();
    created.sort();
    assert_eq!(created, [SECRETS, SERVICES, JOBS], "{writes:?}");
    assert!(writes[..3].iter().all(|(m, _)| m == "POST"), "{writes:?}");
    // The writes left to finish after the reply.
    backend.settled(&spec().id).await;
    let writes: Vec<(String, String)> = fake
        .log()
        .iter()
        .filter(|r| r.method != Method::GET)
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    let mut owned: Vec<String> = writes[3..5].iter().map(|(_, p)| p.clone()).collect();
    owned.sort();
    assert_eq!(owned, [SECRET, SERVICE], "{writes:?}");
    assert_eq!(writes[5], ("PATCH".to_owned(), JOB.to_owned()));
    assert!(writes[3..].iter().all(|(m, _)| m == "PATCH"), "{writes:?}");
    assert_eq!(writes.len(), 6, "{writes:?}");
    let log = fake.log();
    let body = |method: Method, path: &str| {
        log.iter()
            .filter(|r| r.method == method && r.path == path)
            .map(|r| r.body.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(body(Method::POST, JOBS), [expected_job()], "Job body");
    let uid = fake.object("jobs", ID).unwrap()["metadata"]["uid"].clone();
    let mut owners = owner_refs();
    owners[0]["uid"] = uid;
    let owner_patch = json!({ "metadata": { "ownerReferences": owners } });
    assert_eq!(
        body(Method::PATCH, SECRET),
        std::slice::from_ref(&owner_patch)
    );
    assert_eq!(body(Method::PATCH, SERVICE), [owner_patch]);
    assert_eq!(
        body(Method::POST, SECRETS),
        [json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "ssh-pod-abcd1234-auth",
                "namespace": NS,
                "labels": labels(),
            },
            "type": "Opaque",
            "stringData": { "password": "s3cret-Pa55" },
        })],
        "Secret body"
    );
    assert_eq!(
        body(Method::POST, SERVICES),
        [json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "ssh-pod-abcd1234-ssh",
                "namespace": NS,
                "labels": labels(),
            },
            "spec": {
                "type": "NodePort",
                "selector": { "paygress.io/lease": ID },
                "ports": [{ "name": "ssh", "port": 2222, "targetPort": 2222, "protocol": "TCP" }],
            },
        })],
        "Service body"
    );
    assert_eq!(
        body(Method::PATCH, JOB),
        [json!({
            "metadata": { "annotations": {
                "paygress.io/starting": null,
                "paygress.io/ready-at": "2026-01-01T00:00:00Z",
                "paygress.io/expires-at": "2026-01-01T01:00:00Z",
            } },
            "spec": { "activeDeadlineSeconds": 3600 },
        }),]
    );
    // The pod was found by its lease label (one watch, from the current state, opened
    // with the Job's create), never written.
    let pods: Vec<_> = log.iter().filter(|r| r.path.ends_with("/pods")).collect();
    assert_eq!(pods.len(), 1, "one pod watch");
    assert_eq!(
        pods[0].query.get("labelSelector").map(String::as_str),
        Some("paygress.io/lease=ssh-pod-abcd1234"),
    );
    assert_eq!(pods[0].query.get("watch").map(String::as_str), Some("true"));
    assert_eq!(
        pods[0].query.get("resourceVersion").map(String::as_str),
        Some("0")
    );
    assert!(log.iter().all(|r| !r.path.contains("/pods/")));
    assert_eq!(provisioned.ssh_port, 2222);
    assert_eq!(provisioned.node_port, Some(30_000));
    assert_eq!(provisioned.ssh_host.as_deref(), Some("172.18.0.3"));
    assert_eq!(provisioned.expires_at, Some(ts("2026-01-01T01:00:00Z")));
    assert!(provisioned.instructions.is_empty());
}

type Pending = (Seen, SendResponse<Response<Body>>);

/// The create's first round trip: the Job, Secret and Service creates (in any order;
/// the pod watch beside them is left unanswered), as (Job, Secret, Service).
async fn round_one(api: &mut ApiHandle) -> (Pending, Pending, Pending) {
    let (mut job, mut secret, mut service) = (None, None, None);
    while job.is_none() || secret.is_none() || service.is_none() {
        let (req, send) = api.next_request().await.expect("the create's requests");
        let seen = decode(req).await;
        if is_pod_watch(&seen) {
            continue;
        }
        assert_eq!(seen.method, Method::POST, "{}", seen.path);
        let slot = match seen.path.as_str() {
            JOBS => &mut job,
            SECRETS => &mut secret,
            SERVICES => &mut service,
            other => panic!("unexpected POST {other}"),
        };
        assert!(slot.is_none(), "{} sent twice", seen.path);
        *slot = Some((seen, send));
    }
    (job.unwrap(), secret.unwrap(), service.unwrap())
}

/// Answers a create with the object sent, given `uid`.
fn created(pending: Pending, uid: &str) {
    let (seen, send) = pending;
    let mut object = seen.body;
    object["metadata"]["uid"] = json!(uid);
    respond(send, 201, &object);
}

/// A failed create removes the Secret and Service it made (the ownerReferences that
/// would take them with the Job are not set yet), each by the uid it was created with,
/// and writes nothing else.
async fn expect_dependents_deleted(mut api: ApiHandle) {
    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let (req, send) = api.next_request().await.expect("the rollback's deletes");
        let seen = decode(req).await;
        if is_pod_watch(&seen) {
            continue;
        }
        assert_eq!(seen.method, Method::DELETE, "{}", seen.path);
        let uid = match seen.path.as_str() {
            SECRET => "secret-uid",
            SERVICE => "service-uid",
            other => panic!("unexpected DELETE {other}"),
        };
        assert_eq!(seen.body["preconditions"]["uid"], uid, "{}", seen.path);
        respond(send, 200, &status_success("Secret", ID, uid));
        deleted.push(seen.path);
    }
    expect_no_more_than_watch(api).await;
}

#[tokio::test]
async fn create_without_public_key_or_tz_omits_them() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, K8sConfig::default());
    let mut s = spec();
    s.ssh_public_key = None;
    let task = tokio::spawn(async move { backend.create(&s).await });
    let ((req, send), secret, service) = round_one(&mut api).await;
    let names: Vec<&str> = req.body["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "PUID",
            "PGID",
            "USER_NAME",
            "PASSWORD_ACCESS",
            "LISTEN_PORT",
            "LOG_STDOUT",
            "USER_PASSWORD"
        ]
    );
    // The password is never a literal in the pod spec.
    assert!(!req.body.to_string().contains("s3cret-Pa55"));
    respond(
        send,
        409,
        &status_failure(
            409,
            "AlreadyExists",
            "jobs.batch \"ssh-pod-abcd1234\" already exists",
            "jobs",
            ID,
        ),
    );
    created(secret, "secret-uid");
    created(service, "service-uid");
    let deletes = tokio::spawn(expect_dependents_deleted(api));
    assert!(task.await.unwrap().is_err());
    deletes.await.unwrap();
}

#[tokio::test]
async fn create_conflict_is_already_exists_and_removes_only_what_it_created() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let task = tokio::spawn(async move { backend.create(&spec()).await });
    let ((_, send), secret, service) = round_one(&mut api).await;
    respond(
        send,
        409,
        &status_failure(
            409,
            "AlreadyExists",
            "jobs.batch \"ssh-pod-abcd1234\" already exists",
            "jobs",
            ID,
        ),
    );
    created(secret, "secret-uid");
    created(service, "service-uid");
    let deletes = tokio::spawn(expect_dependents_deleted(api));
    match task.await.unwrap() {
        Err(BackendError::AlreadyExists(id)) => assert_eq!(id.as_str(), ID),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    deletes.await.unwrap();
}

#[tokio::test]
async fn create_conflict_with_existing_dependents_deletes_nothing() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let task = tokio::spawn(async move { backend.create(&spec()).await });
    let ((_, job), (_, secret), (_, service)) = round_one(&mut api).await;
    for (send, resource) in [(job, "jobs"), (secret, "secrets"), (service, "services")] {
        respond(
            send,
            409,
            &status_failure(409, "AlreadyExists", "already exists", resource, ID),
        );
    }
    match task.await.unwrap() {
        Err(BackendError::AlreadyExists(id)) => assert_eq!(id.as_str(), ID),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    expect_no_more_than_watch(api).await;
}

#[tokio::test]
async fn create_server_error_is_unavailable() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let task = tokio::spawn(async move { backend.create(&spec()).await });
    let ((_, send), secret, service) = round_one(&mut api).await;
    respond(
        send,
        500,
        &status_failure(
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
            "jobs",
            ID,
        ),
    );
    created(secret, "secret-uid");
    created(service, "service-uid");
    let deletes = tokio::spawn(expect_dependents_deleted(api));
    match task.await.unwrap() {
        Err(BackendError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    deletes.await.unwrap();
}

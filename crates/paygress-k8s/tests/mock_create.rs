//! Creating a lease against an API server that checks every request: the exact Job,
//! Secret and Service, and what each failure of the Job's create means.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::lease::*;
use common::{
    Fake, NS, expect_beside_watch, expect_no_more_than_watch, mock_client, on_fake, respond,
    status_failure,
};
use http::Method;
use paygress_core::{BackendError, PodBackend};
use paygress_k8s::{K8sBackend, K8sConfig};
use serde_json::json;

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
    // Job, then Secret and Service (together, either order), then the readiness patch.
    assert_eq!(writes[0], ("POST".to_owned(), JOBS.to_owned()));
    let mut dependents = vec![writes[1].1.clone(), writes[2].1.clone()];
    dependents.sort();
    assert_eq!(dependents, [SECRETS, SERVICES]);
    assert_eq!(writes[3], ("PATCH".to_owned(), JOB.to_owned()));
    assert_eq!(writes.len(), 4, "{writes:?}");
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
    assert_eq!(
        body(Method::POST, SECRETS),
        [json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "ssh-pod-abcd1234-auth",
                "namespace": NS,
                "labels": labels(),
                "ownerReferences": owners,
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
                "ownerReferences": owners,
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

#[tokio::test]
async fn create_without_public_key_or_tz_omits_them() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, K8sConfig::default());
    let mut s = spec();
    s.ssh_public_key = None;
    let task = tokio::spawn(async move { backend.create(&s).await });
    let (req, send) = expect_beside_watch(&mut api, Method::POST, JOBS).await;
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
    assert!(task.await.unwrap().is_err());
}

#[tokio::test]
async fn create_conflict_is_already_exists_and_writes_nothing_else() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let task = tokio::spawn(async move { backend.create(&spec()).await });
    let (_, send) = expect_beside_watch(&mut api, Method::POST, JOBS).await;
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
    let (_, send) = expect_beside_watch(&mut api, Method::POST, JOBS).await;
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
    match task.await.unwrap() {
        Err(BackendError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    expect_no_more_than_watch(api).await;
}

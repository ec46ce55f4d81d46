//! The backend against a mocked API server that checks every request (method, path,
//! query, body) and answers with JSON shaped like the real API server's: top-ups,
//! deletes, reads. Creates are in `mock_create`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::lease::*;
use common::{expect, expect_no_more, mock_client, respond, status_failure, status_success};
use http::Method;
use paygress_core::{BackendError, Extension, PodBackend, Requester};
use paygress_k8s::K8sBackend;
use serde_json::json;

#[tokio::test]
async fn top_up_patches_the_jobs_deadline_to_the_new_total() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let ext = Extension {
        expires_at: ts("2026-01-01T02:30:00Z"),
        paid_msat: 150_000,
    };
    let task = tokio::spawn(async move { backend.extend(&ID.parse().unwrap(), &ext).await });
    let (req, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    assert_eq!(req.body, serde_json::Value::Null);
    // The Job started 5 s after it was paid for; the deadline counts from startTime.
    respond(
        send,
        200,
        &job_from_server(Some("2026-01-01T00:00:05Z"), "417"),
    );
    let (req, send) = expect(&mut api, Method::PATCH, JOB, &[]).await;
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        req.body,
        json!({
            "metadata": {
                "resourceVersion": "417",
                "annotations": {
                    "paygress.io/expires-at": "2026-01-01T02:30:00Z",
                    "paygress.io/paid-msat": "150000",
                },
            },
            "spec": { "activeDeadlineSeconds": 9_000 - 5 },
        })
    );
    let mut patched = job_from_server(Some("2026-01-01T00:00:05Z"), "418");
    patched["spec"]["activeDeadlineSeconds"] = json!(8_995);
    respond(send, 200, &patched);
    task.await.unwrap().expect("extend");
    expect_no_more(api).await;
}

#[tokio::test]
async fn top_up_before_the_job_started_counts_from_creation() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let ext = Extension {
        expires_at: ts("2026-01-01T02:00:00Z"),
        paid_msat: 120_000,
    };
    let task = tokio::spawn(async move { backend.extend(&ID.parse().unwrap(), &ext).await });
    let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    respond(send, 200, &job_from_server(None, "5"));
    let (req, send) = expect(&mut api, Method::PATCH, JOB, &[]).await;
    // creationTimestamp is 00:00:02.
    assert_eq!(req.body["spec"]["activeDeadlineSeconds"], 7_198);
    respond(send, 200, &job_from_server(None, "6"));
    task.await.unwrap().expect("extend");
}

const CONFLICT: &str = "Operation cannot be fulfilled on jobs.batch \"ssh-pod-abcd1234\": the object has been modified; please apply your changes to the latest version and try again";

#[tokio::test]
async fn top_up_retries_a_lost_race_with_the_fresh_resource_version() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let ext = Extension {
        expires_at: ts("2026-01-01T02:00:00Z"),
        paid_msat: 120_000,
    };
    let task = tokio::spawn(async move { backend.extend(&ID.parse().unwrap(), &ext).await });
    let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    respond(send, 200, &job_from_server(None, "7"));
    let (req, send) = expect(&mut api, Method::PATCH, JOB, &[]).await;
    assert_eq!(req.body["metadata"]["resourceVersion"], "7");
    assert_eq!(req.body["spec"]["activeDeadlineSeconds"], 7_198);
    respond(
        send,
        409,
        &status_failure(409, "Conflict", CONFLICT, "jobs", ID),
    );
    // Meanwhile the controller started the Job: the retry counts from startTime.
    let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    respond(
        send,
        200,
        &job_from_server(Some("2026-01-01T00:00:04Z"), "8"),
    );
    let (req, send) = expect(&mut api, Method::PATCH, JOB, &[]).await;
    assert_eq!(req.body["metadata"]["resourceVersion"], "8");
    assert_eq!(req.body["spec"]["activeDeadlineSeconds"], 7_196);
    respond(
        send,
        200,
        &job_from_server(Some("2026-01-01T00:00:04Z"), "9"),
    );
    task.await.unwrap().expect("extend after one lost race");
    expect_no_more(api).await;
}

#[tokio::test]
async fn top_up_conflict_and_not_found_are_typed() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let ext = Extension {
        expires_at: ts("2026-01-01T02:00:00Z"),
        paid_msat: 120_000,
    };
    let b = backend.clone();
    let e = ext.clone();
    let task = tokio::spawn(async move { b.extend(&ID.parse().unwrap(), &e).await });
    for rv in 0..paygress_k8s::EXTEND_ATTEMPTS {
        let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
        respond(
            send,
            200,
            &job_from_server(Some("2026-01-01T00:00:03Z"), &rv.to_string()),
        );
        let (_, send) = expect(&mut api, Method::PATCH, JOB, &[]).await;
        respond(
            send,
            409,
            &status_failure(409, "Conflict", CONFLICT, "jobs", ID),
        );
    }
    match task.await.unwrap() {
        Err(BackendError::Conflict(msg)) => assert!(msg.contains("has been modified"), "{msg}"),
        other => panic!("expected Conflict, got {other:?}"),
    }

    let task = tokio::spawn(async move { backend.extend(&ID.parse().unwrap(), &ext).await });
    let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    respond(
        send,
        404,
        &status_failure(
            404,
            "NotFound",
            "jobs.batch \"ssh-pod-abcd1234\" not found",
            "jobs",
            ID,
        ),
    );
    match task.await.unwrap() {
        Err(BackendError::NotFound(id)) => assert_eq!(id.as_str(), ID),
        other => panic!("expected NotFound, got {other:?}"),
    }
    expect_no_more(api).await;
}

#[tokio::test]
async fn top_up_server_error_is_unavailable() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let ext = Extension {
        expires_at: ts("2026-01-01T02:00:00Z"),
        paid_msat: 120_000,
    };
    let task = tokio::spawn(async move { backend.extend(&ID.parse().unwrap(), &ext).await });
    let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    respond(
        send,
        200,
        &job_from_server(Some("2026-01-01T00:00:03Z"), "3"),
    );
    let (_, send) = expect(&mut api, Method::PATCH, JOB, &[]).await;
    respond(
        send,
        500,
        &status_failure(500, "InternalError", "Internal error occurred", "jobs", ID),
    );
    assert!(matches!(
        task.await.unwrap(),
        Err(BackendError::Unavailable(_))
    ));
    expect_no_more(api).await;
}

#[tokio::test]
async fn top_up_of_a_finished_job_is_rejected_without_patch() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let ext = Extension {
        expires_at: ts("2026-01-01T02:00:00Z"),
        paid_msat: 120_000,
    };
    let task = tokio::spawn(async move { backend.extend(&ID.parse().unwrap(), &ext).await });
    let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    let mut job = job_from_server(Some("2026-01-01T00:00:03Z"), "9");
    job["status"] = json!({
        "startTime": "2026-01-01T00:00:03Z",
        "failed": 1,
        "conditions": [{
            "type": "Failed", "status": "True", "reason": "DeadlineExceeded",
            "message": "Job was active longer than specified deadline",
            "lastProbeTime": "2026-01-01T01:00:03Z", "lastTransitionTime": "2026-01-01T01:00:03Z",
        }],
    });
    respond(send, 200, &job);
    assert!(matches!(
        task.await.unwrap(),
        Err(BackendError::Rejected(_))
    ));
    expect_no_more(api).await;
}

#[tokio::test]
async fn delete_uses_background_propagation_and_ignores_missing() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let b = backend.clone();
    let task = tokio::spawn(async move { b.delete(&ID.parse().unwrap()).await });
    let (req, send) = expect(&mut api, Method::DELETE, JOB, &[]).await;
    assert_eq!(req.body, json!({ "propagationPolicy": "Background" }));
    respond(send, 200, &status_success("jobs", ID, UID));
    task.await.unwrap().expect("delete");

    let task = tokio::spawn(async move { backend.delete(&ID.parse().unwrap()).await });
    let (_, send) = expect(&mut api, Method::DELETE, JOB, &[]).await;
    respond(
        send,
        404,
        &status_failure(
            404,
            "NotFound",
            "jobs.batch \"ssh-pod-abcd1234\" not found",
            "jobs",
            ID,
        ),
    );
    task.await.unwrap().expect("delete of a missing lease");
    expect_no_more(api).await;
}

#[tokio::test]
async fn get_rebuilds_the_lease_from_annotations_and_service() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let b = backend.clone();
    let task = tokio::spawn(async move { b.get(&ID.parse().unwrap()).await });
    let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    let mut job = job_from_server(Some("2026-01-01T00:00:03Z"), "9");
    job["metadata"]["annotations"]["paygress.io/expires-at"] = json!("2026-01-01T03:00:00Z");
    job["metadata"]["annotations"]["paygress.io/paid-msat"] = json!("180000");
    respond(send, 200, &job);
    let (_, send) = expect(&mut api, Method::GET, SERVICE, &[]).await;
    respond(send, 200, &service_from_server(30_777));
    let record = task.await.unwrap().expect("get").expect("present");
    assert_eq!(record.id.as_str(), ID);
    assert_eq!(record.owner, Requester::new("nostr", "ab12"));
    assert_eq!(record.username.as_str(), "alice");
    assert_eq!(record.tier, "small");
    assert_eq!(record.image, "linuxserver/openssh-server:latest");
    assert_eq!(record.created_at, ts("2026-01-01T00:00:00Z"));
    assert_eq!(record.expires_at, ts("2026-01-01T03:00:00Z"));
    assert_eq!(record.paid_msat, 180_000);
    assert_eq!(record.ssh_port, 2222);
    assert_eq!(record.node_port, Some(30_777));

    let task = tokio::spawn(async move { backend.get(&ID.parse().unwrap()).await });
    let (_, send) = expect(&mut api, Method::GET, JOB, &[]).await;
    respond(
        send,
        404,
        &status_failure(
            404,
            "NotFound",
            "jobs.batch \"ssh-pod-abcd1234\" not found",
            "jobs",
            ID,
        ),
    );
    // The Service is read in the same round trip as the Job.
    let (_, send) = expect(&mut api, Method::GET, SERVICE, &[]).await;
    respond(
        send,
        404,
        &status_failure(
            404,
            "NotFound",
            "services \"ssh-pod-abcd1234-ssh\" not found",
            "services",
            "ssh-pod-abcd1234-ssh",
        ),
    );
    assert_eq!(task.await.unwrap().expect("get"), None);
    expect_no_more(api).await;
}

#[tokio::test]
async fn list_rebuilds_leases_by_label_and_skips_foreign_jobs() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config()).without_watch();
    let task = tokio::spawn(async move { backend.list().await });
    let (_, send) = expect(&mut api, Method::GET, JOBS, &[("labelSelector", SELECTOR)]).await;
    let first = job_from_server(Some("2026-01-01T00:00:03Z"), "9");
    let mut second = job_from_server(None, "10");
    second["metadata"]["name"] = json!("ssh-pod-zzzz0000");
    second["metadata"]["annotations"]["paygress.io/username"] = json!("bob");
    second["metadata"]["annotations"]["paygress.io/ssh-port"] = json!("22");
    let mut broken = job_from_server(None, "11");
    broken["metadata"]["name"] = json!("ssh-pod-broken00");
    broken["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("paygress.io/expires-at");
    respond(
        send,
        200,
        &json!({ "kind": "JobList", "apiVersion": "batch/v1", "metadata": { "resourceVersion": "12" },
                 "items": [second, broken, first] }),
    );
    let (_, send) = expect(
        &mut api,
        Method::GET,
        SERVICES,
        &[("labelSelector", SELECTOR)],
    )
    .await;
    respond(
        send,
        200,
        &json!({ "kind": "ServiceList", "apiVersion": "v1", "metadata": { "resourceVersion": "12" },
                 "items": [service_from_server(30_001)] }),
    );
    let records = task.await.unwrap().expect("list");
    let summary: Vec<(&str, &str, u16, Option<u16>)> = records
        .iter()
        .map(|r| (r.id.as_str(), r.username.as_str(), r.ssh_port, r.node_port))
        .collect();
    assert_eq!(
        summary,
        [
            (ID, "alice", 2222, Some(30_001)),
            ("ssh-pod-zzzz0000", "bob", 22, None),
        ]
    );
    expect_no_more(api).await;
}

#[tokio::test]
async fn list_server_error_is_unavailable() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config()).without_watch();
    let task = tokio::spawn(async move { backend.list().await });
    let (_, send) = expect(&mut api, Method::GET, JOBS, &[("labelSelector", SELECTOR)]).await;
    respond(
        send,
        500,
        &status_failure(500, "InternalError", "boom", "jobs", ""),
    );
    assert!(matches!(
        task.await.unwrap(),
        Err(BackendError::Unavailable(_))
    ));
}

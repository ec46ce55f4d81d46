//! The backend against a mocked API server that checks every request (method, path,
//! query, body) and answers with JSON shaped like the real API server's.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{
    Fake, NS, expect, expect_no_more, mock_client, on_fake, respond, status_failure, status_success,
};
use http::Method;
use jiff::Timestamp;
use paygress_core::{
    BackendError, Extension, LeaseSpec, MintUrl, Password, PodBackend, Requester, Tier,
};
use paygress_k8s::{K8sBackend, K8sConfig};
use serde_json::json;

const ID: &str = "ssh-pod-abcd1234";
const JOBS: &str = "/apis/batch/v1/namespaces/user-workloads/jobs";
const JOB: &str = "/apis/batch/v1/namespaces/user-workloads/jobs/ssh-pod-abcd1234";
const SECRETS: &str = "/api/v1/namespaces/user-workloads/secrets";
const SERVICES: &str = "/api/v1/namespaces/user-workloads/services";
const SERVICE: &str = "/api/v1/namespaces/user-workloads/services/ssh-pod-abcd1234-ssh";
const UID: &str = "4b5d5c2e-8f0a-4a51-9d3e-0c1f2a3b4c5d";
const SELECTOR: &str = "app.kubernetes.io/managed-by=paygress";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn spec() -> LeaseSpec {
    LeaseSpec {
        id: ID.parse().unwrap(),
        owner: Requester::new("nostr", "ab12"),
        username: "alice".parse().unwrap(),
        password: Password::new("s3cret-Pa55"),
        ssh_public_key: Some("ssh-ed25519 AAAAC3Nza alice@laptop".to_owned()),
        password_login: false,
        image: "linuxserver/openssh-server:latest".to_owned(),
        tier: Tier {
            id: "small".to_owned(),
            cpu_millicores: 500,
            memory_mib: 512,
            rate: None,
        },
        created_at: ts("2026-01-01T00:00:00Z"),
        expires_at: ts("2026-01-01T01:00:00Z"),
        paid_msat: 60_000,
        mint: MintUrl::new("http://127.0.0.1:3338"),
    }
}

fn config() -> K8sConfig {
    K8sConfig {
        timezone: Some("Etc/UTC".to_owned()),
        ..K8sConfig::default()
    }
}

fn labels() -> serde_json::Value {
    json!({ "app.kubernetes.io/managed-by": "paygress", "paygress.io/lease": ID })
}

fn annotations() -> serde_json::Value {
    json!({
        "paygress.io/owner": "nostr:ab12",
        "paygress.io/username": "alice",
        "paygress.io/tier": "small",
        "paygress.io/image": "linuxserver/openssh-server:latest",
        "paygress.io/created-at": "2026-01-01T00:00:00Z",
        "paygress.io/expires-at": "2026-01-01T01:00:00Z",
        "paygress.io/paid-msat": "60000",
        "paygress.io/mint": "http://127.0.0.1:3338",
        "paygress.io/ssh-port": "2222",
    })
}

fn annotations_starting() -> serde_json::Value {
    let mut a = annotations();
    a["paygress.io/starting"] = json!("true");
    a
}

fn expected_job() -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": ID,
            "namespace": NS,
            "labels": labels(),
            "annotations": annotations_starting(),
        },
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 0,
            "podFailurePolicy": { "rules": [{
                "action": "Ignore",
                "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }],
            }] },
            "suspend": true,
            // The paid hour plus the readiness timeout, until the pod is ready.
            "activeDeadlineSeconds": 3600 + 120,
            "ttlSecondsAfterFinished": 60,
            "template": {
                "metadata": { "labels": {
                    "app": "paygress-ssh-pod",
                    "app.kubernetes.io/managed-by": "paygress",
                    "paygress.io/lease": ID,
                } },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "containers": [{
                        "name": "ssh",
                        "image": "linuxserver/openssh-server:latest",
                        "ports": [{ "name": "ssh", "containerPort": 2222, "protocol": "TCP" }],
                        "env": [
                            { "name": "PUID", "value": "1000" },
                            { "name": "PGID", "value": "1000" },
                            { "name": "USER_NAME", "value": "alice" },
                            { "name": "PASSWORD_ACCESS", "value": "false" },
                            { "name": "LISTEN_PORT", "value": "2222" },
                            { "name": "LOG_STDOUT", "value": "true" },
                            { "name": "USER_PASSWORD", "valueFrom": { "secretKeyRef": {
                                "name": "ssh-pod-abcd1234-auth", "key": "password" } } },
                            { "name": "PUBLIC_KEY", "value": "ssh-ed25519 AAAAC3Nza alice@laptop" },
                            { "name": "TZ", "value": "Etc/UTC" },
                        ],
                        "readinessProbe": {
                            "tcpSocket": { "port": 2222 },
                            "periodSeconds": 2,
                            "failureThreshold": 3,
                        },
                        "resources": {
                            "requests": { "cpu": "500m", "memory": "512Mi", "ephemeral-storage": "2048Mi" },
                            "limits": { "cpu": "500m", "memory": "512Mi", "ephemeral-storage": "2048Mi" },
                        },
                        "securityContext": { "allowPrivilegeEscalation": false },
                    }],
                },
            },
        },
    })
}

fn owner_refs() -> serde_json::Value {
    json!([{
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": ID,
        "uid": UID,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// The Job as the API server returns it: the request plus server-set fields.
fn job_from_server(start_time: Option<&str>, resource_version: &str) -> serde_json::Value {
    let mut job = expected_job();
    job["metadata"]["annotations"] = annotations();
    job["spec"]["suspend"] = json!(false);
    job["metadata"]["uid"] = json!(UID);
    job["metadata"]["resourceVersion"] = json!(resource_version);
    job["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:02Z");
    job["spec"]["selector"] =
        json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": UID } });
    job["status"] = match start_time {
        Some(t) => json!({ "startTime": t, "active": 1 }),
        None => json!({}),
    };
    job
}

fn service_from_server(node_port: u16) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "ssh-pod-abcd1234-ssh",
            "namespace": NS,
            "uid": "9a0e7c61-0000-4000-8000-000000000002",
            "resourceVersion": "101",
            "labels": labels(),
            "ownerReferences": owner_refs(),
        },
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.12.7",
            "selector": { "paygress.io/lease": ID },
            "ports": [{ "name": "ssh", "port": 2222, "targetPort": 2222, "protocol": "TCP", "nodePort": node_port }],
        },
        "status": { "loadBalancer": {} },
    })
}

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
    // Job (suspended), then Secret and Service (together, either order), resume, then
    // the readiness patch.
    assert_eq!(writes[0], ("POST".to_owned(), JOBS.to_owned()));
    let mut dependents = vec![writes[1].1.clone(), writes[2].1.clone()];
    dependents.sort();
    assert_eq!(dependents, [SECRETS, SERVICES]);
    assert_eq!(writes[3], ("PATCH".to_owned(), JOB.to_owned()));
    assert_eq!(writes[4], ("PATCH".to_owned(), JOB.to_owned()));
    assert_eq!(writes.len(), 5, "{writes:?}");
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
        [
            json!({ "spec": { "suspend": false } }),
            json!({
                "metadata": { "annotations": {
                    "paygress.io/starting": null,
                    "paygress.io/ready-at": "2026-01-01T00:00:00Z",
                    "paygress.io/expires-at": "2026-01-01T01:00:00Z",
                } },
                "spec": { "activeDeadlineSeconds": 3600 },
            }),
        ]
    );
    // The pod was found by its lease label (a watcher's list; it was ready at once),
    // never written.
    assert!(
        log.iter().any(|r| r.path.ends_with("/pods")
            && r.query.get("labelSelector").map(String::as_str)
                == Some("paygress.io/lease=ssh-pod-abcd1234")),
        "pods are listed by lease"
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
    let (req, send) = expect(&mut api, Method::POST, JOBS, &[]).await;
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
async fn create_conflict_is_already_exists_and_sends_nothing_else() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let task = tokio::spawn(async move { backend.create(&spec()).await });
    let (_, send) = expect(&mut api, Method::POST, JOBS, &[]).await;
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
    expect_no_more(api).await;
}

#[tokio::test]
async fn create_server_error_is_unavailable() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
    let task = tokio::spawn(async move { backend.create(&spec()).await });
    let (_, send) = expect(&mut api, Method::POST, JOBS, &[]).await;
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
    expect_no_more(api).await;
}

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
    assert_eq!(task.await.unwrap().expect("get"), None);
    expect_no_more(api).await;
}

#[tokio::test]
async fn list_rebuilds_leases_by_label_and_skips_foreign_jobs() {
    let (client, mut api) = mock_client();
    let backend = K8sBackend::new(client, config());
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
    let backend = K8sBackend::new(client, config());
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

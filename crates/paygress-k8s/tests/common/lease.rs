//! A fixed lease and the objects the real API server would send back for it, for the
//! tests against a scripted API (`mock_api`, `mock_create`).

use jiff::Timestamp;
use paygress_core::{LeaseSpec, MintUrl, Password, Requester, Tier};
use paygress_k8s::K8sConfig;
use serde_json::json;

use super::NS;

pub const ID: &str = "ssh-pod-abcd1234";
pub const JOBS: &str = "/apis/batch/v1/namespaces/user-workloads/jobs";
pub const JOB: &str = "/apis/batch/v1/namespaces/user-workloads/jobs/ssh-pod-abcd1234";
pub const SECRETS: &str = "/api/v1/namespaces/user-workloads/secrets";
pub const SECRET: &str = "/api/v1/namespaces/user-workloads/secrets/ssh-pod-abcd1234-auth";
pub const SERVICES: &str = "/api/v1/namespaces/user-workloads/services";
pub const SERVICE: &str = "/api/v1/namespaces/user-workloads/services/ssh-pod-abcd1234-ssh";
pub const UID: &str = "4b5d5c2e-8f0a-4a51-9d3e-0c1f2a3b4c5d";
pub const SELECTOR: &str = "app.kubernetes.io/managed-by=paygress";

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn spec() -> LeaseSpec {
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

pub fn config() -> K8sConfig {
    K8sConfig {
        timezone: Some("Etc/UTC".to_owned()),
        ..K8sConfig::default()
    }
}

pub fn labels() -> serde_json::Value {
    json!({ "app.kubernetes.io/managed-by": "paygress", "paygress.io/lease": ID })
}

pub fn annotations() -> serde_json::Value {
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

pub fn annotations_starting() -> serde_json::Value {
    let mut a = annotations();
    a["paygress.io/starting"] = json!("true");
    a
}

pub fn expected_job() -> serde_json::Value {
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
            // The paid hour plus the readiness timeout (and a second for rounding the
            // ready time up), until the pod is ready.
            "activeDeadlineSeconds": 3600 + 120 + 1,
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

pub fn owner_refs() -> serde_json::Value {
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
pub fn job_from_server(start_time: Option<&str>, resource_version: &str) -> serde_json::Value {
    let mut job = expected_job();
    job["metadata"]["annotations"] = annotations();
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

pub fn service_from_server(node_port: u16) -> serde_json::Value {
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

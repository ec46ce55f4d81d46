//! The Kubernetes objects of one lease, and the way back from a Job to a
//! [`LeaseRecord`].

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use paygress_core::{LeaseId, LeaseRecord, LeaseSpec, Requester, Username};
use serde_json::{Value, json};

use crate::config::K8sConfig;
use crate::error::K8sError;

/// Label on every object Paygress creates (`app.kubernetes.io/managed-by=paygress`).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "paygress";
/// Label holding the lease id, on the Job, its pod, Service and Secret.
pub const LEASE_LABEL: &str = "paygress.io/lease";
/// The pod label the seed used (`app=paygress-ssh-pod`).
pub const APP_LABEL_VALUE: &str = "paygress-ssh-pod";
/// The label selector `list` uses.
pub const SELECTOR: &str = "app.kubernetes.io/managed-by=paygress";

/// Job annotation keys holding lease metadata.
pub mod annotations {
    /// Who paid (`nostr:<hex>`, `http:<peer>`).
    pub const OWNER: &str = "paygress.io/owner";
    /// Login name.
    pub const USERNAME: &str = "paygress.io/username";
    /// Tier id.
    pub const TIER: &str = "paygress.io/tier";
    /// Container image.
    pub const IMAGE: &str = "paygress.io/image";
    /// When the lease was paid (RFC 3339).
    pub const CREATED_AT: &str = "paygress.io/created-at";
    /// When the paid time ends (RFC 3339).
    pub const EXPIRES_AT: &str = "paygress.io/expires-at";
    /// Total paid, msat.
    pub const PAID_MSAT: &str = "paygress.io/paid-msat";
    /// The mint the first payment came from.
    pub const MINT: &str = "paygress.io/mint";
    /// SSH port inside the pod.
    pub const SSH_PORT: &str = "paygress.io/ssh-port";
}

/// Name of the lease's NodePort Service.
pub fn service_name(id: &LeaseId) -> String {
    format!("{id}-ssh")
}

/// Name of the lease's password Secret.
pub fn secret_name(id: &LeaseId) -> String {
    format!("{id}-auth")
}

/// Key of the password inside the Secret.
pub const SECRET_KEY: &str = "password";

/// Whole seconds from `from` to `to`, rounded up, at least 1.
pub(crate) fn deadline_seconds(from: Timestamp, to: Timestamp) -> i64 {
    let span = to.duration_since(from);
    let secs = span.as_secs();
    let secs = if span.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    };
    secs.max(1)
}

fn labels(id: &LeaseId) -> Value {
    json!({ MANAGED_BY_LABEL: MANAGED_BY, LEASE_LABEL: id.as_str() })
}

/// The lease's Job. `activeDeadlineSeconds` is the paid time (`expires_at - created_at`,
/// rounded up); the controller counts it from the Job's `status.startTime`, which is
/// never before `created_at`, so the pod never stops before the paid expiry.
pub(crate) fn job(config: &K8sConfig, spec: &LeaseSpec) -> Value {
    let id = &spec.id;
    let image = if spec.image.trim().is_empty() {
        config.default_image.as_str()
    } else {
        spec.image.as_str()
    };
    let mut env = vec![
        json!({ "name": "PUID", "value": config.puid.to_string() }),
        json!({ "name": "PGID", "value": config.pgid.to_string() }),
        json!({ "name": "USER_NAME", "value": spec.username.as_str() }),
        json!({ "name": "PASSWORD_ACCESS", "value": "true" }),
        // The image's sshd listens on LISTEN_PORT (default 2222), not on SSH_PORT.
        json!({ "name": "LISTEN_PORT", "value": config.ssh_port.to_string() }),
        // sshd's log on stdout, so `kubectl logs` shows logins.
        json!({ "name": "LOG_STDOUT", "value": "true" }),
        json!({ "name": "USER_PASSWORD", "valueFrom": { "secretKeyRef": {
            "name": secret_name(id), "key": SECRET_KEY } } }),
    ];
    if let Some(key) = spec
        .ssh_public_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
    {
        env.push(json!({ "name": "PUBLIC_KEY", "value": key }));
    }
    if let Some(tz) = &config.timezone {
        env.push(json!({ "name": "TZ", "value": tz }));
    }
    let resources = json!({
        "cpu": format!("{}m", spec.tier.cpu_millicores),
        "memory": format!("{}Mi", spec.tier.memory_mib),
    });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": id.as_str(),
            "namespace": config.namespace,
            "labels": labels(id),
            "annotations": {
                annotations::OWNER: spec.owner.as_str(),
                annotations::USERNAME: spec.username.as_str(),
                annotations::TIER: spec.tier.id,
                annotations::IMAGE: image,
                annotations::CREATED_AT: spec.created_at.to_string(),
                annotations::EXPIRES_AT: spec.expires_at.to_string(),
                annotations::PAID_MSAT: spec.paid_msat.to_string(),
                annotations::MINT: spec.mint.as_str(),
                annotations::SSH_PORT: config.ssh_port.to_string(),
            },
        },
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 0,
            // A drain, preemption or eviction must not end a paid lease: such a pod
            // failure is not counted, and the Job starts a replacement pod (same Secret
            // and Service: same password and port; files are lost).
            "podFailurePolicy": { "rules": [{
                "action": "Ignore",
                "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }],
            }] },
            "activeDeadlineSeconds": deadline_seconds(spec.created_at, spec.expires_at),
            "ttlSecondsAfterFinished": config.ttl_seconds_after_finished,
            "template": {
                "metadata": {
                    "labels": {
                        "app": APP_LABEL_VALUE,
                        MANAGED_BY_LABEL: MANAGED_BY,
                        LEASE_LABEL: id.as_str(),
                    },
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "containers": [{
                        "name": "ssh",
                        "image": image,
                        "ports": [{ "name": "ssh", "containerPort": config.ssh_port, "protocol": "TCP" }],
                        "env": env,
                        "readinessProbe": {
                            "tcpSocket": { "port": config.ssh_port },
                            "periodSeconds": 2,
                            "failureThreshold": 3,
                        },
                        "resources": { "requests": resources, "limits": resources },
                        "securityContext": { "allowPrivilegeEscalation": false },
                    }],
                },
            },
        },
    })
}

fn owner_references(id: &LeaseId, job_uid: &str) -> Value {
    json!([{
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": id.as_str(),
        "uid": job_uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// The Secret holding the lease's password, owned by the Job.
pub(crate) fn secret(config: &K8sConfig, spec: &LeaseSpec, job_uid: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(&spec.id),
            "namespace": config.namespace,
            "labels": labels(&spec.id),
            "ownerReferences": owner_references(&spec.id, job_uid),
        },
        "type": "Opaque",
        "stringData": { SECRET_KEY: spec.password.expose() },
    })
}

/// The NodePort Service `<lease>-ssh`, owned by the Job.
pub(crate) fn service(config: &K8sConfig, spec: &LeaseSpec, job_uid: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(&spec.id),
            "namespace": config.namespace,
            "labels": labels(&spec.id),
            "ownerReferences": owner_references(&spec.id, job_uid),
        },
        "spec": {
            "type": "NodePort",
            "selector": { LEASE_LABEL: spec.id.as_str() },
            "ports": [{ "name": "ssh", "port": config.ssh_port, "targetPort": config.ssh_port, "protocol": "TCP" }],
        },
    })
}

/// Converts a built JSON object to its typed form.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    value: Value,
) -> Result<T, K8sError> {
    serde_json::from_value(value).map_err(|source| K8sError::Build { kind, source })
}

/// The node port of a lease Service, if one was allocated.
pub(crate) fn node_port(service: &Service) -> Option<u16> {
    service
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find_map(|p| p.node_port)
        .and_then(|p| u16::try_from(p).ok())
}

/// Whether the Job has finished (deadline exceeded, pod failed or completed).
pub(crate) fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Failed" || c.type_ == "Complete") && c.status == "True")
        })
}

/// The moment the Job controller counts `activeDeadlineSeconds` from: `status.startTime`,
/// or the creation time while the controller has not started the Job yet.
pub(crate) fn deadline_anchor(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// Rebuilds a lease's public data from its Job's annotations and its Service.
pub(crate) fn record(job: &Job, service: Option<&Service>) -> Result<LeaseRecord, K8sError> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let empty = Default::default();
    let ann = job.metadata.annotations.as_ref().unwrap_or(&empty);
    let get = |key: &'static str| {
        ann.get(key).ok_or_else(|| K8sError::Annotation {
            job: name.clone(),
            key,
            reason: "missing".to_owned(),
        })
    };
    let bad = |key: &'static str, reason: String| K8sError::Annotation {
        job: name.clone(),
        key,
        reason,
    };
    let id: LeaseId = name
        .parse()
        .map_err(|e: paygress_core::NameError| bad("metadata.name", e.to_string()))?;
    let username: Username = get(annotations::USERNAME)?
        .parse()
        .map_err(|e: paygress_core::NameError| bad(annotations::USERNAME, e.to_string()))?;
    let ts = |key: &'static str| -> Result<Timestamp, K8sError> {
        get(key)?
            .parse()
            .map_err(|e: jiff::Error| bad(key, e.to_string()))
    };
    let ssh_port = match ann.get(annotations::SSH_PORT) {
        Some(v) => v
            .parse()
            .map_err(|e: std::num::ParseIntError| bad(annotations::SSH_PORT, e.to_string()))?,
        None => crate::config::DEFAULT_SSH_PORT,
    };
    Ok(LeaseRecord {
        id,
        owner: Requester::from_raw(get(annotations::OWNER)?.clone()),
        username,
        tier: get(annotations::TIER)?.clone(),
        image: get(annotations::IMAGE)?.clone(),
        created_at: ts(annotations::CREATED_AT)?,
        expires_at: ts(annotations::EXPIRES_AT)?,
        paid_msat: get(annotations::PAID_MSAT)?
            .parse()
            .map_err(|e: std::num::ParseIntError| bad(annotations::PAID_MSAT, e.to_string()))?,
        ssh_port,
        node_port: service.and_then(node_port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_image_listens_on_the_configured_ssh_port_and_logs_to_stdout() {
        let config = K8sConfig {
            ssh_port: 2022,
            ..K8sConfig::default()
        };
        let spec = paygress_core::contract::sample_spec(60);
        let job = job(&config, &spec);
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        let env = |name: &str| {
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        assert_eq!(env("LISTEN_PORT"), Some("2022".into()));
        assert_eq!(env("LOG_STDOUT"), Some("true".into()));
        assert_eq!(container["ports"][0]["containerPort"], 2022);
    }

    #[test]
    fn deadline_rounds_up_and_is_at_least_one_second() {
        let t0 = ts("2026-01-01T00:00:00Z");
        assert_eq!(deadline_seconds(t0, ts("2026-01-01T01:00:00Z")), 3600);
        assert_eq!(deadline_seconds(t0, ts("2026-01-01T01:00:00.001Z")), 3601);
        assert_eq!(deadline_seconds(t0, t0), 1);
        assert_eq!(deadline_seconds(t0, ts("2025-12-31T23:00:00Z")), 1);
    }
}

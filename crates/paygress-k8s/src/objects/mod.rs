//! The Kubernetes objects of one lease, and the way back from a Job to a
//! [`LeaseRecord`].
//!
//! What is sent is built in `job` (the Job) and here (its Secret and Service, the
//! patches); what is read back in `read`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use paygress_core::{LeaseId, LeaseSpec};
use serde_json::{Value, json};

use crate::config::K8sConfig;

mod job;
mod read;

pub(crate) use job::job;
pub(crate) use read::{
    deadline_anchor, is_finished, load_balancer_address, node_address, node_port,
    pod_failed_to_start, pod_ready, record,
};

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
    /// Present while the pod is starting (the paid time has not started yet).
    pub const STARTING: &str = "paygress.io/starting";
    /// When the pod became ready and the paid time started (RFC 3339).
    pub const READY_AT: &str = "paygress.io/ready-at";
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

fn labels(id: &LeaseId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (LEASE_LABEL.to_owned(), id.as_str().to_owned()),
    ])
}

/// The label selector of one lease's objects.
pub fn lease_selector(id: &LeaseId) -> String {
    format!("{SELECTOR},{LEASE_LABEL}={id}")
}

/// Seconds the Job may run while its pod starts: the paid time plus the readiness
/// timeout, plus one second for the rounding up of the moment the pod became ready.
/// Tightened to the exact paid time once the pod is ready, by a patch the create does
/// not wait for: should that patch never land (the process died), the pod still runs
/// until at least the expiry the buyer was told (the pod was ready within the
/// readiness timeout of the Job's start).
pub(crate) fn provisioning_deadline(config: &K8sConfig, spec: &LeaseSpec) -> i64 {
    let ready = i64::try_from(config.ready_timeout.as_secs()).unwrap_or(i64::MAX / 2);
    deadline_seconds(spec.created_at, spec.expires_at)
        .saturating_add(ready)
        .saturating_add(1)
}

/// Metadata of a lease's Secret or Service. Created with the Job, before its uid is
/// known: without an ownerReference, which [`owner_patch`] adds next.
fn lease_meta(config: &K8sConfig, id: &LeaseId, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels(id)),
        ..ObjectMeta::default()
    }
}

/// The ownerReference of a lease's Secret or Service to its Job (the garbage collector
/// removes them with it).
pub(crate) fn owner_reference(id: &LeaseId, job_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "Job".to_owned(),
        name: id.as_str().to_owned(),
        uid: job_uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The merge patch making the lease's Job (uid `job_uid`) the owner of a Secret or
/// Service.
pub(crate) fn owner_patch(id: &LeaseId, job_uid: &str) -> Value {
    json!({ "metadata": { "ownerReferences": [owner_reference(id, job_uid)] } })
}

/// The Secret holding the lease's password (its owner is set once the Job exists).
pub(crate) fn secret(config: &K8sConfig, spec: &LeaseSpec) -> Secret {
    Secret {
        metadata: lease_meta(config, &spec.id, secret_name(&spec.id)),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([(
            SECRET_KEY.to_owned(),
            spec.password.expose().to_owned(),
        )])),
        ..Secret::default()
    }
}

/// The Service `<lease>-ssh` (NodePort or LoadBalancer; its owner is set once the Job
/// exists).
pub(crate) fn service(config: &K8sConfig, spec: &LeaseSpec) -> Service {
    let port = i32::from(config.ssh_port);
    Service {
        metadata: lease_meta(config, &spec.id, service_name(&spec.id)),
        spec: Some(ServiceSpec {
            type_: Some(config.service_type.as_str().to_owned()),
            selector: Some(BTreeMap::from([(
                LEASE_LABEL.to_owned(),
                spec.id.as_str().to_owned(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some("ssh".to_owned()),
                port,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The merge patch recording that the pod became ready at `ready_at`: the paid time ends
/// at `expires_at`, `deadline` seconds after the Job's (re)start. With
/// `resource_version`, the API applies it only to that version of the Job.
pub(crate) fn started_patch(
    ready_at: Timestamp,
    expires_at: Timestamp,
    deadline: i64,
    resource_version: Option<&str>,
) -> Value {
    let mut patch = json!({
        "metadata": { "annotations": {
            annotations::STARTING: null,
            annotations::READY_AT: ready_at.to_string(),
            annotations::EXPIRES_AT: expires_at.to_string(),
        } },
        "spec": { "activeDeadlineSeconds": deadline },
    });
    if let Some(rv) = resource_version {
        patch["metadata"]["resourceVersion"] = json!(rv);
    }
    patch
}

/// Whether the Job still waits for its started patch (the paid clock has not started).
pub(crate) fn is_starting(job: &k8s_openapi::api::batch::v1::Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(annotations::STARTING))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
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

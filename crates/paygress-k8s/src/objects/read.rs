//! Reading leases back: pod and Job status, addresses, and a Job's [`LeaseRecord`].

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use paygress_core::{LeaseId, LeasePhase, LeaseRecord, MintUrl, Requester, Username};

use super::annotations;
use crate::error::K8sError;

/// Whether the pod's `Ready` condition is true.
pub(crate) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// Why the pod can never become ready, if it cannot: it failed, and not because of a
/// disruption (after which the Job starts a replacement).
pub(crate) fn pod_failed_to_start(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    let disrupted = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    if disrupted {
        return None;
    }
    Some(
        status
            .reason
            .clone()
            .or_else(|| status.message.clone())
            .unwrap_or_else(|| "Failed".to_owned()),
    )
}

/// The address buyers can reach a node at: its ExternalIP, else its InternalIP.
pub(crate) fn node_address(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    ["ExternalIP", "InternalIP"].iter().find_map(|kind| {
        addresses
            .iter()
            .find(|a| a.type_ == *kind && !a.address.is_empty())
            .map(|a| a.address.clone())
    })
}

/// The address a LoadBalancer Service was given (IP, else hostname).
pub(crate) fn load_balancer_address(service: &Service) -> Option<String> {
    service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| {
            i.ip.clone()
                .filter(|s| !s.is_empty())
                .or_else(|| i.hostname.clone().filter(|s| !s.is_empty()))
        })
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

/// Job conditions that mean the Job has ended or is ending: its pod is being or has been
/// terminated, and no replacement will come.
const FINISHED_CONDITIONS: &[&str] = &["Failed", "Complete", "FailureTarget", "SuccessCriteriaMet"];

/// Whether the Job has finished or is finishing (deadline exceeded, pod failed or
/// completed: `Failed`, `Complete`, `FailureTarget` or `SuccessCriteriaMet`).
pub(crate) fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| FINISHED_CONDITIONS.contains(&c.type_.as_str()) && c.status == "True")
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
    let phase = if is_finished(job) {
        LeasePhase::Ended
    } else if ann.contains_key(annotations::STARTING) {
        LeasePhase::Provisioning
    } else {
        LeasePhase::Running
    };
    Ok(LeaseRecord {
        phase,
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
        mint: ann.get(annotations::MINT).map(MintUrl::new),
    })
}

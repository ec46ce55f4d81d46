//! The Kubernetes objects of one lease, and the way back from a Job to a
//! [`LeaseRecord`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, Node, Pod, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Secret, SecretKeySelector, SecurityContext, Service, ServicePort,
    ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use paygress_core::{LeaseId, LeasePhase, LeaseRecord, LeaseSpec, MintUrl, Requester, Username};
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

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// Seconds the Job may run while its pod starts: the paid time plus the readiness
/// timeout. Tightened to the exact paid time once the pod is ready.
pub(crate) fn provisioning_deadline(config: &K8sConfig, spec: &LeaseSpec) -> i64 {
    let ready = i64::try_from(config.ready_timeout.as_secs()).unwrap_or(i64::MAX / 2);
    deadline_seconds(spec.created_at, spec.expires_at).saturating_add(ready)
}

/// The lease's Job, created **suspended** (no pod until Secret and Service exist).
/// `activeDeadlineSeconds` is the paid time plus the readiness timeout, counted by the
/// controller from `status.startTime`, which it resets when the Job is resumed; once the
/// pod is ready, the backend sets it to end exactly at the paid expiry.
pub(crate) fn job(config: &K8sConfig, spec: &LeaseSpec) -> Job {
    let id = &spec.id;
    let image = if spec.image.trim().is_empty() {
        config.default_image.as_str()
    } else {
        spec.image.as_str()
    };
    let mut env_vars = vec![
        env("PUID", config.puid.to_string()),
        env("PGID", config.pgid.to_string()),
        env("USER_NAME", spec.username.as_str()),
        // With a key, password login only when the buyer asked for both (the password
        // stays the sudo password either way).
        env(
            "PASSWORD_ACCESS",
            if spec.password_login || spec.ssh_public_key.is_none() {
                "true"
            } else {
                "false"
            },
        ),
        // The image's sshd listens on LISTEN_PORT (default 2222), not on SSH_PORT.
        env("LISTEN_PORT", config.ssh_port.to_string()),
        // sshd's log on stdout, so `kubectl logs` shows logins.
        env("LOG_STDOUT", "true"),
        EnvVar {
            name: "USER_PASSWORD".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret_name(id),
                    key: SECRET_KEY.to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        },
    ];
    if let Some(key) = spec
        .ssh_public_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
    {
        env_vars.push(env("PUBLIC_KEY", key));
    }
    if let Some(tz) = &config.timezone {
        env_vars.push(env("TZ", tz.as_str()));
    }
    let storage = config.ephemeral_storage.mib_for(&spec.tier.id);
    let resources = BTreeMap::from([
        (
            "cpu".to_owned(),
            Quantity(format!("{}m", spec.tier.cpu_millicores)),
        ),
        (
            "memory".to_owned(),
            Quantity(format!("{}Mi", spec.tier.memory_mib)),
        ),
        (
            "ephemeral-storage".to_owned(),
            Quantity(format!("{storage}Mi")),
        ),
    ]);
    let port = i32::from(config.ssh_port);
    let annotations = BTreeMap::from([
        (
            annotations::OWNER.to_owned(),
            spec.owner.as_str().to_owned(),
        ),
        (annotations::USERNAME.to_owned(), spec.username.to_string()),
        (annotations::TIER.to_owned(), spec.tier.id.clone()),
        (annotations::IMAGE.to_owned(), image.to_owned()),
        (
            annotations::CREATED_AT.to_owned(),
            spec.created_at.to_string(),
        ),
        (
            annotations::EXPIRES_AT.to_owned(),
            spec.expires_at.to_string(),
        ),
        (
            annotations::PAID_MSAT.to_owned(),
            spec.paid_msat.to_string(),
        ),
        (annotations::MINT.to_owned(), spec.mint.as_str().to_owned()),
        (
            annotations::SSH_PORT.to_owned(),
            config.ssh_port.to_string(),
        ),
        (annotations::STARTING.to_owned(), "true".to_owned()),
    ]);
    let mut pod_labels = labels(id);
    pod_labels.insert("app".to_owned(), APP_LABEL_VALUE.to_owned());
    Job {
        metadata: ObjectMeta {
            name: Some(id.as_str().to_owned()),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels(id)),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            parallelism: Some(1),
            completions: Some(1),
            backoff_limit: Some(0),
            // A drain, preemption or eviction must not end a paid lease: such a pod
            // failure is not counted, and the Job starts a replacement pod (same Secret
            // and Service: same password and port; files are lost).
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "Ignore".to_owned(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".to_owned(),
                        status: "True".to_owned(),
                    }]),
                    on_exit_codes: None,
                }],
            }),
            suspend: Some(true),
            active_deadline_seconds: Some(provisioning_deadline(config, spec)),
            ttl_seconds_after_finished: Some(config.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    containers: vec![Container {
                        name: "ssh".to_owned(),
                        image: Some(image.to_owned()),
                        ports: Some(vec![ContainerPort {
                            name: Some("ssh".to_owned()),
                            container_port: port,
                            protocol: Some("TCP".to_owned()),
                            ..ContainerPort::default()
                        }]),
                        env: Some(env_vars),
                        // Ready = sshd accepts connections: the paid time starts then.
                        readiness_probe: Some(Probe {
                            tcp_socket: Some(TCPSocketAction {
                                port: IntOrString::Int(port),
                                host: None,
                            }),
                            period_seconds: Some(2),
                            failure_threshold: Some(3),
                            ..Probe::default()
                        }),
                        resources: Some(ResourceRequirements {
                            requests: Some(resources.clone()),
                            limits: Some(resources),
                            claims: None,
                        }),
                        security_context: Some(SecurityContext {
                            allow_privilege_escalation: Some(false),
                            ..SecurityContext::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn owned_meta(config: &K8sConfig, id: &LeaseId, name: String, job_uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels(id)),
        owner_references: Some(vec![OwnerReference {
            api_version: "batch/v1".to_owned(),
            kind: "Job".to_owned(),
            name: id.as_str().to_owned(),
            uid: job_uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

/// The Secret holding the lease's password, owned by the Job.
pub(crate) fn secret(config: &K8sConfig, spec: &LeaseSpec, job_uid: &str) -> Secret {
    Secret {
        metadata: owned_meta(config, &spec.id, secret_name(&spec.id), job_uid),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([(
            SECRET_KEY.to_owned(),
            spec.password.expose().to_owned(),
        )])),
        ..Secret::default()
    }
}

/// The Service `<lease>-ssh` (NodePort or LoadBalancer), owned by the Job.
pub(crate) fn service(config: &K8sConfig, spec: &LeaseSpec, job_uid: &str) -> Service {
    let port = i32::from(config.ssh_port);
    Service {
        metadata: owned_meta(config, &spec.id, service_name(&spec.id), job_uid),
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

/// The merge patch that resumes a suspended lease Job.
pub(crate) fn resume_patch() -> Value {
    json!({ "spec": { "suspend": false } })
}

/// The merge patch recording that the pod became ready at `ready_at`: the paid time ends
/// at `expires_at`, `deadline` seconds after the Job's (re)start.
pub(crate) fn started_patch(ready_at: Timestamp, expires_at: Timestamp, deadline: i64) -> Value {
    json!({
        "metadata": { "annotations": {
            annotations::STARTING: null,
            annotations::READY_AT: ready_at.to_string(),
            annotations::EXPIRES_AT: expires_at.to_string(),
        } },
        "spec": { "activeDeadlineSeconds": deadline },
    })
}

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
        let job = serde_json::to_value(job(&config, &spec)).unwrap();
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

//! The lease's Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, SecurityContext, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use paygress_core::LeaseSpec;

use super::{APP_LABEL_VALUE, SECRET_KEY, annotations, labels, provisioning_deadline, secret_name};
use crate::config::K8sConfig;

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The lease's Job. It runs at once: its pod cannot start before the Secret its
/// environment reads exists, which is created beside it. `activeDeadlineSeconds` is the
/// paid time plus the readiness timeout (see `provisioning_deadline`), counted by the
/// controller from `status.startTime`; once the pod is ready, the backend sets it to end
/// exactly at the paid expiry.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

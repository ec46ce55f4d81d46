//! Configuration of the Kubernetes backend.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::K8sError;

/// The namespace leases run in when `POD_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "user-workloads";
/// The SSH image when `SSH_BASE_IMAGE` is unset.
pub const DEFAULT_IMAGE: &str = paygress_core::DEFAULT_IMAGE;
/// The SSH port inside the pod when `SSH_PORT` is unset.
pub const DEFAULT_SSH_PORT: u16 = 2222;
/// Seconds a finished Job (and, through ownerReferences, its Service and Secret) is kept.
pub const DEFAULT_TTL_AFTER_FINISHED: i32 = 60;
/// How long a new lease's pod may take to become ready when `POD_READY_TIMEOUT` is unset.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Ephemeral storage (MiB) of a lease's pod when `POD_EPHEMERAL_STORAGE_MIB` is unset.
pub const DEFAULT_EPHEMERAL_STORAGE_MIB: u32 = 2048;

/// How buyers reach a lease's SSH port (`SERVICE_TYPE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServiceType {
    /// A NodePort Service: buyers connect to a node's address (`SSH_HOST`, else the
    /// ExternalIP, then InternalIP, of the node running the pod) on the node port.
    #[default]
    NodePort,
    /// A LoadBalancer Service: buyers connect to the address the cloud's load balancer
    /// reports, on the SSH port.
    LoadBalancer,
}

impl ServiceType {
    /// The Service `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Ephemeral storage per tier (`POD_EPHEMERAL_STORAGE_MIB`: `2048`, or
/// `small=1024,large=8192,*=2048`): the pod's request and limit, so a tenant filling its
/// disk is evicted instead of filling the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralStorage {
    /// MiB for tiers not listed.
    pub default_mib: u32,
    /// MiB per tier id.
    pub per_tier: BTreeMap<String, u32>,
}

impl Default for EphemeralStorage {
    fn default() -> Self {
        Self {
            default_mib: DEFAULT_EPHEMERAL_STORAGE_MIB,
            per_tier: BTreeMap::new(),
        }
    }
}

impl EphemeralStorage {
    /// MiB for `tier`.
    pub fn mib_for(&self, tier: &str) -> u32 {
        self.per_tier.get(tier).copied().unwrap_or(self.default_mib)
    }

    fn parse(value: &str) -> Result<Self, K8sError> {
        let bad = |reason: String| K8sError::Config {
            var: "POD_EPHEMERAL_STORAGE_MIB",
            reason,
        };
        let mut out = Self::default();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (tier, mib) = match item.split_once('=') {
                Some((t, m)) => (t.trim(), m.trim()),
                None => ("*", item),
            };
            let mib: u32 = mib.parse().map_err(|e| bad(format!("{item:?}: {e}")))?;
            if mib == 0 {
                return Err(bad(format!("{item:?}: must be at least 1")));
            }
            if tier == "*" {
                out.default_mib = mib;
            } else {
                out.per_tier.insert(tier.to_owned(), mib);
            }
        }
        Ok(out)
    }
}

/// Where and how lease pods are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sConfig {
    /// Namespace of every lease object (`POD_NAMESPACE`, default `user-workloads`).
    pub namespace: String,
    /// Image used when a lease spec names none (`SSH_BASE_IMAGE`).
    pub default_image: String,
    /// SSH port inside the pod; the Service's target port (`SSH_PORT`, default 2222).
    pub ssh_port: u16,
    /// `ttlSecondsAfterFinished` of each Job (`POD_TTL_AFTER_FINISHED_SECONDS`, default 60).
    pub ttl_seconds_after_finished: i32,
    /// `PUID` inside the pod (`POD_PUID`, default 1000).
    pub puid: u32,
    /// `PGID` inside the pod (`POD_PGID`, default 1000).
    pub pgid: u32,
    /// `TZ` inside the pod, when set (`POD_TZ`).
    pub timezone: Option<String>,
    /// How long a new lease's pod may take to become ready (`POD_READY_TIMEOUT`,
    /// seconds, default 120); past it the lease is deleted and the buyer refunded.
    pub ready_timeout: Duration,
    /// The Service type buyers reach the pod through (`SERVICE_TYPE`).
    pub service_type: ServiceType,
    /// The host put in replies (`SSH_HOST`); unset: the node's or load balancer's
    /// address.
    pub ssh_host: Option<String>,
    /// Ephemeral storage per tier (`POD_EPHEMERAL_STORAGE_MIB`).
    pub ephemeral_storage: EphemeralStorage,
}

impl Default for K8sConfig {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            default_image: DEFAULT_IMAGE.to_owned(),
            ssh_port: DEFAULT_SSH_PORT,
            ttl_seconds_after_finished: DEFAULT_TTL_AFTER_FINISHED,
            puid: 1000,
            pgid: 1000,
            timezone: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            service_type: ServiceType::default(),
            ssh_host: None,
            ephemeral_storage: EphemeralStorage::default(),
        }
    }
}

impl K8sConfig {
    /// Reads the configuration from the process environment; unset or empty variables
    /// keep their defaults.
    pub fn from_env() -> Result<Self, K8sError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, K8sError> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = Self::default();
        if let Some(ns) = get("POD_NAMESPACE") {
            config.namespace = ns;
        }
        if let Some(image) = get("SSH_BASE_IMAGE") {
            config.default_image = image;
        }
        if let Some(port) = get("SSH_PORT") {
            config.ssh_port = parse("SSH_PORT", &port)?;
            if config.ssh_port == 0 {
                return Err(K8sError::Config {
                    var: "SSH_PORT",
                    reason: "must be 1-65535".to_owned(),
                });
            }
        }
        if let Some(ttl) = get("POD_TTL_AFTER_FINISHED_SECONDS") {
            config.ttl_seconds_after_finished = parse("POD_TTL_AFTER_FINISHED_SECONDS", &ttl)?;
            if config.ttl_seconds_after_finished < 0 {
                return Err(K8sError::Config {
                    var: "POD_TTL_AFTER_FINISHED_SECONDS",
                    reason: "must not be negative".to_owned(),
                });
            }
        }
        if let Some(v) = get("POD_PUID") {
            config.puid = parse("POD_PUID", &v)?;
        }
        if let Some(v) = get("POD_PGID") {
            config.pgid = parse("POD_PGID", &v)?;
        }
        config.timezone = get("POD_TZ");
        if let Some(v) = get("POD_READY_TIMEOUT") {
            let secs: u64 = parse("POD_READY_TIMEOUT", &v)?;
            if secs == 0 {
                return Err(K8sError::Config {
                    var: "POD_READY_TIMEOUT",
                    reason: "must be at least 1 second".to_owned(),
                });
            }
            config.ready_timeout = Duration::from_secs(secs);
        }
        if let Some(v) = get("SERVICE_TYPE") {
            config.service_type = match v.as_str() {
                "NodePort" => ServiceType::NodePort,
                "LoadBalancer" => ServiceType::LoadBalancer,
                other => {
                    return Err(K8sError::Config {
                        var: "SERVICE_TYPE",
                        reason: format!("{other:?}: must be NodePort or LoadBalancer"),
                    });
                }
            };
        }
        config.ssh_host = get("SSH_HOST");
        if let Some(v) = get("POD_EPHEMERAL_STORAGE_MIB") {
            config.ephemeral_storage = EphemeralStorage::parse(&v)?;
        }
        Ok(config)
    }
}

fn parse<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, K8sError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| K8sError::Config {
        var,
        reason: format!("{value:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<K8sConfig, K8sError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        K8sConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_seed() {
        let config = from(&[]).unwrap();
        assert_eq!(config.namespace, "user-workloads");
        assert_eq!(config.default_image, "linuxserver/openssh-server:latest");
        assert_eq!(config.ssh_port, 2222);
        assert_eq!(config.timezone, None);
        assert_eq!(config.ready_timeout, Duration::from_secs(120));
        assert_eq!(config.service_type, ServiceType::NodePort);
        assert_eq!(config.ssh_host, None);
        assert_eq!(config.ephemeral_storage.mib_for("any"), 2048);
    }

    #[test]
    fn reads_seed_variables() {
        let config = from(&[
            ("POD_NAMESPACE", "leases"),
            ("SSH_BASE_IMAGE", "example/ssh:1"),
            ("SSH_PORT", "22"),
            ("POD_TZ", "Europe/Berlin"),
            ("POD_TTL_AFTER_FINISHED_SECONDS", "5"),
            ("POD_READY_TIMEOUT", "300"),
            ("SERVICE_TYPE", "LoadBalancer"),
            ("SSH_HOST", "ssh.example.net"),
            ("POD_EPHEMERAL_STORAGE_MIB", "small=512, *=4096"),
        ])
        .unwrap();
        assert_eq!(config.ready_timeout, Duration::from_secs(300));
        assert_eq!(config.service_type, ServiceType::LoadBalancer);
        assert_eq!(config.ssh_host.as_deref(), Some("ssh.example.net"));
        assert_eq!(config.ephemeral_storage.mib_for("small"), 512);
        assert_eq!(config.ephemeral_storage.mib_for("large"), 4096);
        assert_eq!(config.namespace, "leases");
        assert_eq!(config.default_image, "example/ssh:1");
        assert_eq!(config.ssh_port, 22);
        assert_eq!(config.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(config.ttl_seconds_after_finished, 5);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("SSH_PORT", "x"),
            ("SSH_PORT", "0"),
            ("POD_TTL_AFTER_FINISHED_SECONDS", "-1"),
            ("POD_READY_TIMEOUT", "0"),
            ("SERVICE_TYPE", "ClusterIP"),
            ("POD_EPHEMERAL_STORAGE_MIB", "small=lots"),
        ] {
            match from(&[(var, value)]) {
                Err(K8sError::Config { var: got, .. }) => assert_eq!(got, var),
                other => panic!("{var}={value}: {other:?}"),
            }
        }
    }
}

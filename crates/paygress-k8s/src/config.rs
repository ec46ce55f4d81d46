//! Configuration of the Kubernetes backend.

use crate::error::K8sError;

/// The namespace leases run in when `POD_NAMESPACE` is unset.
pub const DEFAULT_NAMESPACE: &str = "user-workloads";
/// The SSH image when `SSH_BASE_IMAGE` is unset.
pub const DEFAULT_IMAGE: &str = paygress_core::DEFAULT_IMAGE;
/// The SSH port inside the pod when `SSH_PORT` is unset.
pub const DEFAULT_SSH_PORT: u16 = 2222;
/// Seconds a finished Job (and, through ownerReferences, its Service and Secret) is kept.
pub const DEFAULT_TTL_AFTER_FINISHED: i32 = 60;

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
    }

    #[test]
    fn reads_seed_variables() {
        let config = from(&[
            ("POD_NAMESPACE", "leases"),
            ("SSH_BASE_IMAGE", "example/ssh:1"),
            ("SSH_PORT", "22"),
            ("POD_TZ", "Europe/Berlin"),
            ("POD_TTL_AFTER_FINISHED_SECONDS", "5"),
        ])
        .unwrap();
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
        ] {
            match from(&[(var, value)]) {
                Err(K8sError::Config { var: got, .. }) => assert_eq!(got, var),
                other => panic!("{var}={value}: {other:?}"),
            }
        }
    }
}

//! What the settings turn into: each by its environment variable's name (for the
//! components' `from_lookup`), the service's validated terms; `Debug` that redacts.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use paygress_core::{DurationLimits, Rate, ServiceConfig};

use super::{BackendKind, ServeArgs, parse_port_range, parse_tier};

impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ServeArgs");
        d.field("run_mode", &self.run_mode);
        d.field("bind_addr", &self.bind_addr);
        d.field("pod_backend", &self.pod_backend);
        d.field("data_dir", &self.data_dir);
        d.field("cashu_db_path", &self.cashu_db_path);
        d.field("whitelisted_mints", &self.whitelisted_mints);
        d.field(
            "payment_rate_sats_per_hour",
            &self.payment_rate_sats_per_hour,
        );
        d.field(
            "default_pod_duration_minutes",
            &self.default_pod_duration_minutes,
        );
        d.field("min_pod_duration_minutes", &self.min_pod_duration_minutes);
        d.field("max_pod_duration_minutes", &self.max_pod_duration_minutes);
        d.field("tiers", &self.tiers);
        d.field("enable_cleanup_task", &self.enable_cleanup_task);
        d.field("service_name", &self.service_name);
        d.field("nostr_relays", &self.nostr_relays);
        d.field(
            "nostr_private_key",
            &self.nostr_private_key.as_ref().map(|_| "<redacted>"),
        );
        d.field("ssh_base_image", &self.ssh_base_image);
        d.field("allowed_pod_images", &self.allowed_pod_images);
        d.field("ssh_port", &self.ssh_port);
        d.field("ssh_host", &self.ssh_host);
        d.field("pod_namespace", &self.pod_namespace);
        d.field("local_port_range", &self.local_port_range);
        d.field("bind_host", &self.bind_host);
        d.field("local_sandbox", &self.local_sandbox);
        d.field("max_leases", &self.max_leases);
        d.field("journal_retention_hours", &self.journal_retention_hours);
        d.field(
            "release_min_charge_minutes",
            &self.release_min_charge_minutes,
        );
        d.field("expiry_notice_minutes", &self.expiry_notice_minutes);
        d.field("grace_minutes", &self.grace_minutes);
        d.field("allow_shared_data", &self.allow_shared_data);
        d.field("local_network", &self.local_network);
        d.field("local_uid_range", &self.local_uid_range);
        d.field("local_tmp_size_mib", &self.local_tmp_size_mib);
        d.field("local_max_file_mib", &self.local_max_file_mib);
        d.field("local_min_free_mib", &self.local_min_free_mib);
        d.field("local_home_size_mib", &self.local_home_size_mib);
        d.field(
            "pod_ttl_after_finished_seconds",
            &self.pod_ttl_after_finished_seconds,
        );
        d.field("pod_puid", &self.pod_puid);
        d.field("pod_pgid", &self.pod_pgid);
        d.field("pod_tz", &self.pod_tz);
        d.field("http_body_limit_bytes", &self.http_body_limit_bytes);
        d.field("http_request_timeout_secs", &self.http_request_timeout_secs);
        d.field(
            "http_rate_limit_per_minute",
            &self.http_rate_limit_per_minute,
        );
        d.field("http_trust_forwarded_for", &self.http_trust_forwarded_for);
        d.field("web_ui", &self.web_ui);
        d.field("web_public_url", &self.web_public_url);
        d.field("web_addr", &self.web_addr);
        d.field("service_type", &self.service_type);
        d.field("pod_ready_timeout", &self.pod_ready_timeout);
        d.field("pod_ephemeral_storage_mib", &self.pod_ephemeral_storage_mib);
        d.field("nostr_index_relays", &self.nostr_index_relays);
        d.field("nostr_inbox_relays", &self.nostr_inbox_relays);
        d.field("offer_legacy_kind", &self.offer_legacy_kind);
        d.field("offer_location", &self.offer_location);
        d.field("metrics_addr", &self.metrics_addr);
        d.field("log_format", &self.log_format);
        d.field("shutdown_grace_secs", &self.shutdown_grace_secs);
        d.field("withdraw_to", &self.withdraw_to);
        d.field("withdraw_above_sats", &self.withdraw_above_sats);
        d.finish()
    }
}

impl ServeArgs {
    /// The value of the setting named by its environment variable, as the components'
    /// `from_lookup` constructors read it (they hold the defaults and validation):
    /// whatever came from a flag, the environment or the config file, read once here.
    pub fn lookup(&self, name: &str) -> Option<String> {
        let own = |v: &Option<String>| v.clone();
        match name {
            "PAYGRESS_DATA_DIR" => Some(self.data_dir.display().to_string()),
            "LOCAL_PORT_RANGE" => Some(self.local_port_range.clone()),
            "BIND_HOST" => Some(self.bind_host.clone()),
            "LOCAL_SANDBOX" => Some(self.local_sandbox.clone()),
            "LOCAL_NETWORK" => Some(self.local_network.clone()),
            "LOCAL_UID_RANGE" => own(&self.local_uid_range),
            "LOCAL_TMP_SIZE_MIB" => own(&self.local_tmp_size_mib),
            "LOCAL_MAX_FILE_MIB" => own(&self.local_max_file_mib),
            "LOCAL_MIN_FREE_MIB" => own(&self.local_min_free_mib),
            "LOCAL_HOME_SIZE_MIB" => own(&self.local_home_size_mib),
            "POD_NAMESPACE" => Some(self.pod_namespace.clone()),
            "SSH_BASE_IMAGE" => Some(self.ssh_base_image.clone()),
            "SSH_PORT" => Some(self.ssh_port.to_string()),
            "POD_TTL_AFTER_FINISHED_SECONDS" => own(&self.pod_ttl_after_finished_seconds),
            "POD_PUID" => own(&self.pod_puid),
            "POD_PGID" => own(&self.pod_pgid),
            "POD_TZ" => own(&self.pod_tz),
            "DEFAULT_POD_DURATION_MINUTES" => Some(self.default_pod_duration_minutes.to_string()),
            "GRACE_MINUTES" => Some(self.grace_minutes.to_string()),
            "HTTP_BODY_LIMIT_BYTES" => own(&self.http_body_limit_bytes),
            "HTTP_REQUEST_TIMEOUT_SECS" => own(&self.http_request_timeout_secs),
            "HTTP_RATE_LIMIT_PER_MINUTE" => own(&self.http_rate_limit_per_minute),
            "HTTP_TRUST_FORWARDED_FOR" => own(&self.http_trust_forwarded_for),
            "WEB_UI" => own(&self.web_ui),
            "WEB_PUBLIC_URL" => own(&self.web_public_url),
            "SERVICE_TYPE" => own(&self.service_type),
            "POD_READY_TIMEOUT" => own(&self.pod_ready_timeout),
            "POD_EPHEMERAL_STORAGE_MIB" => own(&self.pod_ephemeral_storage_mib),
            // On Kubernetes the default `localhost` is never right for buyers: without a
            // host, replies carry the node's or the load balancer's address.
            "SSH_HOST" => Some(self.ssh_host.clone()).filter(|h| h != "localhost"),
            "NOSTR_INDEX_RELAYS" => own(&self.nostr_index_relays),
            "NOSTR_INBOX_RELAYS" => own(&self.nostr_inbox_relays),
            "PAYGRESS_OFFER_LEGACY_KIND" => own(&self.offer_legacy_kind),
            "PAYGRESS_OFFER_LOCATION" => own(&self.offer_location),
            _ => None,
        }
    }

    /// `METRICS_ADDR`, when set and not empty.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>> {
        match self.metrics_addr.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => {
                Ok(Some(v.parse().with_context(|| {
                    format!("METRICS_ADDR {v:?} is not host:port")
                })?))
            }
        }
    }

    /// The Cashu wallet database path.
    pub fn cashu_db(&self) -> PathBuf {
        self.cashu_db_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cashu.db"))
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.data_dir.join("journal.jsonl")
    }

    /// The local backend's port range.
    pub fn port_range(&self) -> Result<std::ops::RangeInclusive<u16>> {
        parse_port_range(&self.local_port_range)
    }

    /// The service's terms, validated.
    pub fn service_config(&self) -> Result<ServiceConfig> {
        let rate = Rate::from_sats_per_hour(self.payment_rate_sats_per_hour)
            .context("PAYMENT_RATE_SATS_PER_HOUR must be greater than 0")?;
        ensure!(
            self.min_pod_duration_minutes >= 1,
            "MIN_POD_DURATION_MINUTES must be at least 1"
        );
        ensure!(
            self.max_pod_duration_minutes >= self.min_pod_duration_minutes,
            "MAX_POD_DURATION_MINUTES ({}) is below MIN_POD_DURATION_MINUTES ({})",
            self.max_pod_duration_minutes,
            self.min_pod_duration_minutes
        );
        // A Kubernetes lease's pod ends at its Job's deadline and nothing but a volume
        // could outlive it: there is nothing to bring back.
        ensure!(
            self.grace_minutes == 0 || self.pod_backend == BackendKind::Local,
            "GRACE_MINUTES needs POD_BACKEND=local (a Kubernetes lease's pod cannot be kept stopped)"
        );
        let tiers = self
            .tiers
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| parse_tier(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(ServiceConfig::default()
            .with_name(self.service_name.clone())
            .with_rate(rate)
            .with_tiers(tiers)
            .with_limits(DurationLimits {
                min_seconds: self.min_pod_duration_minutes * 60,
                max_seconds: self.max_pod_duration_minutes.saturating_mul(60),
            })
            .with_default_image(self.ssh_base_image.clone())
            .with_allowed_images(
                self.allowed_pod_images
                    .iter()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            )
            .with_ssh_host(self.ssh_host.clone())
            .with_max_leases(self.max_leases)
            .with_journal_retention(std::time::Duration::from_secs(
                self.journal_retention_hours.saturating_mul(3600),
            ))
            .with_release_minimum(std::time::Duration::from_secs(
                self.release_min_charge_minutes.saturating_mul(60),
            ))
            .with_expiry_notice((self.expiry_notice_minutes > 0).then(|| {
                std::time::Duration::from_secs(self.expiry_notice_minutes.saturating_mul(60))
            }))
            .with_grace(std::time::Duration::from_secs(
                self.grace_minutes.saturating_mul(60),
            )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(extra: &[&str]) -> ServeArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut argv = vec!["paygress", "--whitelisted-mints", "http://127.0.0.1:3338"];
        argv.extend_from_slice(extra);
        <Cli as clap::Parser>::try_parse_from(argv)
            .expect("arguments")
            .serve
    }

    #[test]
    fn grace_minutes_reach_the_service_and_the_local_backend() {
        let args = serve_args(&["--pod-backend", "local", "--grace-minutes", "30"]);
        let config = args.service_config().unwrap();
        assert_eq!(config.grace, std::time::Duration::from_secs(30 * 60));
        assert_eq!(args.lookup("GRACE_MINUTES").as_deref(), Some("30"));
        let off = serve_args(&["--pod-backend", "local"]);
        assert_eq!(
            off.service_config().unwrap().grace,
            std::time::Duration::ZERO
        );
    }

    #[test]
    fn grace_minutes_are_refused_on_kubernetes() {
        let args = serve_args(&["--pod-backend", "kubernetes", "--grace-minutes", "30"]);
        let e = args.service_config().unwrap_err().to_string();
        assert!(e.contains("GRACE_MINUTES"), "{e}");
    }
}

//! Configuration: raw values close to the flags (each also read from the seed's
//! environment variable), then validated into the components' own config types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use paygress_core::{DurationLimits, Rate, ServiceConfig, Tier};

/// Which transports serve requests (`RUN_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// Encrypted Nostr events only.
    Nostr,
    /// HTTP only.
    Http,
    /// Both.
    Both,
}

impl RunMode {
    /// Whether Nostr is on.
    pub fn nostr(self) -> bool {
        matches!(self, RunMode::Nostr | RunMode::Both)
    }

    /// Whether HTTP is on.
    pub fn http(self) -> bool {
        matches!(self, RunMode::Http | RunMode::Both)
    }
}

/// Where leases run (`POD_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A Kubernetes cluster (Jobs in `POD_NAMESPACE`).
    Kubernetes,
    /// This machine: embedded SSH servers and bubblewrap sandboxes.
    Local,
}

/// Everything `paygress serve` reads. Every flag has an environment variable; the
/// seed's names are kept.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Transports: nostr, http or both.
    #[arg(long, env = "RUN_MODE", value_enum, default_value = "nostr")]
    pub run_mode: RunMode,
    /// HTTP listen address (in nostr mode only `GET /healthz` is served there).
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0:8080")]
    pub bind_addr: SocketAddr,
    /// Where leases run: kubernetes or local.
    #[arg(long, env = "POD_BACKEND", value_enum, default_value = "kubernetes")]
    pub pod_backend: BackendKind,
    /// State directory (service key, journal, local leases).
    #[arg(long, env = "PAYGRESS_DATA_DIR", default_value = "./paygress-data")]
    pub data_dir: PathBuf,
    /// Cashu wallet database [default: <data dir>/cashu.db].
    #[arg(long, env = "CASHU_DB_PATH")]
    pub cashu_db_path: Option<PathBuf>,
    /// Accepted mints, comma-separated URLs (exact match after normalisation).
    #[arg(
        long,
        env = "WHITELISTED_MINTS",
        value_delimiter = ',',
        required = true
    )]
    pub whitelisted_mints: Vec<String>,
    /// Base price in sat per hour.
    #[arg(long, env = "PAYMENT_RATE_SATS_PER_HOUR", default_value_t = 60)]
    pub payment_rate_sats_per_hour: u64,
    /// Duration quoted in HTTP 402 answers when a request names none, minutes.
    #[arg(long, env = "DEFAULT_POD_DURATION_MINUTES", default_value_t = 60)]
    pub default_pod_duration_minutes: u64,
    /// Shortest lease, minutes.
    #[arg(long, env = "MIN_POD_DURATION_MINUTES", default_value_t = 1)]
    pub min_pod_duration_minutes: u64,
    /// Longest lease (and most time a lease may have left), minutes.
    #[arg(long, env = "MAX_POD_DURATION_MINUTES", default_value_t = 7 * 24 * 60)]
    pub max_pod_duration_minutes: u64,
    /// Tiers, comma-separated `id:cpu_millicores:memory_mib[:sats_per_hour]`; the first is
    /// the default [default: standard:1000:1024].
    #[arg(long, env = "PAYGRESS_TIERS", value_delimiter = ',')]
    pub tiers: Vec<String>,
    /// Run the periodic reaper and settlement task.
    #[arg(long, env = "ENABLE_CLEANUP_TASK", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_cleanup_task: bool,
    /// Name advertised in the offer.
    #[arg(long, env = "PAYGRESS_SERVICE_NAME", default_value = "paygress")]
    pub service_name: String,

    /// Nostr relays, comma-separated.
    #[arg(
        long,
        env = "NOSTR_RELAYS",
        value_delimiter = ',',
        default_value = "wss://relay.damus.io,wss://nos.lol,wss://relay.nostr.band"
    )]
    pub nostr_relays: Vec<String>,
    /// Service key (nsec or hex) [default: generated once and kept in the data dir].
    #[arg(long, env = "NOSTR_PRIVATE_KEY", hide_env_values = true)]
    pub nostr_private_key: Option<String>,

    /// SSH image for Kubernetes leases.
    #[arg(
        long,
        env = "SSH_BASE_IMAGE",
        default_value = "linuxserver/openssh-server:latest"
    )]
    pub ssh_base_image: String,
    /// Other images buyers may request, comma-separated.
    #[arg(long, env = "ALLOWED_POD_IMAGES", value_delimiter = ',')]
    pub allowed_pod_images: Vec<String>,
    /// SSH port inside Kubernetes pods.
    #[arg(long, env = "SSH_PORT", default_value_t = 2222)]
    pub ssh_port: u16,
    /// Host buyers connect to, as put in replies.
    #[arg(long, env = "SSH_HOST", default_value = "localhost")]
    pub ssh_host: String,
    /// Kubernetes namespace for leases.
    #[arg(long, env = "POD_NAMESPACE", default_value = "user-workloads")]
    pub pod_namespace: String,

    /// Local backend: ports for leases' SSH servers, `first-last`.
    #[arg(long, env = "LOCAL_PORT_RANGE", default_value = "2300-2399")]
    pub local_port_range: String,
    /// Local backend: address the SSH servers listen on.
    #[arg(long, env = "BIND_HOST", default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Local backend: `bubblewrap` (default) or `unsandboxed` (trusted buyers only).
    #[arg(long, env = "LOCAL_SANDBOX", default_value = "bubblewrap")]
    pub local_sandbox: String,
    /// Most live leases at once; a full service refuses new spawns with the token
    /// untouched (unset: only the backend's own capacity limits).
    #[arg(long, env = "MAX_LEASES")]
    pub max_leases: Option<usize>,
    /// Hours a finished request's reply is kept for duplicates of that request. After
    /// that a duplicate is refused as a spent token; it is never charged twice.
    #[arg(long, env = "JOURNAL_RETENTION_HOURS", default_value_t = 168)]
    pub journal_retention_hours: u64,

    /// Start even when the data directory or wallet files are readable or writable by
    /// group or others (a warning instead of the refusal).
    #[arg(
        long,
        env = "PAYGRESS_ALLOW_SHARED_DATA",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_shared_data: bool,
    /// Local backend: lease network, `isolated` (default), `host` or `none`.
    #[arg(long, env = "LOCAL_NETWORK", default_value = "isolated")]
    pub local_network: String,
}

/// What must be private at rest: the data directory, the journal and every wallet file
/// (see [`paygress_cashu::CashuConfig::private_paths`]).
pub fn private_paths(data_dir: &Path, journal: &Path, cashu_db: &Path) -> Vec<PathBuf> {
    let mut paths = vec![data_dir.to_owned(), journal.to_owned()];
    paths.extend(paygress_cashu::CashuConfig::private_paths_for(cashu_db));
    paths
}

/// Whether `PAYGRESS_ALLOW_SHARED_DATA` is set to a true value (`1`, `true`, `yes`, `on`),
/// for commands without a flag for it (`paygress dev`).
pub fn allow_shared_data_from_env() -> bool {
    std::env::var(paygress_store::private::ENV_ALLOW_SHARED_DATA).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "y" | "on"
        )
    })
}

impl ServeArgs {
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

    /// What must be private at rest, see [`private_paths`].
    pub fn private_paths(&self) -> Vec<PathBuf> {
        private_paths(&self.data_dir, &self.journal_path(), &self.cashu_db())
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
        let tiers = self
            .tiers
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| parse_tier(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(ServiceConfig {
            name: self.service_name.clone(),
            rate,
            tiers,
            limits: DurationLimits {
                min_seconds: self.min_pod_duration_minutes * 60,
                max_seconds: self.max_pod_duration_minutes.saturating_mul(60),
            },
            default_image: self.ssh_base_image.clone(),
            allowed_images: self
                .allowed_pod_images
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            ssh_host: self.ssh_host.clone(),
            max_leases: self.max_leases,
            journal_retention: std::time::Duration::from_secs(
                self.journal_retention_hours.saturating_mul(3600),
            ),
            ..ServiceConfig::default()
        })
    }
}

/// Parses `id:cpu_millicores:memory_mib[:sats_per_hour]`.
pub fn parse_tier(spec: &str) -> Result<Tier> {
    let parts: Vec<&str> = spec.trim().split(':').collect();
    let (id, cpu, mem, rate) = match parts.as_slice() {
        [id, cpu, mem] => (*id, *cpu, *mem, None),
        [id, cpu, mem, rate] => (*id, *cpu, *mem, Some(*rate)),
        _ => bail!("tier {spec:?}: expected id:cpu_millicores:memory_mib[:sats_per_hour]"),
    };
    ensure!(
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "tier {spec:?}: id must be lowercase letters, digits or '-'"
    );
    let rate = match rate {
        Some(r) => Some(
            Rate::from_sats_per_hour(r.parse().with_context(|| format!("tier {spec:?}: rate"))?)
                .with_context(|| format!("tier {spec:?}: rate must be greater than 0"))?,
        ),
        None => None,
    };
    Ok(Tier {
        id: id.to_owned(),
        cpu_millicores: cpu
            .trim_end_matches('m')
            .parse()
            .with_context(|| format!("tier {spec:?}: cpu millicores"))?,
        memory_mib: mem
            .trim_end_matches("Mi")
            .parse()
            .with_context(|| format!("tier {spec:?}: memory MiB"))?,
        rate,
    })
}

/// Parses `first-last`.
pub fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("port range {s:?}: expected first-last"))?;
    let (a, b): (u16, u16) = (
        a.trim().parse().context("port range start")?,
        b.trim().parse().context("port range end")?,
    );
    ensure!(a > 0 && a <= b, "port range {s:?} is empty");
    Ok(a..=b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse() {
        let t = parse_tier("pro:2000m:4096Mi:240").unwrap();
        assert_eq!(t.id, "pro");
        assert_eq!(t.cpu_millicores, 2000);
        assert_eq!(t.memory_mib, 4096);
        assert_eq!(t.rate, Rate::from_sats_per_hour(240));
        assert_eq!(parse_tier("basic:500:512").unwrap().rate, None);
        for bad in ["x", "Pro:1:1", "a:b:c", "a:1:1:0", "a:1:1:1:1"] {
            assert!(parse_tier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("2300-2399").unwrap(), 2300..=2399);
        assert!(parse_port_range("2399-2300").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("abc").is_err());
    }
}

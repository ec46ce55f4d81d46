//! Configuration: raw values close to the flags (each also read from the seed's
//! environment variable), then validated into the components' own config types.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use paygress_core::{DurationLimits, Rate, ServiceConfig, Tier};

pub use crate::logging::LogFormat;

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

/// Everything `paygress serve` reads, once: each setting is a flag, an environment
/// variable (the seed's names are kept) or a key of the `--config` file, in that order
/// of precedence. `Debug` is written by hand: it never shows the service's key.
#[derive(Clone, Args)]
pub struct ServeArgs {
    /// A TOML file of settings: keys are these flags' names with `_` (`run_mode`,
    /// `whitelisted_mints = ["https://…"]`) or their environment variables' names;
    /// flags and environment variables override it.
    #[arg(long, env = "PAYGRESS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print it (secrets redacted) and exit.
    #[arg(long)]
    pub check_config: bool,
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
    #[arg(long, env = "PAYGRESS_DATA_DIR", default_value = paygress_core::DEFAULT_DATA_DIR)]
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
        default_value = paygress_core::DEFAULT_IMAGE
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
    /// Minutes of every lease a release charges, counted from the lease's start: an
    /// owner who releases a lease early gets back the unused time after this minimum
    /// (and after the mint's fee for issuing the refund token). `0`: no minimum.
    #[arg(long, env = "RELEASE_MIN_CHARGE_MINUTES", default_value_t = 5)]
    pub release_min_charge_minutes: u64,
    /// Minutes before a lease's expiry that its owner is sent an encrypted Nostr notice
    /// with the expiry and a ready-to-paste `paygress topup` command (once per expiry;
    /// a top-up moves it). `0`: no notices.
    #[arg(long, env = "EXPIRY_NOTICE_MINUTES", default_value_t = 10)]
    pub expiry_notice_minutes: u64,
    /// Minutes a lease's data is kept after its paid end: at expiry logins stop and
    /// its processes are stopped, a top-up within this time brings it back with its
    /// home directory (the time bought counts from the top-up), then it is removed.
    /// `0`: removed at expiry. Local backend only.
    #[arg(long, env = "GRACE_MINUTES", default_value_t = 0)]
    pub grace_minutes: u64,

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
    /// Local backend, as root: uids for leases' commands, `first-last`
    /// [default: 2000000-2000999].
    #[arg(long, env = "LOCAL_UID_RANGE")]
    pub local_uid_range: Option<String>,
    /// Local backend: size of each command's private `/tmp`, MiB [default: 256].
    #[arg(long, env = "LOCAL_TMP_SIZE_MIB")]
    pub local_tmp_size_mib: Option<String>,
    /// Local backend: largest file a lease may write, MiB [default: 4096].
    #[arg(long, env = "LOCAL_MAX_FILE_MIB")]
    pub local_max_file_mib: Option<String>,
    /// Local backend: new leases are refused below this much free disk, MiB
    /// [default: 2048].
    #[arg(long, env = "LOCAL_MIN_FREE_MIB")]
    pub local_min_free_mib: Option<String>,
    /// Local backend, as root: each home its own ext4 image of this many MiB [default:
    /// unset, homes share the data directory's filesystem].
    #[arg(long, env = "LOCAL_HOME_SIZE_MIB")]
    pub local_home_size_mib: Option<String>,

    /// Kubernetes: `ttlSecondsAfterFinished` of each Job [default: 60].
    #[arg(long, env = "POD_TTL_AFTER_FINISHED_SECONDS")]
    pub pod_ttl_after_finished_seconds: Option<String>,
    /// Kubernetes: `PUID` inside the pod [default: 1000].
    #[arg(long, env = "POD_PUID")]
    pub pod_puid: Option<String>,
    /// Kubernetes: `PGID` inside the pod [default: 1000].
    #[arg(long, env = "POD_PGID")]
    pub pod_pgid: Option<String>,
    /// Kubernetes: `TZ` inside the pod [default: unset].
    #[arg(long, env = "POD_TZ")]
    pub pod_tz: Option<String>,

    /// HTTP: largest request body, bytes [default: 65536].
    #[arg(long, env = "HTTP_BODY_LIMIT_BYTES")]
    pub http_body_limit_bytes: Option<String>,
    /// HTTP: longest a request may take before it answers 503, seconds [default: 30].
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT_SECS")]
    pub http_request_timeout_secs: Option<String>,
    /// HTTP: requests per minute per client IP, 0 for unlimited [default: 120].
    #[arg(long, env = "HTTP_RATE_LIMIT_PER_MINUTE")]
    pub http_rate_limit_per_minute: Option<String>,
    /// HTTP: take the client IP from the last `X-Forwarded-For` entry (only behind
    /// exactly one reverse proxy) [default: false].
    #[arg(long, env = "HTTP_TRUST_FORWARDED_FOR")]
    pub http_trust_forwarded_for: Option<String>,
    /// The buyer's web page at `/`: `on` (default) or `off`.
    #[arg(long, env = "WEB_UI")]
    pub web_ui: Option<String>,
    /// The base URL buyers reach the service at, named in the page's NUT-18 payment
    /// requests [default: from each request's Host header].
    #[arg(long, env = "WEB_PUBLIC_URL")]
    pub web_public_url: Option<String>,
    /// Nostr mode: where the web page listens (the HTTP API is off in that mode).
    #[arg(long, env = "WEB_ADDR")]
    pub web_addr: Option<std::net::SocketAddr>,
    /// Kubernetes: `NodePort` (default) or `LoadBalancer` (docs/KUBERNETES.md).
    #[arg(long, env = "SERVICE_TYPE")]
    pub service_type: Option<String>,
    /// Kubernetes: seconds a new lease's pod may take to become ready; then it is
    /// deleted and refunded [default: 120].
    #[arg(long, env = "POD_READY_TIMEOUT")]
    pub pod_ready_timeout: Option<String>,
    /// Kubernetes: ephemeral storage per tier in MiB: `2048`, or
    /// `small=1024,large=8192,*=2048` [default: 2048].
    #[arg(long, env = "POD_EPHEMERAL_STORAGE_MIB")]
    pub pod_ephemeral_storage_mib: Option<String>,
    /// Nostr: more relays to publish the offer and relay lists to (comma-separated),
    /// e.g. well-known index relays buyers search.
    #[arg(long, env = "NOSTR_INDEX_RELAYS")]
    pub nostr_index_relays: Option<String>,
    /// Nostr: the NIP-17 inbox relays (kind 10050) requests are also read on
    /// [default: NOSTR_RELAYS].
    #[arg(long, env = "NOSTR_INBOX_RELAYS")]
    pub nostr_inbox_relays: Option<String>,
    /// Nostr: also publish the old kind-38383 offer, for old clients [default: false].
    #[arg(long, env = "PAYGRESS_OFFER_LEGACY_KIND")]
    pub offer_legacy_kind: Option<String>,
    /// Nostr: the offer's location (free text, NIP-99 `location` tag).
    #[arg(long, env = "PAYGRESS_OFFER_LOCATION")]
    pub offer_location: Option<String>,

    /// Serve Prometheus `GET /metrics` on this address only (e.g. a private
    /// `127.0.0.1:9108`) [default: on BIND_ADDR, in every run mode].
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Log lines: `text` (colour only on a terminal) or `json` (one object per line,
    /// for log collectors).
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Seconds requests in flight may take to finish after SIGTERM; then they are
    /// stopped (the journal settles them at the next start).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = paygress_node::DEFAULT_SHUTDOWN_GRACE.as_secs())]
    pub shutdown_grace_secs: u64,
    /// Sweep income to this Lightning address (`user@host`, LUD-16) whenever a mint's
    /// balance is above WITHDRAW_ABOVE_SATS [default: unset, no sweep].
    #[arg(long, env = "WITHDRAW_TO")]
    pub withdraw_to: Option<String>,
    /// With WITHDRAW_TO: the `sat` balance per mint above which income is swept.
    #[arg(long, env = "WITHDRAW_ABOVE_SATS")]
    pub withdraw_above_sats: Option<u64>,
}

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
            release_minimum: std::time::Duration::from_secs(
                self.release_min_charge_minutes.saturating_mul(60),
            ),
            expiry_notice: (self.expiry_notice_minutes > 0).then(|| {
                std::time::Duration::from_secs(self.expiry_notice_minutes.saturating_mul(60))
            }),
            grace: std::time::Duration::from_secs(self.grace_minutes.saturating_mul(60)),
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
        assert_eq!(off.service_config().unwrap().grace, std::time::Duration::ZERO);
    }

    #[test]
    fn grace_minutes_are_refused_on_kubernetes() {
        let args = serve_args(&["--pod-backend", "kubernetes", "--grace-minutes", "30"]);
        let e = args.service_config().unwrap_err().to_string();
        assert!(e.contains("GRACE_MINUTES"), "{e}");
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("2300-2399").unwrap(), 2300..=2399);
        assert!(parse_port_range("2399-2300").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("abc").is_err());
    }
}

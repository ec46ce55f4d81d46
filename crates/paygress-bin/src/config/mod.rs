//! Configuration: raw values close to the flags (each also read from the seed's
//! environment variable), then validated into the components' own config types.
//! `values`: reading and validating them; `parse`: the tier and port-range syntax.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

pub use crate::logging::LogFormat;

mod parse;
mod values;

pub use self::parse::{parse_port_range, parse_tier};

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

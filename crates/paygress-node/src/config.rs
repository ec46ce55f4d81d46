//! What a node needs, validated and typed: the binary (or a test) fills it in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paygress_cashu::CashuConfig;
use paygress_core::{DynPodBackend, ServiceConfig};
use paygress_http::HttpConfig;
use paygress_k8s::K8sConfig;
use paygress_local::LocalConfig;
use paygress_nostr::NostrConfig;

/// Where leases run.
#[derive(Clone)]
#[non_exhaustive]
pub enum BackendConfig {
    /// This machine ([`paygress_local::LocalBackend::start`]).
    Local(LocalConfig),
    /// This machine; when bubblewrap is missing or cannot sandbox here, unsandboxed
    /// shells with a loud warning ([`paygress_local::LocalBackend::start_with_fallback`]).
    LocalWithFallback(LocalConfig),
    /// A Kubernetes cluster from the in-cluster or kubeconfig credentials.
    Kubernetes(K8sConfig),
    /// A backend built by the caller (another implementation of the port, a test double).
    Custom(DynPodBackend),
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(c) => f.debug_tuple("Local").field(c).finish(),
            Self::LocalWithFallback(c) => f.debug_tuple("LocalWithFallback").field(c).finish(),
            Self::Kubernetes(c) => f.debug_tuple("Kubernetes").field(c).finish(),
            Self::Custom(b) => f.debug_tuple("Custom").field(&b.name()).finish(),
        }
    }
}

/// The HTTP listener.
#[derive(Clone)]
pub struct HttpListen {
    /// Where to listen (port 0 picks a free one; see [`crate::Node::http_addr`]).
    pub addr: SocketAddr,
    /// The whole API; when false only `GET /healthz`, for orchestrator probes of a
    /// service whose requests come over Nostr.
    pub api: bool,
    /// The API's tunables.
    pub config: HttpConfig,
    /// The buyer's web page (`GET /`); `None` turns it off (`WEB_UI=off`). The node
    /// fills in the service's npub and, on the local backend, the host-key fingerprint.
    pub web: Option<paygress_http::WebConfig>,
    /// Where the web page listens when the API does not (Nostr mode, `WEB_ADDR`).
    pub web_addr: Option<SocketAddr>,
    /// Serves `GET /metrics` on this listener with this render (the binary installs
    /// the exporter); `None`: no metrics here.
    pub metrics: Option<paygress_http::MetricsRender>,
}

impl std::fmt::Debug for HttpListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListen")
            .field("addr", &self.addr)
            .field("api", &self.api)
            .field("config", &self.config)
            .field("web", &self.web)
            .field("web_addr", &self.web_addr)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// Everything [`crate::Node::start`] needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The service's terms.
    pub service: ServiceConfig,
    /// State directory (created 0700; checked private at start).
    pub data_dir: PathBuf,
    /// The request journal.
    pub journal_path: PathBuf,
    /// The service wallet.
    pub cashu: CashuConfig,
    /// Start even when data files are open to group or others (warns instead).
    pub allow_shared_data: bool,
    /// Where leases run.
    pub backend: BackendConfig,
    /// The Nostr transport, when requests come over Nostr.
    pub nostr: Option<NostrConfig>,
    /// The HTTP listener.
    pub http: HttpListen,
    /// How often owed refunds are retried and expired leases reaped; `None` turns the
    /// task off.
    pub maintenance: Option<Duration>,
    /// How long requests in flight may take after shutdown begins
    /// (`SHUTDOWN_GRACE_SECS`); then they are stopped (the journal settles them at the
    /// next start).
    pub shutdown_grace: Duration,
}

impl NodeConfig {
    /// What must be private at rest, see [`private_paths`].
    pub fn private_paths(&self) -> Vec<PathBuf> {
        private_paths(&self.data_dir, &self.journal_path, &self.cashu.db_path)
    }
}

/// What must be private at rest: the data directory, the journal and every wallet file
/// (see [`paygress_cashu::CashuConfig::private_paths`]).
pub fn private_paths(data_dir: &Path, journal: &Path, cashu_db: &Path) -> Vec<PathBuf> {
    let mut paths = vec![data_dir.to_owned(), journal.to_owned()];
    paths.extend(CashuConfig::private_paths_for(cashu_db));
    paths
}

//! Why a node did not start.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why [`crate::Node::start`] failed; each names the setting or file to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The data directory or a wallet file is open to group or others.
    #[error(transparent)]
    NotPrivate(#[from] paygress_store::private::PrivacyError),
    /// The data directory could not be created.
    #[error("creating {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The wallet did not open.
    #[error("opening the wallet at {}: {source}", path.display())]
    Wallet {
        /// The wallet database.
        path: PathBuf,
        /// The failure.
        #[source]
        source: paygress_cashu::CashuError,
    },
    /// The local backend did not start.
    #[error("local backend: {0}")]
    Local(#[from] paygress_local::LocalError),
    /// No Kubernetes credentials, or the cluster refused.
    #[error(
        "no Kubernetes credentials (in-cluster service account or ~/.kube/config); \
         on one machine without a cluster set POD_BACKEND=local: {0}"
    )]
    Kubernetes(#[from] paygress_k8s::K8sError),
    /// The Nostr transport did not start.
    #[error("nostr: {0}")]
    Nostr(#[from] paygress_nostr::NostrError),
    /// The journal did not open.
    #[error("opening the request journal: {0}")]
    Journal(#[from] paygress_store::StoreError),
    /// The HTTP listener could not bind.
    #[error("binding BIND_ADDR {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

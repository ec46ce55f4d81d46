//! The crate's error type.

use std::path::PathBuf;

use paygress_core::ports::BackendError;
use thiserror::Error;

/// Why the local backend failed.
#[derive(Debug, Error)]
pub enum LocalError {
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Bubblewrap was requested but `bwrap` is not installed.
    #[error(
        "bubblewrap (`bwrap`) was not found on PATH; install it (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: `dnf install bubblewrap`) or choose the unsandboxed mode (development only)"
    )]
    BwrapMissing,
    /// `bwrap` is installed but cannot create a sandbox here (no user namespaces,
    /// seccomp, a container without privileges).
    #[error("bubblewrap cannot create a sandbox on this host: {0}")]
    SandboxUnavailable(String),
    /// Reading or writing a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The lease store could not be decoded.
    #[error("lease store {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why decoding failed.
        reason: String,
    },
    /// The SSH host key could not be read or written.
    #[error("host key {path}: {reason}")]
    HostKey {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Another process (a second Paygress) already uses this data directory.
    #[error("{0} is in use by another Paygress process")]
    Locked(PathBuf),
    /// Every port of the configured range is taken.
    #[error("no free port in {0}")]
    NoFreePort(crate::config::PortRange),
    /// Every uid of the configured range is taken.
    #[error("no free uid in {0}")]
    NoFreeUid(crate::config::UidRange),
    /// The disk holding the data directory is nearly full.
    #[error(
        "only {free_mib} MiB free where the data directory lives (at least {min_mib} MiB needed for a new lease)"
    )]
    LowDisk {
        /// Free MiB now.
        free_mib: u64,
        /// The configured minimum.
        min_mib: u64,
    },
    /// A lease's network namespace could not be set up.
    #[error("lease network: {0}")]
    Network(String),
    /// Random number generation failed.
    #[error("system random generator failed")]
    Random,
}

impl LocalError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<LocalError> for BackendError {
    fn from(e: LocalError) -> Self {
        match e {
            LocalError::NoFreePort(_) | LocalError::NoFreeUid(_) | LocalError::LowDisk { .. } => {
                BackendError::Unavailable(Box::new(e))
            }
            other => BackendError::Other(Box::new(other)),
        }
    }
}

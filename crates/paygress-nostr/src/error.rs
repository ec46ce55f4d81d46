//! The crate's error type.

use paygress_core::TransportError;
use thiserror::Error;

/// What can go wrong in the Nostr transport, its configuration or the buyer client.
#[derive(Debug, Error)]
pub enum NostrError {
    /// A configuration value is invalid (the message names it; never contains a secret).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Reading or writing the data directory failed.
    #[error("data directory I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A relay URL could not be parsed.
    #[error("invalid relay URL {url:?}: {reason}")]
    RelayUrl {
        /// The rejected URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Encrypting or decrypting content failed.
    #[error("encryption: {0}")]
    Crypto(String),
    /// Building, signing or unwrapping an event failed.
    #[error("event: {0}")]
    Event(String),
    /// The nostr-sdk client failed (relays unreachable, no signer, …).
    #[error("nostr client: {0}")]
    Client(#[from] nostr_sdk::client::Error),
    /// No relay accepted the event.
    #[error("no relay accepted the event: {0}")]
    NotPublished(String),
    /// No reply arrived in time.
    #[error("no reply within {0:?}")]
    Timeout(std::time::Duration),
    /// A reply or offer could not be decoded.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The transport is closed.
    #[error("transport closed")]
    Closed,
}

impl From<NostrError> for TransportError {
    fn from(e: NostrError) -> Self {
        match e {
            NostrError::Closed => TransportError::Closed,
            NostrError::NotPublished(m) => TransportError::Unavailable(m),
            NostrError::Timeout(d) => TransportError::Unavailable(format!("timeout after {d:?}")),
            other => TransportError::Other(Box::new(other)),
        }
    }
}

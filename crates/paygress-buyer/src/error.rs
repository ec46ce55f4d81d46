//! The buyer library's errors.

use std::path::PathBuf;

use paygress_nostr::NostrError;

/// Why a buyer operation failed. Messages say what to do next (and whether the token
/// was spent) where that is known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuyerError {
    /// Neither `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("HOME is not set; pass --config-dir")]
    NoHome,
    /// No identity has been created.
    #[error("no buyer identity at {}: run `paygress keygen` first (or pass --nsec)", path.display())]
    NoIdentity {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `keygen` would replace an identity.
    #[error(
        "an identity already exists at {} (use --force to replace it; its old key is lost)",
        path.display()
    )]
    IdentityExists {
        /// The existing identity.
        path: PathBuf,
    },
    /// A key does not parse.
    #[error("{what}")]
    InvalidKey {
        /// What was expected.
        what: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// `reading`, `writing`, …
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// An argument is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Connecting to the relays failed.
    #[error("connecting to relays {relays}: {source}")]
    Connect {
        /// The relays tried.
        relays: String,
        /// The failure.
        #[source]
        source: NostrError,
    },
    /// No relay accepted the request.
    #[error("no relay accepted the request (tried {relays}): {source}.{}",
        if *paid { " Your token was not sent and is not spent." } else { "" })]
    NotPublished {
        /// The relays tried.
        relays: String,
        /// Whether the request carried a token.
        paid: bool,
        /// The failure.
        #[source]
        source: NostrError,
    },
    /// The service did not answer in time.
    #[error("no reply within {secs}s from relays {relays} (request id {request_id}).{}",
        if *paid { " The service may have redeemed the token: wait and run `paygress status`, or check the token with your wallet." } else { "" })]
    NoReply {
        /// Seconds waited.
        secs: u64,
        /// The relays.
        relays: String,
        /// The request's id.
        request_id: String,
        /// Whether the request carried a token.
        paid: bool,
    },
    /// A Nostr failure.
    #[error(transparent)]
    Nostr(#[from] NostrError),
    /// An HTTP failure.
    #[error(transparent)]
    Http(#[from] paygress_http::client::ClientError),
}

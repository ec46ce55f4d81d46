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
    /// No provider on the market fits.
    #[error(
        "no live provider sells tier {tier} for at most {} sat/hour accepting {} ({found} offers found, {answered} answered). Your token was not sent.",
        max_sat_per_hour.map_or_else(|| "any".to_owned(), |p| p.to_string()),
        mints.join(", ")
    )]
    NoProvider {
        /// The tier asked for.
        tier: String,
        /// The price limit, sat per hour.
        max_sat_per_hour: Option<u64>,
        /// The buyer's mints.
        mints: Vec<String>,
        /// Offers found.
        found: usize,
        /// Providers that answered the reachability check.
        answered: usize,
    },
    /// Locking the payment failed.
    #[error("{reason}; {}", match unlocked {
        Some(p) => format!("your money is back as an unlocked token in {} (nothing was sent)", p.display()),
        None => "your token was not spent and nothing was sent".to_owned(),
    })]
    Lock {
        /// What failed.
        reason: String,
        /// Where the money was saved, unlocked, when the mint had already taken it.
        unlocked: Option<PathBuf>,
    },
    /// The service's offer could not be read.
    #[error("cannot read the offer of {service}: {reason}")]
    NoOffer {
        /// The service (URL or key).
        service: String,
        /// Why.
        reason: String,
    },
    /// The mint failed while the buyer's own wallet used it.
    #[error("the mint failed {action}: {reason}")]
    Mint {
        /// What was being done.
        action: &'static str,
        /// The mint's or wallet's error.
        reason: String,
    },
    /// The service refused a request that carried no payment.
    #[error("the service refused: {message} ({code:?})")]
    Refused {
        /// Its code.
        code: paygress_core::ErrorCode,
        /// Its message.
        message: String,
    },
    /// The service answered with a reply of another kind than the request's.
    #[error("the service answered a {request} request with another kind of reply")]
    UnexpectedReply {
        /// The request's kind.
        request: &'static str,
    },
    /// A Nostr failure.
    #[error(transparent)]
    Nostr(#[from] NostrError),
    /// An HTTP failure.
    #[error(transparent)]
    Http(#[from] paygress_http::client::ClientError),
}

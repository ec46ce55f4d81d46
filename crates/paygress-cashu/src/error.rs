//! The crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// Why setting up or operating the Cashu wallet failed.
#[derive(Debug, Error)]
pub enum CashuError {
    /// A configuration value is missing or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A mint URL could not be parsed or uses an unsupported form.
    #[error("invalid mint URL {url:?}: {reason}")]
    MintUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file (the seed, the database directory) failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The seed file exists but does not hold a valid seed. It is never overwritten.
    #[error(
        "seed file {0} is corrupt (expected BIP-39 words or 128 hex characters); refusing to replace it"
    )]
    CorruptSeed(PathBuf),
    /// The wallet database failed.
    #[error("wallet database: {0}")]
    Database(#[source] cdk::cdk_database::Error),
    /// The mint is not one of the whitelisted mints.
    #[error("mint {0} is not whitelisted")]
    MintNotAccepted(paygress_core::money::MintUrl),
    /// No whitelisted mint holds enough to pay the amount.
    #[error("insufficient funds: no accepted mint holds {0}")]
    InsufficientFunds(paygress_core::money::Amount),
    /// A cdk wallet operation failed.
    #[error("wallet: {0}")]
    Wallet(#[source] cdk::Error),
}

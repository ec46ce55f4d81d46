#![doc = include_str!("../README.md")]

mod backup;
mod config;
mod ephemeral;
mod error;
mod history;
pub mod lnaddress;
mod lock;
mod redeem;
mod send;
mod url;
mod verifier;
mod withdraw;

#[cfg(feature = "test-mint")]
pub mod testkit;

pub use backup::{RestoredAt, SeedBackup, read_seed_backup, write_seed_backup};
pub use config::{
    CashuConfig, DEFAULT_DB_PATH, ENV_DB_PATH, ENV_WHITELISTED_MINTS, load_or_create_seed,
};
pub use ephemeral::ephemeral_wallet;
pub use error::CashuError;
pub use history::{HistoryEntry, Movement};
pub use lock::{LockError, Locked, lock_token};
pub use url::normalize_mint_url;
pub use verifier::{Balance, CashuVerifier, MAX_TOKEN_LEN, MIN_LOCK_SECONDS};
pub use withdraw::{WithdrawQuote, Withdrawn};

/// Re-export of cdk, so callers use the exact version this crate was built with.
pub use cdk;

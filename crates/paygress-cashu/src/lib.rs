#![doc = include_str!("../README.md")]

mod config;
mod error;
mod lock;
mod redeem;
mod send;
mod url;
mod verifier;

#[cfg(feature = "test-mint")]
pub mod testkit;

pub use config::{
    CashuConfig, DEFAULT_DB_PATH, ENV_DB_PATH, ENV_WHITELISTED_MINTS, load_or_create_seed,
};
pub use error::CashuError;
pub use lock::{LockError, Locked, lock_token};
pub use url::normalize_mint_url;
pub use verifier::{Balance, CashuVerifier, MAX_TOKEN_LEN, MIN_LOCK_SECONDS};

/// Re-export of cdk, so callers use the exact version this crate was built with.
pub use cdk;

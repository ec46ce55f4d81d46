//! A throwaway wallet: for moving one token's money through a mint (locking it, splitting
//! it) without a database on disk.

use std::sync::Arc;

use cdk::mint_url::MintUrl;
use cdk::nuts::CurrencyUnit;
use cdk::wallet::{Wallet, WalletBuilder};

use crate::error::CashuError;

/// A cdk wallet at `mint` in `unit` with an in-memory store, a random seed and no rate
/// limit. What it holds is lost when it is dropped: the caller moves the money out (as a
/// token) before that.
pub async fn ephemeral_wallet(mint: MintUrl, unit: CurrencyUnit) -> Result<Wallet, CashuError> {
    let store = cdk_sqlite::wallet::memory::empty()
        .await
        .map_err(CashuError::Database)?;
    let mut seed = [0u8; 64];
    rand::fill(&mut seed[..]);
    WalletBuilder::new()
        .mint_url(mint)
        .unit(unit)
        .localstore(Arc::new(store))
        .seed(seed)
        .without_rate_limiting()
        .build()
        .map_err(CashuError::Wallet)
}

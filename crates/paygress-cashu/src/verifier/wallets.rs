//! The wallet store, one cdk wallet per accepted (mint, unit), and start-up recovery.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use cdk::Error as CdkError;
use cdk::nuts::CurrencyUnit;
use cdk::wallet::types::KeysetLoadPolicy;
use cdk::wallet::{HttpClient, MintConnector, Wallet, WalletBuilder};
use cdk_sqlite::WalletSqliteDatabase;
use paygress_core::money::{Amount, MintUrl, Unit};

use super::{Balance, CashuVerifier, Db, Inner, Slot, lock};
use crate::config::{CashuConfig, load_or_create_seed, prepare_db_file};
use crate::error::CashuError;

pub(super) fn cdk_unit(unit: Unit) -> CurrencyUnit {
    match unit {
        Unit::Sat => CurrencyUnit::Sat,
        Unit::Msat => CurrencyUnit::Msat,
    }
}

pub(super) fn cdk_mint_url(mint: &MintUrl) -> Result<cdk::mint_url::MintUrl, CdkError> {
    Ok(cdk::mint_url::MintUrl::from_str(mint.as_str())?)
}

impl CashuVerifier {
    /// Opens (or creates) the wallet store and seed described by `config`. No network
    /// access: wallets contact their mint on first use.
    pub async fn open(config: &CashuConfig) -> Result<Self, CashuError> {
        prepare_db_file(&config.db_path)?;
        let seed = load_or_create_seed(&config.seed_path())?;
        let db = WalletSqliteDatabase::new(config.db_path.clone())
            .await
            .map_err(CashuError::Database)?;
        Ok(Self::with_database(
            Arc::new(db),
            seed,
            config.mints.clone(),
        ))
    }

    /// A verifier on an existing cdk wallet database (e.g. an in-memory one in tests).
    /// `mints` must already be normalised ([`normalize_mint_url`]).
    pub fn with_database(db: Db, seed: [u8; 64], mints: Vec<MintUrl>) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                seed,
                mints,
                wallets: Mutex::new(HashMap::new()),
                keysets: Mutex::new(HashMap::new()),
                p2pk: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The cdk wallet for `mint` (which must be accepted) in `unit`, built on first use.
    pub fn wallet(&self, mint: &MintUrl, unit: Unit) -> Result<Wallet, CashuError> {
        Ok(self.slot(mint, unit)?.wallet)
    }

    /// The lock that serialises sends (and withdrawals) from `mint`'s `unit` wallet.
    pub(crate) fn send_lock(
        &self,
        mint: &MintUrl,
        unit: Unit,
    ) -> Result<Arc<tokio::sync::Mutex<()>>, CashuError> {
        Ok(self.slot(mint, unit)?.send_lock)
    }

    pub(super) fn slot(&self, mint: &MintUrl, unit: Unit) -> Result<Slot, CashuError> {
        if !self.inner.mints.contains(mint) {
            return Err(CashuError::MintNotAccepted(mint.clone()));
        }
        let mut wallets = lock(&self.inner.wallets);
        if let Some(slot) = wallets.get(&(mint.clone(), unit)) {
            return Ok(slot.clone());
        }
        let mint_url = cdk_mint_url(mint).map_err(CashuError::Wallet)?;
        let client: Arc<dyn MintConnector + Send + Sync> =
            Arc::new(HttpClient::new(mint_url.clone(), None));
        let wallet = WalletBuilder::new()
            .mint_url(mint_url)
            .unit(cdk_unit(unit))
            .localstore(self.inner.db.clone())
            .seed(self.inner.seed)
            .without_rate_limiting()
            .set_metadata_cache_ttl(None)
            .build()
            .map_err(CashuError::Wallet)?;
        let slot = Slot {
            wallet,
            client,
            send_lock: Arc::default(),
            needs_recovery: Arc::default(),
        };
        wallets.insert((mint.clone(), unit), slot.clone());
        Ok(slot)
    }

    /// Call at startup (after [`CashuVerifier::open`]): for every accepted mint and unit,
    /// finishes or rolls back wallet operations a crash interrupted (cdk's saga
    /// recovery), then fetches mint info and keysets so that the first payment costs one
    /// round trip. Returns the failures (e.g. a mint that is down, or one without an
    /// `msat` keyset); none is fatal, a later payment retries.
    pub async fn warm_up(&self) -> Vec<(MintUrl, Unit, CashuError)> {
        let mut failed = Vec::new();
        for mint in &self.inner.mints {
            for unit in [Unit::Sat, Unit::Msat] {
                let res = match self.wallet(mint, unit) {
                    Ok(w) => async {
                        w.load_mint_info().await?;
                        // Keysets (with their input fees) cached, so that `inspect`
                        // knows the fee of the first token offline. A unit the mint
                        // does not issue has none: not a failure.
                        if let Ok(keysets) =
                            w.keysets(KeysetLoadPolicy::CacheThenNetwork).await
                        {
                            self.remember_keysets(&w, &keysets);
                        }
                        let slot = self.slot(mint, unit).map_err(|e| CdkError::Custom(e.to_string()))?;
                        let _no_send_in_flight = slot.send_lock.lock().await;
                        let report =
                            crate::send::recover(&w, slot.client.as_ref(), &self.inner.seed)
                                .await?;
                        if !report.is_empty() {
                            tracing::info!(%mint, %unit, ?report, "recovered interrupted wallet operations");
                        }
                        slot.needs_recovery.store(false, Ordering::SeqCst);
                        Ok::<_, CdkError>(())
                    }
                    .await
                    .map_err(CashuError::Wallet),
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    failed.push((mint.clone(), unit, e));
                }
            }
        }
        failed
    }

    /// The accepted mints, normalised.
    pub fn mints(&self) -> &[MintUrl] {
        &self.inner.mints
    }

    /// What the wallet holds, per accepted mint and unit (zero balances included).
    pub async fn balances(&self) -> Result<Vec<Balance>, CashuError> {
        let mut out = Vec::new();
        for mint in &self.inner.mints {
            for unit in [Unit::Sat, Unit::Msat] {
                let w = self.wallet(mint, unit)?;
                let value = w.total_balance().await.map_err(CashuError::Wallet)?;
                out.push(Balance {
                    mint: mint.clone(),
                    amount: Amount::new(value.to_u64(), unit),
                });
            }
        }
        Ok(out)
    }
}

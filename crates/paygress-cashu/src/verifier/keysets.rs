//! The keysets seen per mint: offline fee estimates and full proofs from a token.

use cdk::nuts::{KeySetInfo, Proofs, Token};
use cdk::wallet::Wallet;
use cdk::wallet::types::KeysetLoadPolicy;
use paygress_core::money::Amount;
use paygress_core::ports::PaymentError;

use super::parse::Parsed;
use super::payment::map_redeem_error;
use super::{CashuVerifier, lock};
use crate::url::normalize_mint_url;

impl CashuVerifier {
    /// The mint's input fee for `token` from the keysets seen so far (zero when its
    /// keysets are not known yet: the exact fee is what the swap takes).
    pub(super) fn estimate_fee(&self, p: &Parsed) -> Amount {
        let keysets = lock(&self.inner.keysets);
        let Some(infos) = keysets.get(&p.mint) else {
            return Amount::new(0, p.amount.unit);
        };
        let ppk: u64 = match p.token.proofs(infos) {
            Ok(proofs) => proofs
                .iter()
                .map(|proof| {
                    infos
                        .iter()
                        .find(|k| k.id == proof.keyset_id)
                        .map_or(0, |k| k.input_fee_ppk)
                })
                .sum(),
            Err(_) => 0,
        };
        Amount::new(ppk.div_ceil(1000), p.amount.unit)
    }

    /// Resolves the token's proofs (full keyset ids) from the cached keysets, refreshing
    /// them from the mint only when the token names a keyset the cache lacks.
    pub(super) async fn proofs(
        &self,
        wallet: &Wallet,
        token: &Token,
    ) -> Result<Proofs, PaymentError> {
        let resolve = |keysets: Vec<cdk::nuts::KeySet>| -> Option<Proofs> {
            let infos: Vec<KeySetInfo> = keysets
                .into_iter()
                .map(|k| KeySetInfo {
                    id: k.id,
                    unit: k.unit,
                    active: k.active.unwrap_or(false),
                    input_fee_ppk: k.input_fee_ppk,
                    final_expiry: k.final_expiry,
                })
                .collect();
            let proofs = token.proofs(&infos).ok()?;
            proofs
                .iter()
                .all(|p| infos.iter().any(|k| k.id == p.keyset_id))
                .then_some(proofs)
        };
        let cached = wallet
            .keysets(KeysetLoadPolicy::CacheThenNetwork)
            .await
            .map_err(map_redeem_error)?;
        self.remember_keysets(wallet, &cached);
        if let Some(p) = resolve(cached) {
            return Ok(p);
        }
        tracing::debug!("token names an unknown keyset; refreshing keysets");
        let fresh = wallet
            .keysets(KeysetLoadPolicy::Refresh)
            .await
            .map_err(map_redeem_error)?;
        self.remember_keysets(wallet, &fresh);
        resolve(fresh).ok_or_else(|| {
            let ids = match token {
                Token::TokenV4(t) => t.token.iter().map(|k| k.keyset_id.to_string()).collect(),
                Token::TokenV3(t) => t
                    .token
                    .iter()
                    .flat_map(|k| k.proofs.iter().map(|p| p.keyset_id.to_string()))
                    .collect(),
            };
            PaymentError::UnknownKeyset(ids)
        })
    }

    pub(super) fn remember_keysets(&self, wallet: &Wallet, keysets: &[cdk::nuts::KeySet]) {
        let Ok(mint) = normalize_mint_url(&wallet.mint_url.to_string()) else {
            return;
        };
        let mut cache = lock(&self.inner.keysets);
        let infos = cache.entry(mint).or_default();
        for k in keysets {
            if !infos.iter().any(|i| i.id == k.id) {
                infos.push(KeySetInfo {
                    id: k.id,
                    unit: k.unit.clone(),
                    active: k.active.unwrap_or(false),
                    input_fee_ppk: k.input_fee_ppk,
                    final_expiry: k.final_expiry,
                });
            }
        }
    }
}

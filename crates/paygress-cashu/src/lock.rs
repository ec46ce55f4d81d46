//! The buyer's side of NUT-11: turning a plain token into one locked to a service's key,
//! with a locktime after which the buyer's refund key can take it back.

use std::str::FromStr;

use cdk::nuts::{Conditions, CurrencyUnit, PublicKey, SigFlag, SpendingConditions, Token};
use cdk::wallet::{ReceiveOptions, SendOptions};
use paygress_core::secret::CashuToken;

use crate::ephemeral::ephemeral_wallet;
use crate::error::CashuError;

/// A token locked to a service.
#[derive(Debug, Clone)]
pub struct Locked {
    /// The locked token (spendable by the service's key, or by the refund key after
    /// `locktime`).
    pub token: CashuToken,
    /// What the mint took for the swap that locked it.
    pub fee: u64,
}

/// Why locking failed. `unlocked` is the buyer's money as a plain token when the mint
/// already took the original (so nothing is lost); `None` when the original token was
/// not spent.
#[derive(Debug, thiserror::Error)]
#[error("locking the token failed: {source}")]
pub struct LockError {
    /// The failure.
    #[source]
    pub source: CashuError,
    /// The buyer's money, unlocked, when the original token was already swapped.
    pub unlocked: Option<CashuToken>,
}

fn wallet_err(e: cdk::Error) -> CashuError {
    CashuError::Wallet(e)
}

/// Swaps `token` at its mint into a token locked (P2PK, one signature, `SIG_INPUTS`) to
/// `to` (a compressed secp256k1 public key in hex), refundable to `refund` after
/// `locktime` (unix seconds). Uses a throwaway in-memory wallet.
pub async fn lock_token(
    token: &CashuToken,
    to: &str,
    refund: &str,
    locktime: u64,
) -> Result<Locked, LockError> {
    let fail = |source: CashuError| LockError {
        source,
        unlocked: None,
    };
    let to = PublicKey::from_hex(to.trim())
        .map_err(|e| fail(CashuError::Config(format!("service locking key: {e}"))))?;
    let refund = PublicKey::from_hex(refund.trim())
        .map_err(|e| fail(CashuError::Config(format!("refund key: {e}"))))?;
    let decoded = Token::from_str(token.expose().trim())
        .map_err(|e| fail(CashuError::Config(format!("cannot decode the token: {e}"))))?;
    let mint_url = decoded.mint_url().map_err(|e| {
        fail(CashuError::Config(format!(
            "token names no single mint: {e}"
        )))
    })?;
    let unit = decoded.unit().unwrap_or(CurrencyUnit::Sat);
    let wallet = ephemeral_wallet(mint_url, unit).await.map_err(fail)?;
    let face = decoded.value().map_err(|e| fail(wallet_err(e.into())))?;
    let received = wallet
        .receive(token.expose().trim(), ReceiveOptions::default())
        .await
        .map_err(|e| fail(wallet_err(e)))?;
    // From here the money is in this wallet: any failure hands it back unlocked.
    let conditions = SpendingConditions::new_p2pk(
        to,
        Some(Conditions {
            locktime: Some(locktime),
            pubkeys: None,
            refund_keys: Some(vec![refund]),
            num_sigs: None,
            sig_flag: SigFlag::SigInputs,
            num_sigs_refund: None,
        }),
    );
    let locked = async {
        let mut amount = received;
        // A swap's fee is a few sat per proof: a bounded number of tries.
        for _ in 0..256 {
            let options = SendOptions {
                conditions: Some(conditions.clone()),
                include_fee: false,
                ..Default::default()
            };
            match wallet.prepare_send(amount, options).await {
                Ok(prepared) => return prepared.confirm(None).await,
                // The swap's own fee: send a little less.
                Err(cdk::Error::InsufficientFunds) if amount > cdk::Amount::ONE => {
                    amount -= cdk::Amount::ONE;
                }
                Err(e) => return Err(e),
            }
        }
        Err(cdk::Error::InsufficientFunds)
    }
    .await;
    match locked {
        Ok(t) => {
            let value = t.value().unwrap_or_default();
            Ok(Locked {
                token: CashuToken::new(t.to_string()),
                fee: face.to_u64().saturating_sub(value.to_u64()),
            })
        }
        Err(e) => {
            let balance = wallet.total_balance().await.unwrap_or_default();
            let unlocked = match wallet.prepare_send(balance, SendOptions::default()).await {
                Ok(p) => p
                    .confirm(None)
                    .await
                    .ok()
                    .map(|t| CashuToken::new(t.to_string())),
                Err(_) => None,
            };
            Err(LockError {
                source: wallet_err(e),
                unlocked,
            })
        }
    }
}

//! Locking a payment to the service (NUT-11 P2PK) before it travels.

use paygress_core::CashuToken;
use paygress_nostr::ServiceRef;
use paygress_nostr::nostr_sdk::{Keys, Timestamp};

use crate::{BuyerError, BuyerHome, TokenKind};

/// A payment locked to the service.
#[derive(Debug, Clone)]
pub struct LockedPayment {
    /// The locked token, to send.
    pub token: CashuToken,
    /// Its copy under `tokens/` (kept in case it must be reclaimed after `locktime`).
    pub saved: std::path::PathBuf,
    /// When the buyer's key may take it back (unix seconds).
    pub locktime: u64,
    /// What the mint took for the swap.
    pub fee: u64,
}

/// Locks `token` to `service`: to the key its offer names (`offered`, compressed hex),
/// else to its Nostr key (BIP-340 keys are x-only: `02‖x` is the same lock), refundable
/// to `keys` after `lock_minutes`. The locked token is saved under `tokens/` before it is
/// returned. When the mint took the original but locking failed, the money is saved back
/// as an unlocked change token ([`BuyerError::Lock`] says where).
pub async fn lock_payment(
    home: &BuyerHome,
    keys: &Keys,
    token: &CashuToken,
    service: &ServiceRef,
    offered: Option<&str>,
    lock_minutes: u64,
) -> Result<LockedPayment, BuyerError> {
    let to = offered
        .map(str::to_owned)
        .unwrap_or_else(|| format!("02{}", service.public_key.to_hex()));
    let refund = format!("02{}", keys.public_key().to_hex());
    let locktime = Timestamp::now()
        .as_secs()
        .saturating_add(lock_minutes.saturating_mul(60));
    match paygress_cashu::lock_token(token, &to, &refund, locktime).await {
        Ok(locked) => {
            let saved = home.save_token(TokenKind::Locked, &locked.token)?;
            Ok(LockedPayment {
                token: locked.token,
                saved,
                locktime,
                fee: locked.fee,
            })
        }
        Err(e) => {
            let unlocked = match &e.unlocked {
                Some(t) => Some(home.save_token(TokenKind::Change, t)?),
                None => None,
            };
            Err(BuyerError::Lock {
                reason: e.to_string(),
                unlocked,
            })
        }
    }
}

//! Crediting what the mint signed, and redeeming a token in one call.

use paygress_core::ports::{PaymentError, PaymentVerifier, Redeemed};
use paygress_core::secret::CashuToken;

use super::parse::Parsed;
use super::{CashuVerifier, Slot};
use crate::redeem::{self, Receipt};

impl CashuVerifier {
    /// Redeems `token` in one call (prepare, swap, and resolution of a lost answer), for
    /// callers without a journal of their own (tools, tests). The service journals each
    /// step instead, through [`PaymentVerifier`].
    pub async fn receive(&self, token: &CashuToken) -> Result<Redeemed, PaymentError> {
        let attempt = self.prepare(token).await?;
        match self.redeem(token, &attempt).await {
            Err(PaymentError::Ambiguous(_) | PaymentError::AlreadySpent) => {
                // A token the mint reports pending (another swap of it in flight)
                // settles within moments: ask a few times before giving up.
                let mut wait = std::time::Duration::from_millis(50);
                for _ in 0..5 {
                    match self.resolve(token, &attempt).await {
                        Err(PaymentError::Ambiguous(_)) => {
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                        other => return other?.ok_or(PaymentError::AlreadySpent),
                    }
                }
                self.resolve(token, &attempt)
                    .await?
                    .ok_or(PaymentError::AlreadySpent)
            }
            other => other,
        }
    }

    pub(super) fn slot_for(&self, p: &Parsed) -> Result<Slot, PaymentError> {
        self.slot(&p.mint, p.amount.unit)
            .map_err(|e| PaymentError::Other(Box::new(e)))
    }

    /// Unblinds and stores what the mint signed for an attempt; the credited amount.
    pub(super) async fn credit(
        &self,
        slot: &Slot,
        receipt: &Receipt,
        outputs: redeem::Outputs,
        signatures: Vec<cdk::nuts::BlindSignature>,
        restored: bool,
    ) -> Result<u64, PaymentError> {
        let keys = slot
            .wallet
            .keyset(receipt.keyset)
            .await
            .map_err(|e| PaymentError::Ambiguous(Box::new(e)))?
            .keys;
        let restored_from = restored.then_some(slot.client.as_ref());
        redeem::store_signed(
            &slot.wallet,
            receipt,
            outputs,
            signatures,
            &keys,
            restored_from,
        )
        .await
    }
}

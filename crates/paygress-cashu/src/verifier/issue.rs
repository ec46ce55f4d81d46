//! Sending tokens out of the wallet (refunds, change, withdrawals).

use std::sync::atomic::Ordering;

use cdk::Error as CdkError;
use cdk::wallet::SendOptions;
use paygress_core::money::{Amount, MintUrl};
use paygress_core::ports::IssueId;
use paygress_core::secret::CashuToken;
use tracing::instrument;

use super::{CashuVerifier, Slot};
use crate::error::CashuError;

impl CashuVerifier {
    /// Exports a token worth exactly `amount` from the wallet, at `mint` or, if `None`,
    /// at the first accepted mint holding enough. The token leaves the wallet: whoever
    /// holds it owns the value.
    #[instrument(skip_all, fields(amount = %amount))]
    pub async fn send(
        &self,
        amount: Amount,
        mint: Option<&MintUrl>,
    ) -> Result<CashuToken, CashuError> {
        let mint = match mint {
            Some(m) => m.clone(),
            None => {
                let mut chosen = None;
                for b in self.balances().await? {
                    if b.amount.unit == amount.unit && b.amount.value >= amount.value {
                        chosen = Some(b.mint);
                        break;
                    }
                }
                chosen.ok_or(CashuError::InsufficientFunds(amount))?
            }
        };
        let slot = self.slot(&mint, amount.unit)?;
        let _one_send_at_a_time = slot.send_lock.lock().await;
        self.send_locked(&slot, &mint, amount, None).await
    }

    /// A send with the slot's send lock held; `issue` names it for [`issue_once`].
    ///
    /// [`issue_once`]: PaymentVerifier::issue_once
    pub(super) async fn send_locked(
        &self,
        slot: &Slot,
        mint: &MintUrl,
        amount: Amount,
        issue: Option<&IssueId>,
    ) -> Result<CashuToken, CashuError> {
        // Sends are this wallet's only cdk sagas (redeems swap on their own), and they
        // run one at a time: recovering here interferes with nothing in flight.
        if slot.needs_recovery.load(Ordering::SeqCst) {
            let report = crate::send::recover(&slot.wallet, slot.client.as_ref(), &self.inner.seed)
                .await
                .map_err(CashuError::Wallet)?;
            tracing::info!(%mint, ?report, "recovered an interrupted send");
            if report.sagas.failed == 0 {
                slot.needs_recovery.store(false, Ordering::SeqCst);
            }
        }
        if let Some(id) = issue
            && let Some(token) = crate::send::issued(&slot.wallet, id.as_str())
                .await
                .map_err(CashuError::Wallet)?
        {
            tracing::info!(%mint, "handing out the token an interrupted issue created");
            return Ok(token);
        }
        // The wallet's swap to make the token costs the mint's input fee: the token is
        // worth `amount` minus that fee, so that the wallet pays out exactly `amount`.
        let mut value = amount.value;
        let prepared = loop {
            let prepared = slot
                .wallet
                .prepare_send(cdk::Amount::from(value), SendOptions::default())
                .await
                .map_err(CashuError::Wallet)?;
            let cost = value.saturating_add(u64::from(prepared.fee()));
            if cost <= amount.value {
                break prepared;
            }
            let _ = prepared.cancel().await;
            let over = cost - amount.value;
            value = match value.checked_sub(over).filter(|v| *v > 0) {
                Some(v) if v < value => v,
                _ => return Err(CashuError::InsufficientFunds(amount)),
            };
        };
        let operation = prepared.operation_id();
        let swaps = !prepared.proofs_to_swap().is_empty();
        let recorded = async {
            if let Some(id) = issue {
                crate::send::record_issue(&slot.wallet, id.as_str(), operation, None).await?;
            }
            if swaps {
                // Durable before the swap: recovery restores its outputs if the answer
                // is lost.
                crate::send::mark_open(&slot.wallet, &operation.to_string()).await?;
            }
            Ok::<_, CdkError>(())
        }
        .await;
        if let Err(e) = recorded {
            let _ = prepared.cancel().await;
            return Err(CashuError::Wallet(e));
        }
        match prepared.confirm(None).await {
            Ok(token) => {
                let token = CashuToken::new(token.to_string());
                if let Some(id) = issue
                    && let Err(e) = crate::send::record_issue(
                        &slot.wallet,
                        id.as_str(),
                        operation,
                        Some(&token),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not record an issued token; its saga keeps it");
                }
                if swaps
                    && let Err(e) =
                        crate::send::mark_closed(&slot.wallet, &operation.to_string()).await
                {
                    tracing::warn!(error = %e, "could not close an open-send record; recovery will");
                }
                Ok(token)
            }
            Err(e) => {
                // Even a definite refusal (inputs already spent) leaves cdk's view of
                // the inputs wrong: the next send recovers and checks them first.
                slot.needs_recovery.store(true, Ordering::SeqCst);
                Err(CashuError::Wallet(e))
            }
        }
    }
}

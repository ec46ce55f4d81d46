//! The `PaymentVerifier` port: prepare, redeem, resolve, check and issue.

use async_trait::async_trait;
use cdk::Error as CdkError;
use cdk::nuts::{PaymentRequest, State};
use paygress_core::money::{Amount, MintUrl};
use paygress_core::ports::{
    IssueId, PaymentError, PaymentVerifier, RedeemAttempt, Redeemed, TokenCheck, TokenInfo,
};
use paygress_core::secret::CashuToken;
use tracing::instrument;

use super::wallets::{cdk_mint_url, cdk_unit};
use super::{CashuVerifier, token_tag};
use crate::redeem::{self, Receipt, SwapFailure};

/// Maps a cdk error from a redeem or check to core's error. Anything that is not a clear
/// verdict on the token itself is `MintUnavailable`: the payer keeps the token.
pub(super) fn map_redeem_error(e: CdkError) -> PaymentError {
    use CdkError as E;
    match e {
        E::TokenAlreadySpent | E::TokenPending => PaymentError::AlreadySpent,
        E::UnsupportedUnit | E::UnitMismatch | E::MultipleUnits => {
            PaymentError::UnsupportedUnit(e.to_string())
        }
        E::TransactionUnbalanced(..)
        | E::DuplicateInputs
        | E::SignatureMissingOrInvalid
        | E::KeysetUnknown(_)
        | E::UnknownKeySet
        | E::ExpiredKeyset
        | E::CouldNotVerifyDleq
        | E::AmountOverflow
        | E::DHKE(_)
        | E::Secret(_)
        | E::ProofContentTooLarge { .. }
        | E::MaxInputsExceeded { .. }
        | E::InvalidSpendConditions(_)
        | E::LocktimeNotProvided => PaymentError::InvalidToken(e.to_string()),
        other => PaymentError::MintUnavailable(Box::new(other)),
    }
}

#[async_trait]
impl PaymentVerifier for CashuVerifier {
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError> {
        let p = self.parse(token)?;
        Self::check_locktime(&p)?;
        let fee = self.estimate_fee(&p);
        Ok(TokenInfo {
            mint: p.mint,
            amount: p.amount,
            fee,
        })
    }

    #[instrument(skip_all, fields(token = %token_tag(token)))]
    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError> {
        let p = self.parse(token)?;
        Self::check_locktime(&p)?;
        let slot = self.slot_for(&p)?;
        let proofs = self.proofs(&slot.wallet, &p.token).await?;
        let fee = slot
            .wallet
            .get_proofs_fee(&proofs)
            .await
            .map_err(map_redeem_error)?
            .total
            .to_u64();
        let net = p
            .amount
            .value
            .checked_sub(fee)
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                PaymentError::InvalidToken(format!("the mint's fee of {fee} takes the whole token"))
            })?;
        let keyset = slot
            .wallet
            .active_keyset()
            .await
            .map_err(map_redeem_error)?;
        let receipt = redeem::reserve(&slot.wallet, keyset.id, net)
            .await
            .map_err(|e| PaymentError::Other(Box::new(e)))?;
        Ok(RedeemAttempt {
            mint: p.mint,
            face: p.amount,
            fee: Amount::new(fee, p.amount.unit),
            receipt: receipt.encode(),
        })
    }

    #[instrument(skip_all, fields(token = %token_tag(token)))]
    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError> {
        let p = self.parse(token)?;
        let slot = self.slot_for(&p)?;
        let mut proofs = self.proofs(&slot.wallet, &p.token).await?;
        self.sign_locked(&p, &mut proofs)?;
        let receipt = Receipt::decode(&attempt.receipt)?;
        let outputs = receipt.outputs(&self.inner.seed)?;
        let signatures = match redeem::swap(slot.client.as_ref(), proofs, &outputs).await {
            Ok(sigs) => sigs,
            Err(SwapFailure::Spent(_)) => return Err(PaymentError::AlreadySpent),
            Err(SwapFailure::Refused(e)) => return Err(map_redeem_error(e)),
            Err(SwapFailure::Unknown(e)) => return Err(PaymentError::Ambiguous(Box::new(e))),
        };
        let credited = self
            .credit(&slot, &receipt, outputs, signatures, false)
            .await?;
        tracing::info!(mint = %p.mint, face = %p.amount, credited, "token redeemed");
        Ok(Redeemed {
            mint: p.mint,
            amount: Amount::new(credited, p.amount.unit),
        })
    }

    #[instrument(skip_all, fields(token = %token_tag(token)))]
    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError> {
        let p = self.parse(token)?;
        let slot = self.slot_for(&p)?;
        let mut proofs = self.proofs(&slot.wallet, &p.token).await?;
        self.sign_locked(&p, &mut proofs)?;
        let receipt = Receipt::decode(&attempt.receipt)?;
        let client = slot.client.as_ref();
        let unknown = |e: CdkError| PaymentError::MintUnavailable(Box::new(e));
        let received = |credited: u64| {
            tracing::info!(mint = %p.mint, credited, "lost redeem resolved: received");
            Some(Redeemed {
                mint: p.mint.clone(),
                amount: Amount::new(credited, p.amount.unit),
            })
        };
        // 1. Did the mint sign this attempt's outputs? Then that is what was received.
        let outputs = receipt.outputs(&self.inner.seed)?;
        let signed = redeem::restore(client, &outputs).await.map_err(unknown)?;
        if !signed.is_empty() {
            let credited = self.credit(&slot, &receipt, outputs, signed, true).await?;
            return Ok(received(credited));
        }
        // 2. Not signed. Inputs unspent: the swap never happened; do it now (same
        //    outputs, so a late original and this replay cannot both succeed).
        match redeem::input_state(client, &proofs)
            .await
            .map_err(unknown)?
        {
            Some(false) => {}
            Some(true) => {
                // Spent, and not by this attempt (unless it landed just now).
                let outputs = receipt.outputs(&self.inner.seed)?;
                let signed = redeem::restore(client, &outputs).await.map_err(unknown)?;
                if signed.is_empty() {
                    tracing::info!(mint = %p.mint, "token spent elsewhere: nothing received");
                    return Ok(None);
                }
                let credited = self.credit(&slot, &receipt, outputs, signed, true).await?;
                return Ok(received(credited));
            }
            None => {
                return Err(PaymentError::Ambiguous(
                    "the mint reports the token pending".into(),
                ));
            }
        }
        let outputs = receipt.outputs(&self.inner.seed)?;
        match redeem::swap(client, proofs, &outputs).await {
            Ok(signed) => {
                let credited = self.credit(&slot, &receipt, outputs, signed, false).await?;
                Ok(received(credited))
            }
            Err(SwapFailure::Spent(_)) => {
                let signed = redeem::restore(client, &outputs).await.map_err(unknown)?;
                if signed.is_empty() {
                    return Ok(None);
                }
                let credited = self.credit(&slot, &receipt, outputs, signed, true).await?;
                Ok(received(credited))
            }
            Err(SwapFailure::Refused(e)) => {
                tracing::info!(mint = %p.mint, error = %e, "the mint refuses the token: nothing received");
                Ok(None)
            }
            Err(SwapFailure::Unknown(e)) => Err(PaymentError::Ambiguous(Box::new(e))),
        }
    }

    #[instrument(skip_all, fields(token = %token_tag(token)))]
    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError> {
        let p = self.parse(token)?;
        let wallet = self
            .wallet(&p.mint, p.amount.unit)
            .map_err(|e| PaymentError::Other(Box::new(e)))?;
        let proofs = self.proofs(&wallet, &p.token).await?;
        let states = wallet
            .check_proofs_spent(proofs)
            .await
            .map_err(map_redeem_error)?;
        let spendable = !states.is_empty() && states.iter().all(|s| s.state == State::Unspent);
        Ok(TokenCheck {
            mint: p.mint,
            amount: p.amount,
            spendable,
        })
    }

    #[instrument(skip_all, fields(mint = %mint, amount = %amount))]
    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError> {
        if amount.is_zero() {
            return Err(PaymentError::Issue(
                "cannot issue a zero-value token".into(),
            ));
        }
        self.send(amount, Some(mint))
            .await
            .map_err(|e| PaymentError::Issue(Box::new(e)))
    }

    async fn issue_once(
        &self,
        id: &IssueId,
        mint: &MintUrl,
        amount: Amount,
    ) -> Result<CashuToken, PaymentError> {
        if amount.is_zero() {
            return Err(PaymentError::Issue(
                "cannot issue a zero-value token".into(),
            ));
        }
        let slot = self
            .slot(mint, amount.unit)
            .map_err(|e| PaymentError::Issue(Box::new(e)))?;
        let _one_send_at_a_time = slot.send_lock.lock().await;
        self.send_locked(&slot, mint, amount, Some(id))
            .await
            .map_err(|e| PaymentError::Issue(Box::new(e)))
    }

    fn locking_key(&self) -> Option<String> {
        CashuVerifier::locking_key(self)
    }

    fn accepted_mints(&self) -> Vec<MintUrl> {
        self.inner.mints.clone()
    }

    fn payment_request(&self, amount: Amount, description: &str) -> Result<String, PaymentError> {
        let mints = self
            .inner
            .mints
            .iter()
            .map(cdk_mint_url)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PaymentError::Other(Box::new(e)))?;
        let mut builder = PaymentRequest::builder()
            .amount(amount.value)
            .unit(cdk_unit(amount.unit))
            .single_use(true)
            .mints(mints);
        if !description.is_empty() {
            builder = builder.description(description);
        }
        Ok(builder.build().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdk_errors_map_to_payment_errors() {
        assert!(matches!(
            map_redeem_error(CdkError::TokenAlreadySpent),
            PaymentError::AlreadySpent
        ));
        assert!(matches!(
            map_redeem_error(CdkError::TokenPending),
            PaymentError::AlreadySpent
        ));
        assert!(matches!(
            map_redeem_error(CdkError::HttpError(None, "connection refused".into())),
            PaymentError::MintUnavailable(_)
        ));
        assert!(matches!(
            map_redeem_error(CdkError::HttpError(Some(502), "bad gateway".into())),
            PaymentError::MintUnavailable(_)
        ));
        assert!(matches!(
            map_redeem_error(CdkError::InvalidMintResponse("junk".into())),
            PaymentError::MintUnavailable(_)
        ));
        assert!(matches!(
            map_redeem_error(CdkError::TransactionUnbalanced(1, 2, 0)),
            PaymentError::InvalidToken(_)
        ));
        assert!(matches!(
            map_redeem_error(CdkError::UnitMismatch),
            PaymentError::UnsupportedUnit(_)
        ));
    }

    #[test]
    fn token_tag_is_short_and_hides_the_token() {
        let t = CashuToken::new("cashuBsecretsecretsecret");
        let tag = token_tag(&t);
        assert_eq!(tag.len(), 8);
        assert!(!tag.contains("secret"));
    }
}

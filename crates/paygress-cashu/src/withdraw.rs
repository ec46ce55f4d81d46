//! Income to Lightning: melt (NUT-05) what the service wallet holds at a mint to pay a
//! BOLT11 invoice, with the mint's fee quote shown before anything is paid.

use std::collections::HashMap;

use cdk::nuts::{MeltQuoteState, PaymentMethod};
use paygress_core::money::{Amount, MintUrl, Unit};

use crate::error::CashuError;
use crate::verifier::CashuVerifier;

/// A mint's offer to pay an invoice from the service wallet (nothing paid yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawQuote {
    /// The mint that pays.
    pub mint: MintUrl,
    /// The mint's quote id (NUT-05).
    pub quote_id: String,
    /// What the invoice asks, in sat.
    pub amount: Amount,
    /// Most the mint may take as Lightning fee; what it does not use comes back.
    pub fee_reserve: Amount,
    /// Unix time after which the quote is void.
    pub expiry: u64,
    /// The wallet's balance at that mint when quoted.
    pub balance: Amount,
}

impl WithdrawQuote {
    /// The most this withdrawal can take from the wallet (amount plus fee reserve).
    pub fn max_cost(&self) -> Amount {
        Amount::new(self.amount.value + self.fee_reserve.value, Unit::Sat)
    }
}

/// A paid withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawn {
    /// The mint that paid.
    pub mint: MintUrl,
    /// Amount paid to the invoice.
    pub amount: Amount,
    /// Lightning fee actually paid.
    pub fee_paid: Amount,
    /// The payment's proof (preimage), when the mint reports it.
    pub preimage: Option<String>,
}

impl CashuVerifier {
    /// Asks for a melt quote for `invoice` at `mint`, or at the first accepted mint whose
    /// `sat` balance covers the amount plus the mint's fee reserve. Pays nothing.
    pub async fn withdraw_quote(
        &self,
        invoice: &str,
        mint: Option<&MintUrl>,
    ) -> Result<WithdrawQuote, CashuError> {
        let candidates: Vec<MintUrl> = match mint {
            Some(m) => vec![m.clone()],
            None => self.mints().to_vec(),
        };
        let mut last = None;
        for mint in candidates {
            let wallet = self.wallet(&mint, Unit::Sat)?;
            let balance = wallet.total_balance().await.map_err(CashuError::Wallet)?;
            let quote = match wallet
                .melt_quote(PaymentMethod::BOLT11, invoice.trim(), None, None)
                .await
            {
                Ok(q) => q,
                Err(e) => {
                    last = Some(CashuError::Wallet(e));
                    continue;
                }
            };
            let quote = WithdrawQuote {
                mint: mint.clone(),
                quote_id: quote.id,
                amount: Amount::new(quote.amount.to_u64(), Unit::Sat),
                fee_reserve: Amount::new(quote.fee_reserve.to_u64(), Unit::Sat),
                expiry: quote.expiry,
                balance: Amount::new(balance.to_u64(), Unit::Sat),
            };
            if quote.balance.value >= quote.max_cost().value {
                return Ok(quote);
            }
            last = Some(CashuError::InsufficientFunds(quote.max_cost()));
        }
        Err(last.unwrap_or_else(|| CashuError::Config("no accepted mint".into())))
    }

    /// Pays a quote from [`CashuVerifier::withdraw_quote`]. Holds the mint's send lock,
    /// so that the service's own refunds never pick the same proofs.
    pub async fn withdraw(&self, quote: &WithdrawQuote) -> Result<Withdrawn, CashuError> {
        let lock = self.send_lock(&quote.mint, Unit::Sat)?;
        let _sending = lock.lock().await;
        let wallet = self.wallet(&quote.mint, Unit::Sat)?;
        let metadata = HashMap::from([("paygress".to_owned(), "withdraw".to_owned())]);
        let prepared = wallet
            .prepare_melt(&quote.quote_id, metadata)
            .await
            .map_err(CashuError::Wallet)?;
        let melted = prepared.confirm().await.map_err(CashuError::Wallet)?;
        if melted.state() != MeltQuoteState::Paid {
            return Err(CashuError::Config(format!(
                "the mint reports the payment {:?}; the wallet keeps the proofs until it settles",
                melted.state()
            )));
        }
        Ok(Withdrawn {
            mint: quote.mint.clone(),
            amount: Amount::new(melted.amount().to_u64(), Unit::Sat),
            fee_paid: Amount::new(melted.fee_paid().to_u64(), Unit::Sat),
            preimage: melted.payment_proof().map(str::to_owned),
        })
    }
}

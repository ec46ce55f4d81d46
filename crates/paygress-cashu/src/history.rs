//! The wallet's history: what was received (payments redeemed), handed back (refunds,
//! change, exported tokens) and withdrawn to Lightning, from cdk's transaction records.

use std::collections::HashMap;

use cdk::wallet::Wallet;
use cdk::wallet::types::{Transaction, TransactionDirection};
use paygress_core::money::{Amount, MintUrl, Unit};

use crate::error::CashuError;
use crate::verifier::CashuVerifier;

/// What a wallet movement was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// A buyer's payment redeemed into the wallet.
    Received,
    /// A token handed out: a refund, change, or `paygress wallet send`.
    Refunded,
    /// Paid to a Lightning invoice (melt).
    Withdrawn,
}

impl std::fmt::Display for Movement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Movement::Received => "received",
            Movement::Refunded => "refunded",
            Movement::Withdrawn => "withdrawn",
        })
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Unix time.
    pub timestamp: u64,
    /// What it was.
    pub movement: Movement,
    /// The mint.
    pub mint: MintUrl,
    /// Value moved.
    pub amount: Amount,
    /// Fee paid (mint input fee, Lightning fee).
    pub fee: Amount,
}

/// Records a redeemed payment as an incoming transaction (the redeem path stores proofs
/// itself, outside cdk's receive, which would record it). A failure only loses the
/// history line: it is logged, never fatal to the payment.
pub(crate) async fn record_received(
    wallet: &Wallet,
    proofs_ys: Vec<cdk::nuts::PublicKey>,
    amount: u64,
) {
    let transaction = Transaction {
        mint_url: wallet.mint_url.clone(),
        direction: TransactionDirection::Incoming,
        amount: amount.into(),
        fee: cdk::Amount::ZERO,
        unit: wallet.unit.clone(),
        ys: proofs_ys,
        timestamp: jiff_now(),
        memo: None,
        metadata: HashMap::from([("paygress".to_owned(), "payment".to_owned())]),
        quote_id: None,
        payment_request: None,
        payment_proof: None,
        payment_method: None,
        saga_id: None,
        status: Default::default(),
    };
    if let Err(e) = wallet.localstore.add_transaction(transaction).await {
        tracing::warn!(error = %e, "could not record a received payment in the wallet history");
    }
}

fn jiff_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl CashuVerifier {
    /// Every recorded movement at every accepted mint, oldest first.
    pub async fn history(&self) -> Result<Vec<HistoryEntry>, CashuError> {
        let mut out = Vec::new();
        for mint in self.mints().to_vec() {
            for unit in [Unit::Sat, Unit::Msat] {
                let wallet = self.wallet(&mint, unit)?;
                let list = wallet
                    .list_transactions(None)
                    .await
                    .map_err(CashuError::Wallet)?;
                for t in list {
                    let movement = match t.direction {
                        TransactionDirection::Incoming => Movement::Received,
                        TransactionDirection::Outgoing
                            if t.quote_id.is_some() || t.payment_request.is_some() =>
                        {
                            Movement::Withdrawn
                        }
                        TransactionDirection::Outgoing => Movement::Refunded,
                    };
                    out.push(HistoryEntry {
                        timestamp: t.timestamp,
                        movement,
                        mint: mint.clone(),
                        amount: Amount::new(t.amount.to_u64(), unit),
                        fee: Amount::new(t.fee.to_u64(), unit),
                    });
                }
            }
        }
        out.sort_by_key(|e| e.timestamp);
        Ok(out)
    }
}

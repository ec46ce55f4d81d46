//! Redeem attempts that can always be traced to what the wallet received.
//!
//! A redeem is a NUT-03 swap whose outputs are derived from the wallet's seed (NUT-13)
//! at a counter range reserved for this attempt alone. The range is written into the
//! attempt's receipt, which the service journals *before* the swap is sent. Whatever
//! happens to the mint's answer, [`Receipt`] regenerates the same outputs, and the
//! mint's NUT-09 restore tells which of them it signed: the wallet is credited with the
//! amounts of those signatures, never with what the token claims.

use std::collections::HashSet;

use cdk::Amount as CdkAmount;
use cdk::Error as CdkError;
use cdk::amount::SplitTarget;
use cdk::dhke::{blind_message, construct_proofs};
use cdk::nuts::{
    BlindSignature, BlindedMessage, CheckStateRequest, Id, Keys, Proofs, ProofsMethods, PublicKey,
    RestoreRequest, SecretKey, State, SwapRequest,
};
use cdk::secret::Secret;
use cdk::wallet::types::ProofInfo;
use cdk::wallet::{MintConnector, Wallet};
use paygress_core::ports::PaymentError;
use serde::{Deserialize, Serialize};

/// The verifier's record of one attempt: where its outputs come from. Holds no secret
/// (the outputs are re-derived from the wallet's seed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Receipt {
    /// The keyset the outputs are signed with.
    pub keyset: Id,
    /// First counter of the reserved range.
    pub counter: u32,
    /// One amount per output, in order.
    pub amounts: Vec<u64>,
}

/// The outputs of an attempt with what unblinds them.
pub(crate) struct Outputs {
    pub blinded: Vec<BlindedMessage>,
    secrets: Vec<Secret>,
    rs: Vec<SecretKey>,
}

impl Receipt {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn decode(text: &str) -> Result<Self, PaymentError> {
        serde_json::from_str(text)
            .map_err(|e| PaymentError::Other(format!("unreadable redeem receipt: {e}").into()))
    }

    /// Re-derives the attempt's outputs from `seed`.
    pub(crate) fn outputs(&self, seed: &[u8; 64]) -> Result<Outputs, PaymentError> {
        let mut out = Outputs {
            blinded: Vec::with_capacity(self.amounts.len()),
            secrets: Vec::with_capacity(self.amounts.len()),
            rs: Vec::with_capacity(self.amounts.len()),
        };
        for (i, amount) in self.amounts.iter().enumerate() {
            let counter = self.counter + u32::try_from(i).map_err(other)?;
            let secret = Secret::from_seed(seed, self.keyset, counter).map_err(other)?;
            let r = SecretKey::from_seed(seed, self.keyset, counter).map_err(other)?;
            let (blinded, r) = blind_message(&secret.to_bytes(), Some(r)).map_err(other)?;
            out.blinded.push(BlindedMessage::new(
                CdkAmount::from(*amount),
                self.keyset,
                blinded,
            ));
            out.secrets.push(secret);
            out.rs.push(r);
        }
        Ok(out)
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> PaymentError {
    PaymentError::Other(Box::new(e))
}

/// Splits `amount` into the output amounts the keyset supports and reserves a counter
/// range for them in the wallet's store (atomic, so no other operation reuses it).
pub(crate) async fn reserve(wallet: &Wallet, keyset: Id, amount: u64) -> Result<Receipt, CdkError> {
    let fees_and_amounts = wallet.get_keyset_fees_and_amounts_by_id(keyset).await?;
    let amounts: Vec<u64> = CdkAmount::from(amount)
        .split_targeted(&SplitTarget::default(), &fees_and_amounts)?
        .into_iter()
        .map(u64::from)
        .collect();
    let count = u32::try_from(amounts.len()).map_err(|_| CdkError::AmountOverflow)?;
    let end = wallet
        .localstore
        .increment_keyset_counter(&keyset, count)
        .await?;
    Ok(Receipt {
        keyset,
        counter: end.saturating_sub(count),
        amounts,
    })
}

/// Unblinds the mint's signatures for `outputs` and stores the new proofs (those the
/// store does not hold yet). Returns the amount the signatures carry.
pub(crate) async fn store_signed(
    wallet: &Wallet,
    receipt: &Receipt,
    outputs: Outputs,
    signatures: Vec<BlindSignature>,
    keys: &Keys,
    restored_from: Option<&(dyn MintConnector + Send + Sync)>,
) -> Result<u64, PaymentError> {
    let Outputs {
        blinded,
        secrets,
        rs,
    } = outputs;
    // A swap is atomic: the mint signs every output or none.
    if signatures.len() != blinded.len() {
        return Err(PaymentError::Ambiguous(
            format!(
                "the mint signed {} of {} outputs",
                signatures.len(),
                blinded.len()
            )
            .into(),
        ));
    }
    for (sig, amount) in signatures.iter().zip(&receipt.amounts) {
        if u64::from(sig.amount) != *amount || sig.keyset_id != receipt.keyset {
            return Err(PaymentError::Ambiguous(
                "the mint's signatures do not match the outputs asked".into(),
            ));
        }
    }
    let proofs: Proofs = construct_proofs(signatures, rs, secrets, keys).map_err(other)?;
    let received = proofs.total_amount().map_err(other)?;
    let ys = proofs.ys().map_err(other)?;
    let held: HashSet<PublicKey> = wallet
        .localstore
        .get_proofs_by_ys(ys)
        .await
        .map_err(|e| PaymentError::Ambiguous(Box::new(e)))?
        .into_iter()
        .map(|p| p.y)
        .collect();
    let fresh: Proofs = proofs
        .into_iter()
        .filter(|p| p.y().is_ok_and(|y| !held.contains(&y)))
        .collect();
    // The wallet's history records a payment once: when its proofs are first stored.
    let history_ys = if fresh.is_empty() {
        None
    } else {
        fresh.ys().ok()
    };
    match restored_from {
        // Restored signatures may be of proofs the wallet received long ago and has
        // spent since (cdk forgets spent proofs): only unspent ones are stored.
        Some(client) => {
            keep_unspent(wallet, client, fresh)
                .await
                .map_err(|e| PaymentError::Ambiguous(Box::new(e)))?;
        }
        None => store(wallet, fresh)
            .await
            .map_err(|e| PaymentError::Ambiguous(Box::new(e)))?,
    }
    if let Some(ys) = history_ys {
        crate::history::record_received(wallet, ys, u64::from(received)).await;
    }
    Ok(u64::from(received))
}

async fn store(wallet: &Wallet, proofs: Proofs) -> Result<(), CdkError> {
    if proofs.is_empty() {
        return Ok(());
    }
    let infos = proofs
        .into_iter()
        .map(|p| {
            ProofInfo::new(
                p,
                wallet.mint_url.clone(),
                State::Unspent,
                wallet.unit.clone(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    wallet.localstore.update_proofs(infos, vec![]).await?;
    Ok(())
}

/// Stores those of `proofs` that the store does not hold and the mint reports unspent;
/// returns their amount.
async fn keep_unspent(
    wallet: &Wallet,
    client: &(dyn MintConnector + Send + Sync),
    proofs: Proofs,
) -> Result<u64, CdkError> {
    if proofs.is_empty() {
        return Ok(0);
    }
    let held: HashSet<PublicKey> = wallet
        .localstore
        .get_proofs_by_ys(proofs.ys()?)
        .await?
        .into_iter()
        .map(|p| p.y)
        .collect();
    let fresh: Proofs = proofs
        .into_iter()
        .filter(|p| p.y().is_ok_and(|y| !held.contains(&y)))
        .collect();
    if fresh.is_empty() {
        return Ok(0);
    }
    let states = client
        .post_check_state(CheckStateRequest { ys: fresh.ys()? })
        .await?
        .states;
    let unspent: HashSet<PublicKey> = states
        .iter()
        .filter(|s| s.state == State::Unspent)
        .map(|s| s.y)
        .collect();
    let keep: Proofs = fresh
        .into_iter()
        .filter(|p| p.y().is_ok_and(|y| unspent.contains(&y)))
        .collect();
    let amount = u64::from(keep.total_amount()?);
    store(wallet, keep).await?;
    Ok(amount)
}

/// Recovers what a swap whose answer was lost left at the mint: the signatures of the
/// outputs derived at counters `start..end` of `keyset` (NUT-09), stored when unspent
/// and not held. Returns the amount added to the wallet.
pub(crate) async fn recover_range(
    wallet: &Wallet,
    client: &(dyn MintConnector + Send + Sync),
    seed: &[u8; 64],
    keyset: Id,
    start: u32,
    end: u32,
) -> Result<u64, CdkError> {
    const BATCH: u32 = 100;
    let keys = wallet.keyset(keyset).await?.keys;
    let mut added = 0;
    let mut counter = start;
    while counter < end {
        let upto = end.min(counter.saturating_add(BATCH));
        let receipt = Receipt {
            keyset,
            counter,
            // The mint finds outputs by their blinded secret; the amount is its own.
            amounts: vec![1; (upto - counter) as usize],
        };
        let outputs = receipt
            .outputs(seed)
            .map_err(|e| CdkError::Custom(e.to_string()))?;
        let response = client
            .post_restore(RestoreRequest {
                outputs: outputs.blinded.clone(),
            })
            .await?;
        let (mut sigs, mut secrets, mut rs) = (Vec::new(), Vec::new(), Vec::new());
        for (i, wanted) in outputs.blinded.iter().enumerate() {
            let sig = response
                .outputs
                .iter()
                .position(|o| o.blinded_secret == wanted.blinded_secret)
                .and_then(|pos| response.signatures.get(pos));
            if let Some(sig) = sig {
                sigs.push(sig.clone());
                secrets.push(outputs.secrets[i].clone());
                rs.push(outputs.rs[i].clone());
            }
        }
        if !sigs.is_empty() {
            let proofs = construct_proofs(sigs, rs, secrets, &keys)?;
            added += keep_unspent(wallet, client, proofs).await?;
        }
        counter = upto;
    }
    Ok(added)
}

/// Sends the swap. `Err(PaymentError::Ambiguous)` when the mint may have applied it.
pub(crate) async fn swap(
    client: &(dyn MintConnector + Send + Sync),
    inputs: Proofs,
    outputs: &Outputs,
) -> Result<Vec<BlindSignature>, SwapFailure> {
    let request = SwapRequest::new(inputs, outputs.blinded.clone());
    match client.post_swap(request).await {
        Ok(response) => Ok(response.signatures),
        Err(e @ (CdkError::TokenAlreadySpent | CdkError::TokenPending)) => {
            Err(SwapFailure::Spent(e))
        }
        // Outputs signed before: an earlier try of this very attempt was applied.
        Err(e @ CdkError::DuplicateOutputs) => Err(SwapFailure::Spent(e)),
        Err(e) if e.is_definitive_failure() => Err(SwapFailure::Refused(e)),
        Err(e) if is_outputs_already_signed(&e) => Err(SwapFailure::Spent(e)),
        Err(e) => Err(SwapFailure::Unknown(e)),
    }
}

/// NUT error 10002 ("blinded message already signed") arrives as an unknown response
/// in some mints' dialects.
fn is_outputs_already_signed(e: &CdkError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("already signed") || text.contains("10002")
}

/// How a swap failed.
pub(crate) enum SwapFailure {
    /// Inputs (or outputs) already used: perhaps by this attempt; restore tells.
    Spent(#[allow(dead_code)] CdkError),
    /// The mint refused; nothing happened.
    Refused(CdkError),
    /// No clear answer: the mint may have applied it.
    Unknown(CdkError),
}

/// Asks the mint which of the attempt's outputs it signed (NUT-09).
pub(crate) async fn restore(
    client: &(dyn MintConnector + Send + Sync),
    outputs: &Outputs,
) -> Result<Vec<BlindSignature>, CdkError> {
    let response = client
        .post_restore(RestoreRequest {
            outputs: outputs.blinded.clone(),
        })
        .await?;
    // Order the signatures as the outputs were.
    let mut signed = Vec::with_capacity(response.signatures.len());
    for wanted in &outputs.blinded {
        let sig = response
            .outputs
            .iter()
            .position(|o| o.blinded_secret == wanted.blinded_secret)
            .and_then(|pos| response.signatures.get(pos));
        if let Some(sig) = sig {
            signed.push(sig.clone());
        }
    }
    Ok(signed)
}

/// The mint's view of the inputs: all unspent, any spent, or pending/unknown.
pub(crate) async fn input_state(
    client: &(dyn MintConnector + Send + Sync),
    inputs: &Proofs,
) -> Result<Option<bool>, CdkError> {
    let ys = inputs.ys()?;
    let states = client.post_check_state(CheckStateRequest { ys }).await?;
    if states.states.iter().any(|s| s.state == State::Spent) {
        return Ok(Some(true));
    }
    if !states.states.is_empty() && states.states.iter().all(|s| s.state == State::Unspent) {
        return Ok(Some(false));
    }
    Ok(None)
}

//! Sends (change and refund tokens) whose outcome a crash or a lost answer hid.
//!
//! cdk's send saga swaps the wallet's proofs into the token's amounts. When the swap's
//! answer is lost, cdk's recovery releases the saga's inputs back to the wallet as
//! unspent, although the mint may have spent them, and forgets the swap's outputs. Those
//! inputs must never go out again in a buyer's token (it would not redeem), and the
//! outputs are the operator's money. So every send records, before its swap, where its
//! outputs' counters start; recovery then restores those outputs from the mint (NUT-09)
//! and drops the wallet's proofs the mint reports spent (NUT-07).

use cdk::Error as CdkError;
use cdk::nuts::Id;
use cdk::wallet::types::{OperationData, SendOperationData, SendSagaState, WalletSagaState};
use cdk::wallet::{MintConnector, Wallet};
use paygress_core::secret::CashuToken;
use serde::{Deserialize, Serialize};

use crate::redeem;

const NAMESPACE: &str = "paygress";
const OPEN_SENDS: &str = "open_sends";
const ISSUES: &str = "issues";

/// What the wallet did for one named issue (core's `IssueId`).
#[derive(Debug, Serialize, Deserialize)]
struct IssueRecord {
    /// The cdk send operation.
    operation: uuid::Uuid,
    /// The token, once created.
    token: Option<String>,
}

/// Records the send `operation` of issue `id`, and its token once created.
pub(crate) async fn record_issue(
    wallet: &Wallet,
    id: &str,
    operation: uuid::Uuid,
    token: Option<&CashuToken>,
) -> Result<(), CdkError> {
    let record = IssueRecord {
        operation,
        token: token.map(|t| t.expose().to_owned()),
    };
    let value = serde_json::to_vec(&record).map_err(|e| CdkError::Custom(e.to_string()))?;
    wallet
        .localstore
        .kv_write(NAMESPACE, ISSUES, id, &value)
        .await?;
    Ok(())
}

/// The token issue `id` created, if it created one: recorded, or kept by cdk's send
/// saga (a crash between the token and its record). `None`: no token exists for `id`
/// (never prepared, or rolled back), so it may be made now.
pub(crate) async fn issued(wallet: &Wallet, id: &str) -> Result<Option<CashuToken>, CdkError> {
    let Some(bytes) = wallet.localstore.kv_read(NAMESPACE, ISSUES, id).await? else {
        return Ok(None);
    };
    let record: IssueRecord =
        serde_json::from_slice(&bytes).map_err(|e| CdkError::Custom(e.to_string()))?;
    if let Some(token) = record.token {
        return Ok(Some(CashuToken::new(token)));
    }
    let Some(saga) = wallet.localstore.get_saga(&record.operation).await? else {
        return Ok(None);
    };
    match (saga.state, saga.data) {
        (
            WalletSagaState::Send(SendSagaState::TokenCreated),
            OperationData::Send(SendOperationData {
                token: Some(token), ..
            }),
        ) => {
            let token = CashuToken::new(token);
            record_issue(wallet, id, record.operation, Some(&token)).await?;
            Ok(Some(token))
        }
        _ => Ok(None),
    }
}

/// A send whose swap may be in flight: where its outputs' counters start.
#[derive(Debug, Serialize, Deserialize)]
struct OpenSend {
    mint: String,
    unit: String,
    keyset: Id,
    start: u32,
}

/// What a recovery did.
#[derive(Debug, Default)]
pub(crate) struct SendRecovery {
    /// cdk's saga recovery report.
    pub sagas: cdk::wallet::RecoveryReport,
    /// Amount restored from swaps whose answers were lost.
    pub restored: u64,
    /// Open sends examined.
    pub open: usize,
    /// Amount released from reservations no operation holds any more.
    pub released: u64,
}

impl SendRecovery {
    pub(crate) fn is_empty(&self) -> bool {
        self.sagas.is_empty() && self.open == 0 && self.released == 0
    }
}

/// Records that the send `operation` is about to swap: durable before the swap is sent.
pub(crate) async fn mark_open(wallet: &Wallet, operation: &str) -> Result<(), CdkError> {
    let keyset = wallet.active_keyset().await?.id;
    let start = wallet
        .localstore
        .increment_keyset_counter(&keyset, 0)
        .await?;
    let open = OpenSend {
        mint: wallet.mint_url.to_string(),
        unit: wallet.unit.to_string(),
        keyset,
        start,
    };
    let value = serde_json::to_vec(&open).map_err(|e| CdkError::Custom(e.to_string()))?;
    wallet
        .localstore
        .kv_write(NAMESPACE, OPEN_SENDS, operation, &value)
        .await?;
    Ok(())
}

/// The send `operation` ended with a definite outcome.
pub(crate) async fn mark_closed(wallet: &Wallet, operation: &str) -> Result<(), CdkError> {
    wallet
        .localstore
        .kv_remove(NAMESPACE, OPEN_SENDS, operation)
        .await?;
    Ok(())
}

/// Finishes or rolls back interrupted sends of `wallet` (cdk's saga recovery), restores
/// the outputs of swaps whose answers were lost, and drops proofs the mint reports
/// spent. Call with no send of this wallet in flight.
pub(crate) async fn recover(
    wallet: &Wallet,
    client: &(dyn MintConnector + Send + Sync),
    seed: &[u8; 64],
) -> Result<SendRecovery, CdkError> {
    let mut mine = Vec::new();
    for key in wallet.localstore.kv_list(NAMESPACE, OPEN_SENDS).await? {
        let Some(bytes) = wallet
            .localstore
            .kv_read(NAMESPACE, OPEN_SENDS, &key)
            .await?
        else {
            continue;
        };
        match serde_json::from_slice::<OpenSend>(&bytes) {
            Ok(open)
                if open.mint == wallet.mint_url.to_string()
                    && open.unit == wallet.unit.to_string() =>
            {
                mine.push((key, open));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "unreadable open-send record; dropped");
                mark_closed(wallet, &key).await?;
            }
        }
    }
    let mut report = SendRecovery {
        sagas: wallet.recover_incomplete_sagas().await?,
        open: mine.len(),
        ..SendRecovery::default()
    };
    report.released = release_orphans(wallet).await?;
    if mine.is_empty() {
        return Ok(report);
    }
    for (_, open) in &mine {
        let end = wallet
            .localstore
            .increment_keyset_counter(&open.keyset, 0)
            .await?;
        report.restored +=
            redeem::recover_range(wallet, client, seed, open.keyset, open.start, end).await?;
    }
    // A lost swap's inputs went back to the pool as unspent: drop those the mint spent.
    let unspent = wallet.get_unspent_proofs().await?;
    if !unspent.is_empty() {
        wallet.check_proofs_spent(unspent).await?;
    }
    for (key, _) in &mine {
        mark_closed(wallet, key).await?;
    }
    Ok(report)
}

/// Proofs left reserved (or pending) by an operation that no longer exists: cdk's
/// recovery of a send whose inner swap lost its answer can compensate the send and drop
/// its saga while the inputs stay reserved under its id, out of the balance for good.
/// The mint decides: spent ones are dropped, unspent ones are the wallet's again.
/// Returns the amount released.
async fn release_orphans(wallet: &Wallet) -> Result<u64, CdkError> {
    use std::collections::HashSet;

    use cdk::nuts::State;

    let held = wallet
        .localstore
        .get_proofs(
            Some(wallet.mint_url.clone()),
            Some(wallet.unit.clone()),
            Some(vec![State::Reserved, State::Pending]),
            None,
        )
        .await?;
    if held.is_empty() {
        return Ok(0);
    }
    let live: HashSet<uuid::Uuid> = wallet
        .localstore
        .get_incomplete_sagas()
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let orphans: cdk::nuts::Proofs = held
        .into_iter()
        .filter(|p| p.used_by_operation.is_none_or(|op| !live.contains(&op)))
        .map(|p| p.proof)
        .collect();
    if orphans.is_empty() {
        return Ok(0);
    }
    let states = wallet.check_proofs_spent(orphans.clone()).await?;
    let unspent: Vec<_> = states
        .iter()
        .filter(|s| s.state == State::Unspent)
        .map(|s| s.y)
        .collect();
    let released: u64 = orphans
        .iter()
        .filter(|p| p.y().is_ok_and(|y| unspent.contains(&y)))
        .map(|p| u64::from(p.amount))
        .sum();
    if !unspent.is_empty() {
        // Re-stored free of the dead operation, so that selection sees them again.
        let infos = orphans
            .into_iter()
            .filter(|p| p.y().is_ok_and(|y| unspent.contains(&y)))
            .map(|p| {
                cdk::wallet::types::ProofInfo::new(
                    p,
                    wallet.mint_url.clone(),
                    State::Unspent,
                    wallet.unit.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        wallet.localstore.update_proofs(infos, vec![]).await?;
        tracing::info!(amount = released, "released proofs no operation holds");
    }
    Ok(released)
}

//! The journal: where paid requests stand ([`Journal`]).

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{BoxError, IssueId, RedeemAttempt, Redeemed, RequestKey};
use crate::lease::Requester;
use crate::money::{Amount, MintUrl};
use crate::names::LeaseId;
use crate::protocol::Reply;
use crate::secret::CashuToken;

/// Why a payment was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A new lease (its pod may be half-created after a crash: remove it).
    Spawn,
    /// A top-up of an existing lease (never remove the lease).
    TopUp,
}

/// One journaled request: who sent it, when it last moved, and where it stands.
///
/// The requester binds the entry: a message with the same [`RequestKey`] from anyone
/// else never gets the stored reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Who sent the request (authenticated by the transport).
    #[serde(default = "Requester::unknown")]
    pub requester: Requester,
    /// When the stage was recorded (for retention).
    #[serde(default = "unix_epoch")]
    pub updated_at: Timestamp,
    /// Where the request stands.
    #[serde(flatten)]
    pub stage: Stage,
}

fn unix_epoch() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

impl Entry {
    /// An entry for `stage`, recorded now by `requester`.
    pub fn new(requester: Requester, updated_at: Timestamp, stage: Stage) -> Self {
        Self {
            requester,
            updated_at,
            stage,
        }
    }
}

/// Where a journaled request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "stage")]
pub enum Stage {
    /// The token is being redeemed: the attempt was prepared and may have reached the
    /// mint. The token is kept only for this window, so that recovery can find out
    /// what the wallet received for it.
    Redeeming {
        /// Spawn or top-up.
        purpose: Purpose,
        /// The lease id chosen (spawn) or targeted (top-up).
        lease: LeaseId,
        /// The token being redeemed.
        token: CashuToken,
        /// The prepared attempt.
        attempt: RedeemAttempt,
    },
    /// The payment is held by the service; no reply decided yet.
    Paid {
        /// Spawn or top-up.
        purpose: Purpose,
        /// The lease id chosen (spawn) or targeted (top-up).
        lease: LeaseId,
        /// What was received.
        payment: Redeemed,
    },
    /// A top-up's payment is held and the lease is being extended to `target`: recorded
    /// before the backend is asked, so recovery reads the lease's real expiry to tell
    /// whether the extension happened (never both extend and refund).
    Extending {
        /// The lease.
        lease: LeaseId,
        /// What was received.
        payment: Redeemed,
        /// The new expiry asked of the backend.
        target: Timestamp,
        /// Total paid for the lease once extended, msat.
        paid_msat: u64,
        /// Seconds added.
        added_seconds: u64,
        /// Change due to the payer once extended.
        change: Amount,
        /// The lease was in its grace period: the time added counts from the top-up,
        /// not from the past expiry. Absent in entries of earlier versions.
        #[serde(default)]
        revived: bool,
    },
    /// The owner asked to release `lease`: recorded before the backend is asked to
    /// delete it, so recovery reads the lease back to tell whether it went (the refund
    /// is then issued, once, through [`Stage::Issuing`]) or is still there (the release
    /// is completed, refunding only what is unused by then).
    Releasing {
        /// The lease.
        lease: LeaseId,
        /// When the release was decided (the end of the time charged).
        released_at: Timestamp,
        /// The lease's paid end when the release was decided.
        expires_at: Timestamp,
        /// Seconds refunded.
        refunded_seconds: u64,
        /// The refund due, before the mint's fee.
        amount: Amount,
        /// Mint the refund is issued at.
        mint: MintUrl,
        /// Set once the lease is pinned (its expiry moved far out, so that nothing but
        /// this release removes it), just before the delete: a lease found gone with
        /// this set was deleted by the release, whatever the clock says; gone without
        /// it, it ran out on its own. Absent in entries of earlier versions.
        #[serde(default)]
        pinned: bool,
    },
    /// The reply is decided and `amount` at `mint` is being issued to the payer as the
    /// token of issue `issue` (change or refund): recorded before the wallet is asked,
    /// so that a crash or a lost answer leads to the same token, never to a second one.
    /// Stays here while the mint cannot issue (a retry or settlement asks again).
    Issuing {
        /// The reply, to be completed with the token.
        reply: Reply,
        /// Mint of the amount.
        mint: MintUrl,
        /// Amount to issue.
        amount: Amount,
        /// The issue's name for the wallet.
        issue: IssueId,
    },
    /// The reply is decided except that `amount` at `mint` is still owed to the payer
    /// as a token (written by earlier versions; now [`Stage::Issuing`]).
    Owed {
        /// The reply, to be completed with the token.
        reply: Reply,
        /// Mint of the owed amount.
        mint: MintUrl,
        /// Amount owed.
        amount: Amount,
    },
    /// Finished: every redeemed msat is lease time or in a token inside `reply`.
    Done {
        /// The reply, resent as-is to duplicates.
        reply: Reply,
    },
}

/// A journal failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Reading or writing the store failed.
    #[error("journal I/O: {0}")]
    Io(#[source] BoxError),
    /// A stored record could not be decoded.
    #[error("journal corrupt: {0}")]
    Corrupt(String),
}

/// A durable record of paid requests, so that duplicates get the first reply and money
/// held across a crash is returned. `put` must be durable when it returns; entries
/// reach storage in the order they are recorded (`put` and `put_lazy` alike).
#[cfg_attr(any(test, feature = "mockall"), mockall::automock)]
#[async_trait]
pub trait Journal: Send + Sync {
    /// The latest entry recorded for `key`.
    async fn get(&self, key: &RequestKey) -> Result<Option<Entry>, JournalError>;

    /// Records `entry` for `key`, replacing the previous one.
    async fn put(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError>;

    /// Records `entry` for `key` like [`put`](Self::put), but may return before it is
    /// durable: it is durable once any later `put` returns (entries reach storage in
    /// call order), and a crash before then may lose it. For a stage that recovery can
    /// do without, so that no request waits on the disk for it: the service writes
    /// [`Stage::Paid`] this way (the [`Stage::Redeeming`] before it recovers the
    /// payment). By default the same as `put`; a wrapper must forward it.
    async fn put_lazy(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        self.put(key, entry).await
    }

    /// Every key whose stage is not `Done`.
    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError>;

    /// Forgets `Done` entries recorded before `before`; returns how many. Unfinished
    /// entries are never pruned.
    async fn prune(&self, before: Timestamp) -> Result<usize, JournalError>;
}

/// A shared journal.
pub type DynJournal = Arc<dyn Journal>;

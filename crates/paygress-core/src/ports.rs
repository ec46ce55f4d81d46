//! The ports: what core needs from the outside world. Each adapter crate implements one.
//!
//! All ports are object safe, `Send + Sync`, and used as `Arc<dyn …>`.

use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::lease::{LeaseRecord, LeaseSpec, Provisioned, Requester};
use crate::money::{Amount, MintUrl, Unit};
use crate::names::LeaseId;
use crate::protocol::{ExpiryNotice, Offer, Reply, Request};
use crate::secret::CashuToken;

/// A boxed error from an adapter's own technology.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

// ---------------------------------------------------------------- payments

/// What a token claims, read offline (no mint contacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token's mint, normalised and accepted.
    pub mint: MintUrl,
    /// Face value (before any mint input fee).
    pub amount: Amount,
    /// The input fee the mint takes when the token is swapped (NUT-02 `input_fee_ppk`),
    /// paid by the buyer: at most `amount - fee` can be received.
    pub fee: Amount,
}

impl TokenInfo {
    /// What the wallet receives if the swap succeeds: face value less the mint's fee.
    pub fn net(&self) -> Amount {
        Amount::new(
            self.amount.value.saturating_sub(self.fee.value),
            self.amount.unit,
        )
    }
}

/// A redeem prepared before the mint is contacted, journaled before the swap is sent, so
/// that its outcome can be found later whatever happens to the mint's answer: the
/// verifier can always tell what its wallet received *for this attempt* (never what the
/// token claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemAttempt {
    /// The token's mint.
    pub mint: MintUrl,
    /// The token's face value.
    pub face: Amount,
    /// The mint's input fee for this token.
    pub fee: Amount,
    /// Verifier-specific record of the attempt (e.g. the deterministic outputs the wallet
    /// asks the mint to sign), opaque to core. Holds no spendable secret.
    pub receipt: String,
}

/// Names one change or refund token so that it is created at most once: journaled
/// before the wallet is asked, and asked again under the same name after a crash or a
/// lost answer (see [`PaymentVerifier::issue_once`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IssueId(String);

impl IssueId {
    /// A fresh random id (32 characters from `[a-z0-9]`).
    pub fn generate() -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        Self(
            (0..32)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect(),
        )
    }

    /// The id as text (only `[A-Za-z0-9_-]`, at most 64 characters, for ids made here).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The result of redeeming a token: what the service's wallet now holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redeemed {
    /// The mint the value now sits at.
    pub mint: MintUrl,
    /// Amount credited after the mint's input fee (the payer's fee).
    pub amount: Amount,
}

/// A token checked without redeeming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCheck {
    /// The token's mint.
    pub mint: MintUrl,
    /// Face value.
    pub amount: Amount,
    /// Whether every proof is still unspent at the mint.
    pub spendable: bool,
}

/// Why a payment operation failed.
///
/// Every variant except [`PaymentError::Issue`] and [`PaymentError::Ambiguous`] means the
/// token was **not** received: the payer still holds its value (or never had it).
#[derive(Debug, Error)]
pub enum PaymentError {
    /// The token cannot be decoded, has no proofs or is worth nothing.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token's mint is not whitelisted. No request was sent to it.
    #[error("mint {0} is not accepted")]
    MintNotAccepted(String),
    /// The token's unit is not one Paygress prices in.
    #[error("unit {0:?} is not accepted")]
    UnsupportedUnit(String),
    /// The mint says (some of) the proofs are spent.
    #[error("token already spent")]
    AlreadySpent,
    /// The mint could not be reached or answered nonsense; the token was not received.
    #[error("mint unavailable: {0}")]
    MintUnavailable(#[source] BoxError),
    /// The swap was sent but its answer was lost (timeout, 5xx, dropped connection): the
    /// mint may have applied it. The attempt stays open until
    /// [`PaymentVerifier::resolve`] tells what was received.
    #[error("payment outcome unknown: {0}")]
    Ambiguous(#[source] BoxError),
    /// The proofs are locked by a spending condition (NUT-10/11/14: P2PK, HTLC) the
    /// service cannot satisfy.
    #[error("the token is locked ({0}) and cannot be redeemed by this service")]
    Locked(String),
    /// The token names the same proof more than once.
    #[error("the token contains the same proof twice")]
    DuplicateProofs,
    /// More proofs than the service redeems in one token.
    #[error("the token has {count} proofs; at most {max} are accepted")]
    TooManyProofs {
        /// Proofs in the token.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A proof names a keyset the mint does not have.
    #[error("the token names keyset {0}, which its mint does not have")]
    UnknownKeyset(String),
    /// Creating a token for the payer (change or refund) failed.
    #[error("could not issue a token: {0}")]
    Issue(#[source] BoxError),
    /// Anything else.
    #[error("payment error: {0}")]
    Other(#[source] BoxError),
}

/// Redeems and issues Cashu tokens.
#[cfg_attr(any(test, feature = "mockall"), mockall::automock)]
#[async_trait]
pub trait PaymentVerifier: Send + Sync {
    /// Decodes a token and checks mint and unit offline. Must not contact any mint.
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError>;

    /// Prepares redeeming `token` without contacting its mint: validates it as
    /// [`PaymentVerifier::inspect`] does and reserves what the wallet needs to find the
    /// outcome later (e.g. deterministic outputs). The caller journals the attempt before
    /// calling [`PaymentVerifier::redeem`].
    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError>;

    /// Swaps the token's proofs at its (accepted) mint into the service's wallet, as
    /// prepared. Returns what the wallet received. [`PaymentError::Ambiguous`] means the
    /// mint may have applied the swap: call [`PaymentVerifier::resolve`] later; every
    /// other error means nothing was received.
    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError>;

    /// Finds the outcome of an attempt whose answer was lost (or that a crash
    /// interrupted): `Some` with what the wallet received for *this attempt* (completing
    /// the swap if the mint never applied it), `None` when it received nothing and never
    /// will (the proofs were spent by someone else or are invalid). An error means the
    /// outcome is still unknown (mint unreachable): try again later.
    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError>;

    /// Checks whether a token is spendable without redeeming it.
    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError>;

    /// Creates a token worth exactly `amount` at `mint` from the service's wallet.
    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError>;

    /// Creates the token of issue `id` (worth exactly `amount` at `mint`), at most once:
    /// when a token was already created under `id` (by a call whose answer a crash or a
    /// timeout lost), returns that token instead of making a second one. Core journals
    /// `id` before calling, and calls again with the same `id` until it gets a token.
    ///
    /// The default calls [`PaymentVerifier::issue`]: right only for a wallet that does
    /// not outlive the process (nothing can be left half-issued across a restart).
    /// A persistent wallet must override it.
    async fn issue_once(
        &self,
        id: &IssueId,
        mint: &MintUrl,
        amount: Amount,
    ) -> Result<CashuToken, PaymentError> {
        let _ = id;
        self.issue(mint, amount).await
    }

    /// The mints tokens are accepted from.
    fn accepted_mints(&self) -> Vec<MintUrl>;

    /// An encoded payment request (NUT-18 `creqA…`) asking for `amount` at any accepted
    /// mint, for HTTP 402 answers (NUT-24). Default: not supported.
    fn payment_request(&self, amount: Amount, description: &str) -> Result<String, PaymentError> {
        let _ = (amount, description);
        Err(PaymentError::Other(
            "payment requests are not supported".into(),
        ))
    }

    /// The units tokens are accepted in.
    fn accepted_units(&self) -> Vec<Unit> {
        vec![Unit::Sat, Unit::Msat]
    }

    /// The public key (compressed secp256k1, hex) tokens may be locked to (NUT-11),
    /// when the verifier signs such tokens to redeem them. Default: none (locked tokens
    /// are refused).
    fn locking_key(&self) -> Option<String> {
        None
    }
}

/// A shared payment verifier.
pub type DynPaymentVerifier = Arc<dyn PaymentVerifier>;

// ---------------------------------------------------------------- pods

/// Why a backend operation failed.
#[derive(Debug, Error)]
pub enum BackendError {
    /// No such lease.
    #[error("lease {0} not found")]
    NotFound(LeaseId),
    /// A lease with that id already exists.
    #[error("lease {0} already exists")]
    AlreadyExists(LeaseId),
    /// The backend refused the spec (bad image, quota, invalid field).
    #[error("rejected: {0}")]
    Rejected(String),
    /// A concurrent change won (e.g. HTTP 409); retrying may succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend cannot be reached or is overloaded.
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// Anything else.
    #[error("backend error: {0}")]
    Other(#[source] BoxError),
}

/// A new expiry for a lease, with the total paid so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The new end of the paid time (always later than the current one).
    pub expires_at: Timestamp,
    /// Total paid for the lease, msat.
    pub paid_msat: u64,
}

/// Runs leases' pods. A backend enforces expiry on its own (the Kubernetes Job deadline,
/// the local backend's timers); the service's reaper is a second line.
#[cfg_attr(any(test, feature = "mockall"), mockall::automock)]
#[async_trait]
pub trait PodBackend: Send + Sync {
    /// Short name (`kubernetes`, `local`, `memory`).
    fn name(&self) -> &'static str;

    /// Creates the lease's pod, reachable until `spec.expires_at`.
    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError>;

    /// Moves a live lease's expiry later.
    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError>;

    /// Removes the lease and everything it owns. Deleting a missing lease is not an error.
    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError>;

    /// Public data of one lease, if it exists.
    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError>;

    /// Public data of every lease the backend holds (including ones not yet removed
    /// after expiry).
    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError>;

    /// Whether one more lease can be created now (free ports, disk, quota). Asked
    /// before a token is redeemed, so a full service refuses it untouched. `Err` with
    /// the reason when it cannot. Default: always room.
    async fn check_capacity(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Removes what leases that no longer exist left behind (e.g. pods, Services and
    /// Secrets whose Job was deleted with orphaning); returns how many objects were
    /// removed. Called by the reaper. Default: nothing to sweep.
    async fn sweep(&self) -> Result<usize, BackendError> {
        Ok(0)
    }
}

/// A shared pod backend.
pub type DynPodBackend = Arc<dyn PodBackend>;

// ---------------------------------------------------------------- transports

/// A transport's failure to deliver or receive.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The peer or relay could not be reached.
    #[error("transport unavailable: {0}")]
    Unavailable(String),
    /// The transport is closed.
    #[error("transport closed")]
    Closed,
    /// Anything else.
    #[error("transport error: {0}")]
    Other(#[source] BoxError),
}

/// Identifies one request message, scoped by transport (`nostr:<event id>`). Handling
/// the same key twice returns the first reply and never charges twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestKey(String);

impl RequestKey {
    /// A key for message `id` on `transport`.
    pub fn new(transport: &str, id: &str) -> Self {
        Self(format!("{transport}:{id}"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Sends the reply to one request back to its sender.
#[async_trait]
pub trait Responder: Send {
    /// Delivers `reply`.
    async fn respond(self: Box<Self>, reply: &Reply) -> Result<(), TransportError>;
}

/// An authenticated request from a transport.
pub struct Incoming {
    /// Message identity, for idempotency.
    pub key: RequestKey,
    /// Who sent it (authenticated by the transport: a Nostr signature, …).
    pub sender: Requester,
    /// What they ask.
    pub request: Request,
    /// Where the reply goes.
    pub responder: Box<dyn Responder>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("key", &self.key)
            .field("sender", &self.sender)
            .field("request", &self.request.kind())
            .finish_non_exhaustive()
    }
}

/// A source of requests.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Short name (`nostr`, `http`).
    fn name(&self) -> &'static str;

    /// The next request; `None` once the transport is closed.
    async fn next(&self) -> Option<Incoming>;

    /// Publishes the service's offer where buyers look for it. Default: nothing to do.
    async fn publish_offer(&self, _offer: &Offer) -> Result<(), TransportError> {
        Ok(())
    }
}

/// A shared transport.
pub type DynTransport = Arc<dyn Transport>;

/// Delivers a reply decided after the request's own answer was sent: a refund or change
/// that settlement issued once the mint was back, or the outcome of a payment whose
/// mint answer was lost. A Nostr transport sends it as a new reply to the request's
/// author, tagged with the original request.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `reply` for request `key` to `requester`.
    async fn notify(
        &self,
        key: &RequestKey,
        requester: &Requester,
        reply: &Reply,
    ) -> Result<(), TransportError>;

    /// Tells lease owner `owner` that the lease in `notice` is about to expire, with how
    /// to top it up. Called once per lease and expiry. Default: owners of this notifier's
    /// transport cannot be reached outside a reply (nothing is sent).
    async fn notify_expiry(
        &self,
        owner: &Requester,
        notice: &ExpiryNotice,
    ) -> Result<(), TransportError> {
        let _ = (owner, notice);
        Ok(())
    }
}

/// A shared notifier.
pub type DynNotifier = Arc<dyn Notifier>;

// ---------------------------------------------------------------- time

/// The current time. A port so tests can move time by hand.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A shared clock.
pub type DynClock = Arc<dyn Clock>;

// ---------------------------------------------------------------- journal

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
pub enum JournalError {
    /// Reading or writing the store failed.
    #[error("journal I/O: {0}")]
    Io(#[source] BoxError),
    /// A stored record could not be decoded.
    #[error("journal corrupt: {0}")]
    Corrupt(String),
}

/// A durable record of paid requests, so that duplicates get the first reply and money
/// held across a crash is returned. `put` must be durable when it returns.
#[cfg_attr(any(test, feature = "mockall"), mockall::automock)]
#[async_trait]
pub trait Journal: Send + Sync {
    /// The latest entry recorded for `key`.
    async fn get(&self, key: &RequestKey) -> Result<Option<Entry>, JournalError>;

    /// Records `entry` for `key`, replacing the previous one.
    async fn put(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError>;

    /// Every key whose stage is not `Done`.
    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError>;

    /// Forgets `Done` entries recorded before `before`; returns how many. Unfinished
    /// entries are never pruned.
    async fn prune(&self, before: Timestamp) -> Result<usize, JournalError>;
}

/// A shared journal.
pub type DynJournal = Arc<dyn Journal>;

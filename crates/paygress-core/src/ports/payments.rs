//! Payments: redeeming and issuing Cashu tokens ([`PaymentVerifier`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::BoxError;
use crate::money::{Amount, MintUrl, Unit};
use crate::secret::CashuToken;

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
#[non_exhaustive]
pub enum PaymentError {
    /// The token cannot be decoded, has no proofs or is worth nothing.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token's mint (as the token names it) is not whitelisted. No request was sent
    /// to it.
    #[error("mint {0} is not accepted")]
    MintNotAccepted(MintUrl),
    /// The token's unit (its name, as the token or the mint gives it) is not one
    /// Paygress prices in.
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
    /// A proof names a keyset the mint does not have: the keyset ids the token names.
    #[error("the token names keysets {}, which its mint does not have", .0.join(", "))]
    UnknownKeyset(Vec<String>),
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

//! The contract every [`PaymentVerifier`] meets, one test per check through
//! [`payment_verifier_tests!`](crate::payment_verifier_tests).
//!
//! Core's [`MemoryVerifier`](crate::memory::MemoryVerifier) and the cdk verifier of
//! `paygress-cashu` (against a real in-process mint) are held to the same money rules:
//! credit what was received, never twice; checking does not spend; issued tokens are
//! worth what was asked; one issue id makes one token. Faults (lost answers, a mint
//! going down) are each implementation's own tests.

use async_trait::async_trait;

use crate::money::{Amount, MintUrl};
use crate::ports::{IssueId, PaymentError, PaymentVerifier};
use crate::secret::CashuToken;

/// What the verifier contract needs besides the verifier: a buyer's wallet at an
/// accepted mint.
#[async_trait]
pub trait VerifierFixture: Send + Sync {
    /// The verifier under test (the service's wallet).
    fn verifier(&self) -> &dyn PaymentVerifier;
    /// The accepted mint the buyer's tokens come from.
    fn mint(&self) -> MintUrl;
    /// A fresh spendable token worth `sat` at [`VerifierFixture::mint`].
    async fn token(&self, sat: u64) -> CashuToken;
    /// Spends `token` as the payer would (cashing change or a refund): its value in sat,
    /// or `None` when it cannot be spent.
    async fn cash(&self, token: &CashuToken) -> Option<u64>;
}

/// One `#[tokio::test]` per verifier contract check, each on a fresh fixture from
/// `$make`: an async function taking the check's number and returning
/// `(fixture, guard)`, the guard kept alive for the check.
///
/// ```rust,ignore
/// paygress_core::payment_verifier_tests!(fresh);
/// ```
#[macro_export]
macro_rules! payment_verifier_tests {
    ($make:path) => {
        $crate::payment_verifier_tests!(@one $make, 0, verifier_contract_inspect_reads_the_token_offline, inspect_reads_the_token_offline);
        $crate::payment_verifier_tests!(@one $make, 1, verifier_contract_redeem_credits_at_most_the_face_value_once, redeem_credits_at_most_the_face_value_once);
        $crate::payment_verifier_tests!(@one $make, 2, verifier_contract_check_does_not_spend, check_does_not_spend);
        $crate::payment_verifier_tests!(@one $make, 3, verifier_contract_resolve_reports_what_an_attempt_received, resolve_reports_what_an_attempt_received);
        $crate::payment_verifier_tests!(@one $make, 4, verifier_contract_issued_tokens_are_worth_the_amount, issued_tokens_are_worth_the_amount);
        $crate::payment_verifier_tests!(@one $make, 5, verifier_contract_one_issue_id_makes_one_token, one_issue_id_makes_one_token);
    };
    (@one $make:path, $n:literal, $name:ident, $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (fixture, _guard) = $make($n).await;
            $crate::contract::verifier::$check(&fixture).await;
        }
    };
}

async fn receive(f: &dyn VerifierFixture, token: &CashuToken) -> Result<u64, PaymentError> {
    let v = f.verifier();
    let attempt = v.prepare(token).await?;
    Ok(v.redeem(token, &attempt).await?.amount.value)
}

/// `inspect` names the token's mint and face value without spending it.
pub async fn inspect_reads_the_token_offline(f: &dyn VerifierFixture) {
    let token = f.token(21).await;
    let info = f.verifier().inspect(&token).expect("inspect");
    assert_eq!(info.mint, f.mint(), "inspect: mint");
    assert_eq!(info.amount.value, 21, "inspect: face value");
    assert!(
        f.verifier().accepted_mints().contains(&info.mint),
        "the fixture's mint is accepted"
    );
    assert_eq!(receive(f, &token).await.expect("still spendable"), 21);
}

/// A redeem credits what the wallet received (never more than the face value, here
/// with no fees exactly it), and the same token redeemed again is `AlreadySpent` with
/// nothing credited.
pub async fn redeem_credits_at_most_the_face_value_once(f: &dyn VerifierFixture) {
    let token = f.token(40).await;
    let credited = receive(f, &token).await.expect("first redeem");
    assert_eq!(credited, 40, "credited");
    match receive(f, &token).await {
        Err(PaymentError::AlreadySpent) => {}
        other => panic!("second redeem: expected AlreadySpent, got {other:?}"),
    }
    assert_eq!(
        f.cash(&token).await,
        None,
        "the payer cannot spend it either"
    );
}

/// `check` reports a fresh token spendable without spending it, and a redeemed one
/// spent.
pub async fn check_does_not_spend(f: &dyn VerifierFixture) {
    let token = f.token(8).await;
    let before = f.verifier().check(&token).await.expect("check");
    assert!(before.spendable, "fresh token is spendable");
    assert_eq!(before.amount.value, 8, "check: face value");
    assert_eq!(receive(f, &token).await.expect("redeem after check"), 8);
    match f.verifier().check(&token).await {
        Ok(after) => assert!(!after.spendable, "redeemed token is spent"),
        Err(PaymentError::AlreadySpent) => {}
        Err(e) => panic!("check of a redeemed token: {e}"),
    }
}

/// `resolve` of an attempt that completed reports what that attempt received; of an
/// attempt on a token someone else spent, `None`.
pub async fn resolve_reports_what_an_attempt_received(f: &dyn VerifierFixture) {
    let v = f.verifier();
    let token = f.token(13).await;
    let attempt = v.prepare(&token).await.expect("prepare");
    let got = v.redeem(&token, &attempt).await.expect("redeem");
    let resolved = v.resolve(&token, &attempt).await.expect("resolve");
    assert_eq!(resolved, Some(got), "resolve of a completed attempt");

    let stolen = f.token(5).await;
    let attempt = v.prepare(&stolen).await.expect("prepare");
    assert_eq!(f.cash(&stolen).await, Some(5), "the payer spends it first");
    let resolved = v.resolve(&stolen, &attempt).await.expect("resolve");
    assert_eq!(resolved, None, "nothing was received for that attempt");
}

/// Tokens issued from received funds are worth exactly what was asked and spendable.
pub async fn issued_tokens_are_worth_the_amount(f: &dyn VerifierFixture) {
    let token = f.token(64).await;
    receive(f, &token).await.expect("fund the wallet");
    let change = f
        .verifier()
        .issue(&f.mint(), Amount::sat(10))
        .await
        .expect("issue");
    assert_eq!(f.cash(&change).await, Some(10), "issued token's value");
    assert_eq!(f.cash(&change).await, None, "and it spends once");
}

/// Asking twice under one issue id (a retry after a lost answer) returns the same
/// token, not a second one.
pub async fn one_issue_id_makes_one_token(f: &dyn VerifierFixture) {
    let token = f.token(64).await;
    receive(f, &token).await.expect("fund the wallet");
    let id = IssueId::generate();
    let v = f.verifier();
    let first = v
        .issue_once(&id, &f.mint(), Amount::sat(7))
        .await
        .expect("issue");
    let again = v
        .issue_once(&id, &f.mint(), Amount::sat(7))
        .await
        .expect("issue again");
    assert_eq!(first.expose(), again.expose(), "the same token");
    assert_eq!(f.cash(&first).await, Some(7), "worth the amount");
    let other = v
        .issue_once(&IssueId::generate(), &f.mint(), Amount::sat(7))
        .await
        .expect("another issue");
    assert_ne!(other.expose(), first.expose(), "another id, another token");
}

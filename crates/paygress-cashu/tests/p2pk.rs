//! NUT-11: a buyer locks the payment to the service's key (with a locktime and a refund
//! key); the service signs to redeem it, and nobody else can.

mod common;

use std::sync::Arc;

use common::{balance, verifier_for};
use paygress_cashu::cdk::nuts::SecretKey;
use paygress_cashu::cdk::util::unix_time;
use paygress_cashu::lock_token;
use paygress_cashu::testkit::{Buyer, TestMint, TokenFormat};
use paygress_core::memory::MemoryBackend;
use paygress_core::ports::{PaymentError, PaymentVerifier, RequestKey};
use paygress_core::protocol::{Reply, Request, SpawnRequest};
use paygress_core::{CashuToken, Paygress, Requester, ServiceConfig, Unit};

fn spawn(token: CashuToken, minutes: u64) -> Request {
    Request::Spawn(SpawnRequest::new(token).with_duration_minutes(minutes))
}

/// A plain token worth `amount` and the same money locked to `to` for an hour.
async fn locked(mint: &TestMint, amount: u64, to: &str, locktime: u64) -> CashuToken {
    let plain = mint
        .mint_token(amount, TokenFormat::V4)
        .await
        .expect("token");
    let refund = SecretKey::generate().public_key().to_hex();
    let locked = lock_token(&plain, to, &refund, locktime)
        .await
        .expect("lock");
    assert_eq!(locked.fee, 0, "the test mint takes no fee");
    // The original token was swapped away: only the locked one is money now.
    assert!(
        mint.redeem_as_buyer(&plain).await.is_err(),
        "the plain token is spent"
    );
    locked.token
}

#[tokio::test]
async fn a_token_locked_to_the_service_buys_a_lease() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let service_key = SecretKey::generate();
    let locking = v
        .accept_locked_to(&service_key.secret_bytes())
        .expect("key");
    assert_eq!(v.locking_key(), Some(locking.clone()));
    let token = locked(&mint, 60, &locking, unix_time() + 3600).await;
    assert!(token.expose().starts_with("cashuB"));

    let backend = Arc::new(MemoryBackend::new());
    let service = Paygress::builder(
        ServiceConfig::default(),
        Arc::new(v.clone()),
        backend.clone(),
    )
    .build();
    let reply = service
        .handle(
            &RequestKey::new("test", "locked"),
            &Requester::new("test", "alice"),
            spawn(token, 60),
        )
        .await;
    let Reply::AccessDetails(access) = reply else {
        panic!("a lease expected: {reply:?}")
    };
    assert_eq!(access.duration_seconds, 3600);
    assert_eq!(backend.len(), 1);
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 60);
}

#[tokio::test]
async fn a_locked_token_cannot_be_redeemed_by_anyone_else() {
    let mint = TestMint::start().await.expect("mint");
    let service_key = SecretKey::generate();
    let locking = service_key.public_key().to_hex();
    let token = locked(&mint, 50, &locking, unix_time() + 3600).await;

    // Whoever intercepts it cannot swap it: no signature for the service's key.
    let thief = Buyer::new(&mint.url(), Unit::Sat).await.expect("wallet");
    assert!(
        thief.redeem(&token).await.is_err(),
        "a thief's receive fails"
    );
    assert_eq!(thief.balance().await.expect("balance"), 0);

    // Another Paygress service (another key, or none) refuses it untouched.
    let (other, _dir) = verifier_for(&mint).await;
    assert!(matches!(
        other.inspect(&token),
        Err(PaymentError::Locked(_))
    ));
    other
        .accept_locked_to(&SecretKey::generate().secret_bytes())
        .expect("key");
    assert!(matches!(
        other.prepare(&token).await,
        Err(PaymentError::Locked(_))
    ));

    // The service it was locked to still can.
    let (v, _dir2) = verifier_for(&mint).await;
    v.accept_locked_to(&service_key.secret_bytes())
        .expect("key");
    let attempt = v.prepare(&token).await.expect("prepare");
    let got = v.redeem(&token, &attempt).await.expect("redeem");
    assert_eq!(got.amount.value, 50);
}

#[tokio::test]
async fn a_lock_about_to_expire_is_refused_untouched() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let service_key = SecretKey::generate();
    let locking = v
        .accept_locked_to(&service_key.secret_bytes())
        .expect("key");
    // Past the locktime the buyer's refund key could race the service's redeem.
    let token = locked(&mint, 20, &locking, unix_time() + 30).await;
    assert!(matches!(v.inspect(&token), Err(PaymentError::Locked(m)) if m.contains("locktime")));
    assert!(matches!(
        v.prepare(&token).await,
        Err(PaymentError::Locked(_))
    ));
    assert!(v.check(&token).await.expect("check").spendable);
}

#[tokio::test]
async fn a_lock_to_the_even_form_of_the_services_nostr_key_is_the_same_lock() {
    // A buyer knows only the service's x-only (Nostr) key and locks to `02‖x`; the
    // service's own key may be the odd one.
    let service_key = loop {
        let k = SecretKey::generate();
        if k.public_key().to_hex().starts_with("03") {
            break k;
        }
    };
    let even = format!("02{}", service_key.public_key().x_only_public_key());
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    v.accept_locked_to(&service_key.secret_bytes())
        .expect("key");
    let token = locked(&mint, 30, &even, unix_time() + 3600).await;
    let attempt = v.prepare(&token).await.expect("prepare");
    let got = v.redeem(&token, &attempt).await.expect("redeem");
    assert_eq!(got.amount.value, 30);
}

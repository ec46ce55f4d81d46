//! Redeem faults: lost and cut swap answers, restarts between the swap and its
//! resolution, tokens spent by their sender, locked or malformed tokens.

use super::*;

/// The mint applies the swap, the answer is lost: `redeem` says ambiguous, `resolve`
/// credits exactly what the wallet received, once.
async fn lost_answer_is_resolved(fault: SwapFault) {
    let (mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    assert!(v.warm_up().await.is_empty());
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    mint.requests().clear();
    proxy.fail_next_swap(fault);
    let err = v.redeem(&t, &attempt).await.expect_err("answer lost");
    assert!(
        matches!(err, PaymentError::Ambiguous(_)),
        "{fault:?}: {err:?}"
    );
    assert_eq!(swaps(&mint), 1, "the swap reached the mint");
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);

    let got = v
        .resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(got.amount, Amount::sat(100));
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 100);
    // Resolving again reports the same receipt and does not credit it twice.
    let again = v
        .resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(again.amount, Amount::sat(100));
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 100);
    assert_eq!(
        swaps(&mint),
        1,
        "resolution never swaps an applied attempt again"
    );
    // The credited proofs are real: the whole balance leaves as a token worth 100.
    let out = v
        .issue(&proxy.url(), Amount::sat(100))
        .await
        .expect("issue");
    let payee = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    assert_eq!(payee.redeem(&out).await.expect("redeem"), 100);
}

#[tokio::test]
async fn lost_swap_answer_502() {
    lost_answer_is_resolved(SwapFault::LoseAnswer).await;
}

#[tokio::test]
async fn cut_swap_connection() {
    lost_answer_is_resolved(SwapFault::DropConnection).await;
}

#[tokio::test]
async fn delayed_swap_answer_is_a_normal_redeem() {
    let (_mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let t = token(&proxy, 21, TokenFormat::V4).await;
    proxy.fail_next_swap(SwapFault::Delay(std::time::Duration::from_millis(300)));
    let attempt = v.prepare(&t).await.expect("prepare");
    let got = v.redeem(&t, &attempt).await.expect("redeem");
    assert_eq!(got.amount, Amount::sat(21));
    assert_eq!(proxy.stats().delayed, 1);
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 21);
}

#[tokio::test]
async fn lost_answer_resolved_after_restart() {
    let (mint, proxy) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("cashu.db"), [proxy.url().to_string()]).expect("config");
    let t = token(&proxy, 64, TokenFormat::V3).await;
    let journaled = {
        let v = CashuVerifier::open(&config).await.expect("open");
        let attempt = v.prepare(&t).await.expect("prepare");
        let journaled = serde_json::to_string(&attempt).expect("serialize");
        proxy.fail_next_swap(SwapFault::LoseAnswer);
        let err = v.redeem(&t, &attempt).await.expect_err("lost");
        assert!(matches!(err, PaymentError::Ambiguous(_)), "{err:?}");
        journaled
    };
    // A new process: same store and seed, the attempt read back from the journal.
    let v = CashuVerifier::open(&config).await.expect("reopen");
    v.warm_up().await;
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);
    let attempt: RedeemAttempt = serde_json::from_str(&journaled).expect("deserialize");
    let got = v
        .resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(got.amount, Amount::sat(64));
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 64);
    v.resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 64);
    assert_eq!(swaps(&mint), 1);
}

#[tokio::test]
async fn resolve_after_restart_of_an_attempt_never_sent() {
    // Crash between journaling the attempt and the swap: resolve completes it.
    let (mint, proxy) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("cashu.db"), [proxy.url().to_string()]).expect("config");
    let t = token(&proxy, 33, TokenFormat::V4).await;
    let journaled = {
        let v = CashuVerifier::open(&config).await.expect("open");
        serde_json::to_string(&v.prepare(&t).await.expect("prepare")).expect("serialize")
    };
    let v = CashuVerifier::open(&config).await.expect("reopen");
    let attempt: RedeemAttempt = serde_json::from_str(&journaled).expect("deserialize");
    let got = v
        .resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(got.amount, Amount::sat(33));
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 33);
    assert_eq!(swaps(&mint), 1);
}

#[tokio::test]
async fn token_spent_by_its_sender_resolves_to_nothing() {
    let (_mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let t = token(&proxy, 50, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    // The sender spends it himself first (another wallet receives it).
    let thief = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    assert_eq!(thief.redeem(&t).await.expect("sender spends it"), 50);
    assert_eq!(v.resolve(&t, &attempt).await.expect("resolve"), None);
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);
    // And a redeem of it says spent, nothing credited.
    let err = v.redeem(&t, &attempt).await.expect_err("spent");
    assert!(matches!(err, PaymentError::AlreadySpent), "{err:?}");
    assert_eq!(v.resolve(&t, &attempt).await.expect("resolve"), None);
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);
}

#[tokio::test]
async fn locked_and_duplicated_tokens_are_refused_offline() {
    let (mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let buyer = Buyer::new(&proxy.url(), Unit::Sat).await.expect("buyer");
    buyer.fund(100).await.expect("fund");
    let key = SecretKey::generate().public_key();
    let prepared = buyer
        .wallet()
        .prepare_send(
            10.into(),
            SendOptions {
                conditions: Some(SpendingConditions::new_p2pk(key, None)),
                ..Default::default()
            },
        )
        .await
        .expect("prepare p2pk send");
    let locked = CashuToken::new(prepared.confirm(None).await.expect("send").to_string());

    let plain = buyer.send(8, TokenFormat::V3).await.expect("send");
    let Token::TokenV3(mut v3) = Token::from_str(plain.expose()).expect("decode") else {
        panic!("V3 expected")
    };
    let first = v3.token[0].proofs[0].clone();
    v3.token[0].proofs.push(first);
    let doubled = CashuToken::new(Token::TokenV3(v3).to_string());

    mint.requests().clear();
    assert!(matches!(v.inspect(&locked), Err(PaymentError::Locked(_))));
    assert!(matches!(
        v.prepare(&locked).await,
        Err(PaymentError::Locked(_))
    ));
    assert!(matches!(
        v.inspect(&doubled),
        Err(PaymentError::DuplicateProofs)
    ));
    assert!(matches!(
        v.prepare(&doubled).await,
        Err(PaymentError::DuplicateProofs)
    ));
    assert_eq!(
        mint.requests().all(),
        Vec::<String>::new(),
        "no mint request"
    );
    // The locked proofs are still the buyer's to spend: nothing was redeemed.
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);
    assert!(
        v.check(&plain).await.expect("check").spendable,
        "the doubled token's proofs are untouched"
    );
}

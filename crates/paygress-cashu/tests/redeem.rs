//! Redeeming real tokens from an in-process cdk mint.

mod common;

use common::{balance, verifier_for};
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_core::money::{Amount, Unit};
use paygress_core::ports::{PaymentError, PaymentVerifier};

async fn receive_format(format: TokenFormat, prefix: &str) {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let token = mint.mint_token(21, format).await.expect("token");
    assert!(token.expose().starts_with(prefix));

    let info = v.inspect(&token).expect("inspect");
    assert_eq!(info.mint, mint.url());
    assert_eq!(info.amount, Amount::sat(21));

    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 0);
    let got = v.receive(&token).await.expect("redeem");
    assert_eq!(got.mint, mint.url());
    assert_eq!(got.amount, Amount::sat(21));
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 21);

    // A second token adds up.
    let token2 = mint.mint_token(5, format).await.expect("token");
    assert_eq!(
        v.receive(&token2).await.expect("redeem").amount,
        Amount::sat(5)
    );
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 26);
}

#[tokio::test]
async fn receives_cashu_a() {
    receive_format(TokenFormat::V3, "cashuA").await;
}

#[tokio::test]
async fn receives_cashu_b() {
    receive_format(TokenFormat::V4, "cashuB").await;
}

#[tokio::test]
async fn second_redeem_is_rejected_and_grants_nothing() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let token = mint.mint_token(8, TokenFormat::V4).await.expect("token");
    v.receive(&token).await.expect("first redeem");
    let err = v.receive(&token).await.expect_err("second redeem");
    assert!(matches!(err, PaymentError::AlreadySpent), "{err:?}");
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redeems_of_one_token_exactly_one_wins() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let (other, _dir2) = verifier_for(&mint).await;
    // Warm both wallets so the race is on the swap itself.
    v.receive(&mint.mint_token(1, TokenFormat::V4).await.expect("t"))
        .await
        .expect("warm");
    other
        .receive(&mint.mint_token(1, TokenFormat::V4).await.expect("t"))
        .await
        .expect("warm");

    for round in 0..3 {
        let token = mint.mint_token(16, TokenFormat::V4).await.expect("token");
        // Same verifier twice and a second service wallet, all at once.
        let (a, b, c) = tokio::join!(v.receive(&token), v.receive(&token), other.receive(&token));
        let results = [a, b, c];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, PaymentError::AlreadySpent),
                    "round {round}: {e:?}"
                );
            }
        }
    }
    let total =
        balance(&v, &mint.url(), Unit::Sat).await + balance(&other, &mint.url(), Unit::Sat).await;
    assert_eq!(total, 2 + 3 * 16);
}

#[tokio::test]
async fn steady_state_redeem_is_one_swap_request() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let first = mint.mint_token(4, TokenFormat::V4).await.expect("token");
    let second = mint.mint_token(4, TokenFormat::V3).await.expect("token");
    let third = mint.mint_token(4, TokenFormat::V4).await.expect("token");

    mint.requests().clear();
    v.receive(&first).await.expect("redeem");
    let cold = mint.requests().all();
    assert!(cold.contains(&"POST /v1/swap".to_owned()), "{cold:?}");

    for t in [&second, &third] {
        mint.requests().clear();
        v.receive(t).await.expect("redeem");
        assert_eq!(mint.requests().all(), vec!["POST /v1/swap".to_owned()]);
    }
}

#[tokio::test]
async fn unknown_keyset_triggers_one_refresh() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    v.receive(&mint.mint_token(2, TokenFormat::V4).await.expect("t"))
        .await
        .expect("warm");

    // The mint rotates to a new keyset; buyers' new tokens use it.
    mint.mint()
        .rotate_keyset(
            cdk::nuts::CurrencyUnit::Sat,
            (0..32).map(|i| 1u64 << i).collect(),
            0,
            true,
            None,
        )
        .await
        .expect("rotate");
    let token = mint.mint_token(8, TokenFormat::V4).await.expect("token");

    mint.requests().clear();
    assert_eq!(
        v.receive(&token).await.expect("redeem").amount,
        Amount::sat(8)
    );
    let reqs = mint.requests().all();
    assert!(
        reqs.iter().any(|r| r.starts_with("GET /v1/keysets")),
        "{reqs:?}"
    );
    assert_eq!(
        reqs.last().map(String::as_str),
        Some("POST /v1/swap"),
        "{reqs:?}"
    );

    // And then steady state again.
    let next = mint.mint_token(8, TokenFormat::V4).await.expect("token");
    mint.requests().clear();
    v.receive(&next).await.expect("redeem");
    assert_eq!(mint.requests().all(), vec!["POST /v1/swap".to_owned()]);
}

#[tokio::test]
async fn mint_down_then_back_same_token_redeems() {
    let mut mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    v.receive(&mint.mint_token(1, TokenFormat::V4).await.expect("t"))
        .await
        .expect("warm");
    let token = mint.mint_token(32, TokenFormat::V4).await.expect("token");

    mint.stop().await;
    let err = v.receive(&token).await.expect_err("mint is down");
    assert!(matches!(err, PaymentError::MintUnavailable(_)), "{err:?}");
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 1);
    let err = v.check(&token).await.expect_err("mint is down");
    assert!(matches!(err, PaymentError::MintUnavailable(_)), "{err:?}");

    mint.restart().await.expect("restart");
    assert!(v.check(&token).await.expect("check").spendable);
    assert_eq!(
        v.receive(&token).await.expect("redeem").amount,
        Amount::sat(32)
    );
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 33);
}

#[tokio::test]
async fn cold_wallet_with_mint_down_is_retryable() {
    let mut mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let token = mint.mint_token(3, TokenFormat::V3).await.expect("token");
    mint.stop().await;
    let err = v.receive(&token).await.expect_err("mint is down");
    assert!(matches!(err, PaymentError::MintUnavailable(_)), "{err:?}");
    mint.restart().await.expect("restart");
    assert_eq!(
        v.receive(&token).await.expect("redeem").amount,
        Amount::sat(3)
    );
}

#[tokio::test]
async fn issued_change_is_redeemable_by_a_fresh_wallet() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    v.receive(&mint.mint_token(100, TokenFormat::V4).await.expect("t"))
        .await
        .expect("redeem");

    let change = v.issue(&mint.url(), Amount::sat(37)).await.expect("issue");
    let info = v.inspect(&change).expect("inspect change");
    assert_eq!(info.amount, Amount::sat(37));
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 63);
    assert_eq!(
        mint.redeem_as_buyer(&change).await.expect("buyer redeems"),
        37
    );
    // Spent now: the service cannot take it back.
    assert!(!v.check(&change).await.expect("check").spendable);

    // More than the wallet holds: a clear issue error, balance untouched.
    let err = v
        .issue(&mint.url(), Amount::sat(1000))
        .await
        .expect_err("too much");
    assert!(matches!(err, PaymentError::Issue(_)), "{err:?}");
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 63);
}

#[tokio::test]
async fn check_reports_without_redeeming() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let token = mint.mint_token(12, TokenFormat::V4).await.expect("token");
    let c = v.check(&token).await.expect("check");
    assert_eq!(
        (c.mint.clone(), c.amount, c.spendable),
        (mint.url(), Amount::sat(12), true)
    );
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 0);
    // Checking did not spend it.
    assert_eq!(
        mint.redeem_as_buyer(&token).await.expect("still spendable"),
        12
    );
    assert!(!v.check(&token).await.expect("check").spendable);
}

#[tokio::test]
async fn warm_up_makes_the_first_redeem_one_request() {
    let mut mint = TestMint::start().await.expect("mint");
    let token = mint.mint_token(6, TokenFormat::V4).await.expect("token");

    // Mint down at startup: reported, not fatal.
    mint.stop().await;
    let (v, _dir) = verifier_for(&mint).await;
    let failures = v.warm_up().await;
    assert!(
        failures
            .iter()
            .any(|(m, u, _)| m == &mint.url() && *u == Unit::Sat),
        "{failures:?}"
    );

    mint.restart().await.expect("restart");
    let failures = v.warm_up().await;
    assert!(
        !failures.iter().any(|(_, u, _)| *u == Unit::Sat),
        "{failures:?}"
    );
    mint.requests().clear();
    assert_eq!(
        v.receive(&token).await.expect("redeem").amount,
        Amount::sat(6)
    );
    assert_eq!(mint.requests().all(), vec!["POST /v1/swap".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issues_do_not_share_proofs() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    v.receive(&mint.mint_token(100, TokenFormat::V4).await.expect("t"))
        .await
        .expect("redeem");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let v = v.clone();
        let url = mint.url();
        set.spawn(async move { v.issue(&url, Amount::sat(10)).await });
    }
    // Payments keep arriving meanwhile.
    let mut incoming = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let t = mint.mint_token(7, TokenFormat::V4).await.expect("t");
        let v = v.clone();
        incoming.spawn(async move { v.receive(&t).await });
    }
    let mut issued = Vec::new();
    while let Some(r) = set.join_next().await {
        issued.push(r.expect("join").expect("issue"));
    }
    while let Some(r) = incoming.join_next().await {
        assert_eq!(r.expect("join").expect("redeem").amount, Amount::sat(7));
    }
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 50 + 21);
    for t in &issued {
        assert_eq!(mint.redeem_as_buyer(t).await.expect("redeem change"), 10);
    }
}

/// The verifier contract core holds every verifier to, one test per check, against a
/// real in-process mint: a buyer's wallet pays, the service's cdk wallet redeems.
mod contract {
    use paygress_cashu::CashuVerifier;
    use paygress_cashu::testkit::{TestMint, TokenFormat};
    use paygress_core::contract::verifier::VerifierFixture;
    use paygress_core::{CashuToken, MintUrl, PaymentVerifier};

    struct CdkFixture {
        mint: TestMint,
        verifier: CashuVerifier,
    }

    #[async_trait::async_trait]
    impl VerifierFixture for CdkFixture {
        fn verifier(&self) -> &dyn PaymentVerifier {
            &self.verifier
        }
        fn mint(&self) -> MintUrl {
            self.mint.url()
        }
        async fn token(&self, sat: u64) -> CashuToken {
            self.mint
                .mint_token(sat, TokenFormat::V4)
                .await
                .expect("mint a token")
        }
        async fn cash(&self, token: &CashuToken) -> Option<u64> {
            self.mint.redeem_as_buyer(token).await.ok()
        }
    }

    async fn fresh(_check: u16) -> (CdkFixture, tempfile::TempDir) {
        let mint = TestMint::start().await.expect("mint");
        let (verifier, dir) = super::common::verifier_for(&mint).await;
        (CdkFixture { mint, verifier }, dir)
    }

    paygress_core::payment_verifier_tests!(fresh);
}

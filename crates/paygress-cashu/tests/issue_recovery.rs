//! Issuing a token (change, refund) while the mint is unreachable: cdk keeps the proofs
//! it reserved for the swap until its saga is recovered. The next issue, once the mint
//! is back, must recover them instead of failing for lack of funds until a restart.

mod common;

use common::{balance, verifier_for};
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_core::money::{Amount, Unit};
use paygress_core::ports::{PaymentError, PaymentVerifier};

#[tokio::test]
async fn an_issue_the_mint_never_answered_frees_its_funds_once_the_mint_is_back() {
    let mut mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    // 60 sat arrive as 32+16+8+4: 30 sat cannot be sent without a swap at the mint.
    v.receive(&mint.mint_token(60, TokenFormat::V4).await.expect("t"))
        .await
        .expect("redeem");

    mint.stop().await;
    let err = v
        .issue(&mint.url(), Amount::sat(30))
        .await
        .expect_err("the mint is down");
    assert!(matches!(err, PaymentError::Issue(_)), "{err:?}");

    mint.restart().await.expect("restart");
    let change = v
        .issue(&mint.url(), Amount::sat(30))
        .await
        .expect("issued once the mint is back");
    assert_eq!(
        mint.redeem_as_buyer(&change).await.expect("buyer redeems"),
        30
    );
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 30);
}

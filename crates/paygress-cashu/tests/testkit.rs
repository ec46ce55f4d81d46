//! The test kit itself: tokens it mints are exact and spendable, in both encodings.

mod common;

use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_core::money::{Amount, Unit};
use paygress_core::ports::PaymentVerifier;

#[tokio::test]
async fn buyer_tokens_are_exact_and_spendable() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = common::verifier_for(&mint).await;
    let buyer = mint.buyer().await.expect("buyer");
    buyer.fund(8 * 101).await.expect("fund");
    assert_eq!(buyer.balance().await.expect("balance"), 808);
    // Many sends force the buyer's wallet to swap for change in between.
    let mut tokens = Vec::new();
    for i in 0..40 {
        let format = if i % 2 == 0 {
            TokenFormat::V4
        } else {
            TokenFormat::V3
        };
        tokens.push(buyer.send(8, format).await.expect("send"));
    }
    for t in &tokens {
        let c = v.check(t).await.expect("check");
        assert_eq!((c.amount, c.spendable), (Amount::sat(8), true));
    }
    for t in &tokens {
        assert_eq!(v.receive(t).await.expect("redeem").amount, Amount::sat(8));
    }
    assert_eq!(common::balance(&v, &mint.url(), Unit::Sat).await, 320);
    assert_eq!(buyer.balance().await.expect("balance"), 808 - 320);
}

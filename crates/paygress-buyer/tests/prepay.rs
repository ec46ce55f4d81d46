//! Splitting a buyer's token into prepaid top-ups at a real (in-process) mint: the
//! pieces and the mint's fees never exceed the budget, and nothing is lost.
#![allow(clippy::unwrap_used)]

use paygress_buyer::{BuyerHome, prepay};
use paygress_cashu::testkit::{TestMint, TestMintOptions, TokenFormat};
use paygress_core::CashuToken;

fn read(path: &std::path::Path) -> CashuToken {
    CashuToken::new(std::fs::read_to_string(path).unwrap().trim())
}

#[tokio::test]
async fn pieces_fit_the_budget_and_the_rest_comes_back() {
    let mint = TestMint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = BuyerHome::new(dir.path());
    let token = mint.mint_token(50, TokenFormat::V4).await.unwrap();
    let prepaid = prepay(&home, &token, 7, 30).await.unwrap();
    // Four pieces of 7 fit in 30; a fifth would not.
    assert_eq!(prepaid.pieces.len(), 4);
    assert_eq!(prepaid.fees, 0);
    assert_eq!(prepaid.cost(), 28);
    for p in &prepaid.pieces {
        assert_eq!(p.value, 7);
        assert!(p.file.exists());
        assert_eq!(read(&p.file).expose(), p.token.expose());
    }
    let change = prepaid.change.as_deref().unwrap();
    assert_eq!(mint.redeem_as_buyer(&read(change)).await.unwrap(), 22);
    for p in &prepaid.pieces {
        assert_eq!(mint.redeem_as_buyer(&p.token).await.unwrap(), 7);
    }
}

#[tokio::test]
async fn the_mints_fees_count_against_the_budget() {
    // One sat per proof to swap or to redeem.
    let mint = TestMint::start_with(TestMintOptions {
        input_fee_ppk: 1000,
        ..TestMintOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = BuyerHome::new(dir.path());
    let token = mint.mint_token(200, TokenFormat::V4).await.unwrap();
    let budget = 40;
    let prepaid = prepay(&home, &token, 8, budget).await.unwrap();
    assert!(!prepaid.pieces.is_empty());
    assert!(prepaid.cost() <= budget, "{prepaid:?}");
    // ... and no further piece (at least 8 sat) would have fit.
    assert!(prepaid.cost() + 8 > budget, "{prepaid:?}");
    assert!(prepaid.fees > 0, "{prepaid:?}");
    // Each piece carries its own redeem fee: the service receives the price.
    for p in &prepaid.pieces {
        assert!(p.value > 8, "{p:?}");
    }
    let change = prepaid.change.as_deref().unwrap();
    let back = mint.redeem_as_buyer(&read(change)).await.unwrap();
    let mut pieces = 0;
    for p in &prepaid.pieces {
        pieces += mint.redeem_as_buyer(&p.token).await.unwrap();
    }
    assert!(pieces >= 8 * prepaid.pieces.len() as u64);
    // Everything the buyer had is in the pieces, the change, or the mint's fees.
    assert!(back + prepaid.cost() <= 200);
}

#[tokio::test]
async fn a_token_in_another_unit_is_refused_untouched() {
    let mint = TestMint::start_with(TestMintOptions {
        unit: paygress_core::Unit::Msat,
        ..TestMintOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = BuyerHome::new(dir.path());
    let token = mint.mint_token(5000, TokenFormat::V4).await.unwrap();
    assert!(prepay(&home, &token, 7, 30).await.is_err());
    assert_eq!(mint.redeem_as_buyer(&token).await.unwrap(), 5000);
}

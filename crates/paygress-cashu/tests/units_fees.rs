//! Units, keyset id versions, input fees and NUT-18 payment requests.

mod common;

use std::str::FromStr;

use common::{balance, verifier, verifier_for};
use paygress_cashu::cdk::nuts::{CurrencyUnit, PaymentRequest, Token};
use paygress_cashu::testkit::{TestMint, TestMintOptions, TokenFormat};
use paygress_core::money::{Amount, MintUrl, Unit};
use paygress_core::ports::PaymentVerifier;
use paygress_core::secret::CashuToken;

fn proof_count_and_ids(token: &CashuToken) -> (u64, Vec<String>) {
    let t = Token::from_str(token.expose()).expect("decode");
    let n = t.token_secrets().len() as u64;
    let ids = match &t {
        Token::TokenV3(v3) => v3
            .token
            .iter()
            .flat_map(|m| m.proofs.iter().map(|p| p.keyset_id.to_string()))
            .collect(),
        Token::TokenV4(v4) => v4.token.iter().map(|k| k.keyset_id.to_string()).collect(),
    };
    (n, ids)
}

#[tokio::test]
async fn msat_tokens() {
    let mint = TestMint::start_with(TestMintOptions {
        unit: Unit::Msat,
        ..Default::default()
    })
    .await
    .expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    for format in [TokenFormat::V3, TokenFormat::V4] {
        let token = mint.mint_token(1500, format).await.expect("token");
        assert_eq!(
            v.inspect(&token).expect("inspect").amount,
            Amount::msat(1500)
        );
        assert_eq!(
            v.receive(&token).await.expect("redeem").amount,
            Amount::msat(1500)
        );
    }
    assert_eq!(balance(&v, &mint.url(), Unit::Msat).await, 3000);
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 0);
    let change = v
        .issue(&mint.url(), Amount::msat(777))
        .await
        .expect("issue");
    assert_eq!(
        mint.redeem_as_buyer(&change).await.expect("redeem change"),
        777
    );
    assert_eq!(balance(&v, &mint.url(), Unit::Msat).await, 3000 - 777);
}

async fn keyset_version(v2: bool) {
    let mint = TestMint::start_with(TestMintOptions {
        keyset_v2: Some(v2),
        ..Default::default()
    })
    .await
    .expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    for format in [TokenFormat::V3, TokenFormat::V4] {
        let token = mint.mint_token(9, format).await.expect("token");
        let (_, ids) = proof_count_and_ids(&token);
        let want = if v2 { "01" } else { "00" };
        assert!(ids.iter().all(|id| id.starts_with(want)), "{ids:?}");
        if v2 {
            // V3 carries full v2 ids (01 + 64 hex); V4 the 8-byte short form.
            let len = if format == TokenFormat::V3 { 66 } else { 16 };
            assert!(ids.iter().all(|id| id.len() == len), "{format:?}: {ids:?}");
        }
        assert_eq!(
            v.receive(&token).await.expect("redeem").amount,
            Amount::sat(9)
        );
    }
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 18);
}

#[tokio::test]
async fn keyset_ids_v1() {
    keyset_version(false).await;
}

#[tokio::test]
async fn keyset_ids_v2() {
    keyset_version(true).await;
}

#[tokio::test]
async fn input_fees_are_the_payers() {
    let ppk = 400;
    let mint = TestMint::start_with(TestMintOptions {
        input_fee_ppk: ppk,
        ..Default::default()
    })
    .await
    .expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let mut expected_balance = 0;
    for (amount, format) in [
        (21, TokenFormat::V4),
        (7, TokenFormat::V3),
        (64, TokenFormat::V4),
    ] {
        let token = mint.mint_token(amount, format).await.expect("token");
        let (proofs, _) = proof_count_and_ids(&token);
        // NUT-02: fee = ceil(sum of input_fee_ppk / 1000).
        let fee = (proofs * ppk).div_ceil(1000);
        assert!(fee > 0);
        let info = v.inspect(&token).expect("inspect");
        assert_eq!(info.amount, Amount::sat(amount), "face value before fees");
        let got = v.receive(&token).await.expect("redeem");
        assert_eq!(got.amount, Amount::sat(amount - fee), "{proofs} proofs");
        expected_balance += amount - fee;
        assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, expected_balance);
    }
    // Change from a fee-charging mint: face value exact; the buyer pays the fee to redeem.
    let change = v.issue(&mint.url(), Amount::sat(10)).await.expect("issue");
    assert_eq!(v.inspect(&change).expect("inspect").amount, Amount::sat(10));
    let (proofs, _) = proof_count_and_ids(&change);
    let received = mint.redeem_as_buyer(&change).await.expect("buyer redeems");
    assert_eq!(received, 10 - (proofs * ppk).div_ceil(1000));
}

#[tokio::test]
async fn payment_request_is_nut18() {
    let (v, _dir) = verifier(&[
        MintUrl::new("https://mint.example"),
        MintUrl::new("http://127.0.0.1:3338"),
    ])
    .await;
    let encoded = v
        .payment_request(Amount::sat(250), "1h pod")
        .expect("request");
    assert!(encoded.starts_with("creqA"), "{encoded}");
    let req = PaymentRequest::from_str(&encoded).expect("decode");
    assert_eq!(req.amount.map(|a| a.to_u64()), Some(250));
    assert_eq!(req.unit, Some(CurrencyUnit::Sat));
    let mints: Vec<String> = req.mints.iter().map(|m| m.to_string()).collect();
    assert_eq!(mints, vec!["https://mint.example", "http://127.0.0.1:3338"]);
    assert_eq!(req.description.as_deref(), Some("1h pod"));

    let msat = PaymentRequest::from_str(&v.payment_request(Amount::msat(5), "").expect("request"))
        .expect("decode");
    assert_eq!(msat.unit, Some(CurrencyUnit::Msat));
}

//! NUT-24 over real HTTP with a real in-process Cashu mint and the real verifier.

#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use cdk::nuts::{CurrencyUnit, PaymentRequest};
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_core::CashuToken;
use serde_json::{Value, json};

mod common;

use common::real_mint::{Setup, setup};

impl Setup {
    async fn spawn(
        &self,
        token: Option<&CashuToken>,
        body: &Value,
    ) -> (u16, Option<String>, Value) {
        let mut req = self
            .client
            .post(format!("{}/spawn-pod", self.base))
            .json(body);
        if let Some(t) = token {
            req = req.header("X-Cashu", t.expose());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let creq = resp
            .headers()
            .get("x-cashu")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, creq, resp.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_402_with_a_real_cashu_b_token() {
    let s = setup(None).await;
    let body = json!({"duration_minutes": 30});

    let (status, creq, err) = s.spawn(None, &body).await;
    assert_eq!(status, 402, "{err}");
    let request = PaymentRequest::from_str(&creq.unwrap()).unwrap();
    assert_eq!(request.amount.map(|a| a.to_u64()), Some(30));
    assert_eq!(request.unit, Some(CurrencyUnit::Sat));
    let mints: Vec<String> = request.mints.iter().map(|m| m.to_string()).collect();
    assert_eq!(mints, vec![s.mint.url().to_string()]);

    let token = s.mint.mint_token(30, TokenFormat::V4).await.unwrap();
    assert!(token.expose().starts_with("cashuB"));
    let auth = s
        .client
        .get(format!("{}/auth?duration_minutes=30", s.base))
        .header("X-Cashu", token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), 200);
    let auth: Value = auth.json().await.unwrap();
    assert_eq!(auth["spendable"], true);
    assert_eq!(auth["covers_requested"], true);

    let (status, _, access) = s.spawn(Some(&token), &body).await;
    assert_eq!(status, 201, "{access}");
    assert_eq!(access["duration_seconds"], 1800);
    assert_eq!(s.backend.len(), 1);
    // Spent at the mint: the buyer cannot redeem it any more.
    assert!(s.mint.redeem_as_buyer(&token).await.is_err());

    // Overpaying returns change the buyer can redeem.
    let big = s.mint.mint_token(100, TokenFormat::V4).await.unwrap();
    let (status, _, access) = s.spawn(Some(&big), &body).await;
    assert_eq!(status, 201, "{access}");
    let change = CashuToken::new(access["change_token"].as_str().unwrap());
    assert_eq!(s.mint.redeem_as_buyer(&change).await.unwrap(), 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_real_tokens_are_400_and_stay_spendable() {
    let s = setup(None).await;
    let body = json!({"duration_minutes": 30});

    // Too small.
    let small = s.mint.mint_token(10, TokenFormat::V4).await.unwrap();
    let (status, _, err) = s.spawn(Some(&small), &body).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("insufficient_payment")),
        "{err}"
    );
    assert_eq!(s.mint.redeem_as_buyer(&small).await.unwrap(), 10);

    // From a mint that is not whitelisted: that mint is never contacted.
    let other = TestMint::start().await.unwrap();
    let foreign = other.mint_token(100, TokenFormat::V4).await.unwrap();
    other.requests().clear();
    let (status, _, err) = s.spawn(Some(&foreign), &body).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("mint_not_accepted")),
        "{err}"
    );
    assert!(
        other.requests().all().is_empty(),
        "{:?}",
        other.requests().all()
    );
    assert_eq!(other.redeem_as_buyer(&foreign).await.unwrap(), 100);
    assert!(s.backend.is_empty());
}

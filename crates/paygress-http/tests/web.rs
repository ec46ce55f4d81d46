//! The buyer's web page over real HTTP, with a real in-process Cashu mint, the real
//! verifier and core's in-memory backend: the page's NUT-18 payment requests are paid by
//! a cdk wallet (`pay_request` over the HTTP transport), pasted tokens pay too.

#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use cdk::nuts::{PaymentRequest, TransportType};
use paygress_cashu::testkit::{Buyer, TokenFormat};
use paygress_core::CashuToken;
use paygress_http::WebConfig;
use serde_json::{Value, json};

mod common;

use common::real_mint::{self, Setup};

/// The service, with the web page when `web`.
async fn setup(web: bool) -> Setup {
    real_mint::setup(web.then(|| WebConfig {
        npub: Some("npub1test".into()),
        host_key_fingerprint: Some("SHA256:abc".into()),
        ..WebConfig::default()
    }))
    .await
}

impl Setup {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn order(&self, minutes: u64) -> String {
        let (status, body) = self
            .post("/web/api/orders", &json!({"duration_minutes": minutes}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["secret"].as_str().unwrap().to_owned()
    }

    async fn view(&self, secret: &str) -> Value {
        let (status, body) = self
            .post("/web/api/lease", &json!({"secret": secret}))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn buyer(&self, sats: u64) -> Buyer {
        let buyer = Buyer::new(&self.mint.url(), self.mint.unit())
            .await
            .unwrap();
        buyer.fund(sats).await.unwrap();
        buyer
    }
}

async fn pay_request(buyer: &Buyer, request: &str) {
    let request = PaymentRequest::from_str(request).unwrap();
    buyer
        .wallet()
        .prepare_pay_request(request, None)
        .await
        .unwrap()
        .confirm()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_page_shows_the_terms() {
    let s = setup(true).await;
    let resp = s.client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = resp.text().await.unwrap();
    assert!(html.contains(s.mint.url().as_str()), "lists the mint");
    assert!(html.contains("60 sat/h"), "price per hour");
    assert!(html.contains("npub1test") && html.contains("SHA256:abc"));
    assert!(!html.contains("{{"), "every placeholder filled");
    for asset in ["app.js", "style.css", "xterm.js", "xterm.css"] {
        let r = s
            .client
            .get(format!("{}/web/assets/{asset}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_off_serves_no_page() {
    let s = setup(false).await;
    let resp = s.client.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let (status, _) = s
        .post("/web/api/orders", &json!({"duration_minutes": 5}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdk_wallet_pays_the_pages_nut18_request_and_the_page_shows_the_lease() {
    let s = setup(true).await;
    let secret = s.order(30).await;
    let view = s.view(&secret).await;
    assert_eq!(view["state"], "awaiting_payment");
    assert_eq!(view["order"]["amount"], 30);
    assert!(view["order"]["qr_svg"].as_str().unwrap().contains("<svg"));
    let creq = view["order"]["request"].as_str().unwrap();
    let parsed = PaymentRequest::from_str(creq).unwrap();
    let transport = &parsed.transports[0];
    assert_eq!(transport._type, TransportType::HttpPost);
    let id = parsed.payment_id.clone().unwrap();
    assert_eq!(transport.target, format!("{}/web/pay/{id}", s.base));
    assert!(!creq.contains(&secret) && !transport.target.contains(&secret));

    let buyer = s.buyer(100).await;
    pay_request(&buyer, creq).await;
    assert_eq!(buyer.wallet().total_balance().await.unwrap().to_u64(), 70);

    let view = s.view(&secret).await;
    assert_eq!(view["state"], "active", "{view}");
    assert!(view["order"].is_null());
    let access = &view["access"];
    assert!(
        access["ssh_command"]
            .as_str()
            .unwrap()
            .starts_with("ssh -p "),
        "{access}"
    );
    assert!(!access["password"].as_str().unwrap().is_empty());
    assert_eq!(s.backend.len(), 1);
    let first_expiry = jiff::Timestamp::from_str(view["expires_at"].as_str().unwrap()).unwrap();

    // The paid request's id no longer takes money.
    let again = s
        .client
        .post(&transport.target)
        .json(&json!({"id": id, "mint": s.mint.url().as_str(), "unit": "sat", "proofs": [{"amount": 1, "id": "009a1f293253e41e", "secret": "x", "C": "02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    // A top-up from the page, paid by the wallet: the page shows the later expiry.
    let (status, view) = s
        .post(
            "/web/api/top-up",
            &json!({"secret": secret, "duration_minutes": 10}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["top_up"]["amount"], 10);
    pay_request(&buyer, view["top_up"]["request"].as_str().unwrap()).await;
    let view = s.view(&secret).await;
    assert!(view["top_up"].is_null(), "{view}");
    let expiry = jiff::Timestamp::from_str(view["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expiry.duration_since(first_expiry).as_secs(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_token_pays_and_its_change_is_shown() {
    let s = setup(true).await;
    let secret = s.order(30).await;
    let token = s.mint.mint_token(45, TokenFormat::V4).await.unwrap();
    let (status, view) = s
        .post(
            "/web/api/pay",
            &json!({"secret": secret, "token": token.expose()}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "active");
    assert_eq!(view["tokens"][0]["kind"], "change");
    let change = CashuToken::new(view["tokens"][0]["token"].as_str().unwrap());
    assert_eq!(s.mint.redeem_as_buyer(&change).await.unwrap(), 15);
    assert_eq!(view["release_supported"], false);

    // A spent token is refused (as a top-up now) and the page says why.
    let spent = s
        .post(
            "/web/api/pay",
            &json!({"secret": secret, "token": token.expose()}),
        )
        .await;
    assert_eq!(spent.0, 409, "{}", spent.1);
    assert_eq!(
        s.view(&secret).await["error"]["code"],
        "token_already_spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_reachable_only_with_its_secret() {
    let s = setup(true).await;
    let secret = s.order(30).await;
    let token = s.mint.mint_token(30, TokenFormat::V4).await.unwrap();
    let (status, view) = s
        .post(
            "/web/api/pay",
            &json!({"secret": secret, "token": token.expose()}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let pod = view["access"]["pod_name"].as_str().unwrap().to_owned();
    for guess in [pod.as_str(), "", &secret[..secret.len() - 1]] {
        let (status, body) = s.post("/web/api/lease", &json!({"secret": guess})).await;
        assert_eq!(status, 404, "{guess:?}: {body}");
        assert!(body.get("access").is_none());
    }
    // Bad orders are refused before any payment request exists.
    let (status, body) = s
        .post("/web/api/orders", &json!({"duration_minutes": 0}))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = s
        .post(
            "/web/api/orders",
            &json!({"duration_minutes": 5, "ssh_username": "root"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

//! NUT-24 spawn: `402` with a payment request, then paying with a token.

use super::*;

#[tokio::test]
async fn spawn_402_then_pay_with_x_cashu_header_201() {
    let h = Harness::start().await;
    let request = json!({"duration_minutes": 30, "ssh_username": "alice"});
    let resp = h.post_json("/spawn-pod", &request).await;
    let creq = x_cashu(&resp).expect("402 carries X-Cashu");
    let (status, body) = json(resp).await;
    assert_eq!(status, 402);
    assert_eq!(body["code"], "insufficient_payment");
    // 60 sat/hour: 30 minutes cost 30 sat.
    assert!(creq.starts_with("creqAtest:30:sat:"), "{creq}");
    assert!(h.backend.is_empty());

    let token = h.token(30);
    let (status, body) = json(h.post_paid("/spawn-pod", &request, &token).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["ssh_username"], "alice");
    assert_eq!(body["duration_seconds"], 1800);
    assert!(body["ssh_password"].as_str().unwrap().len() >= 20);
    assert!(body.get("change_token").is_none());
    assert!(!h.verifier.is_unspent(&token));
    assert_eq!(h.verifier.inner.balance(&mint(), Unit::Sat), 30);
    assert_eq!(h.backend.len(), 1);
}

#[tokio::test]
async fn spawn_without_duration_asks_for_the_default_duration() {
    let h = Harness::start_with(Options {
        config: HttpConfig {
            default_duration_minutes: 90,
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    // An empty body is `{}`.
    let resp = h.client.post(h.url("/spawn-pod")).send().await.unwrap();
    let creq = x_cashu(&resp).unwrap();
    assert_eq!(resp.status(), 402);
    assert!(creq.starts_with("creqAtest:90:sat:"), "{creq}");
}

#[tokio::test]
async fn spawn_402_validates_tier_and_duration_first() {
    let h = Harness::start().await;
    let (status, body) = json(h.post_json("/spawn-pod", &json!({"tier": "gpu"})).await).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("unknown_tier")));
    let (status, body) = json(
        h.post_json("/spawn-pod", &json!({"duration_minutes": 100_000}))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("duration_out_of_range"))
    );
}

#[tokio::test]
async fn spawn_with_body_token_returns_change() {
    let h = Harness::start().await;
    let token = h.token(100);
    let (status, body) = json(
        h.post_json(
            "/spawn-pod",
            &json!({"cashu_token": token.expose(), "duration_minutes": 30}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let change = paygress_core::CashuToken::new(body["change_token"].as_str().unwrap());
    assert_eq!(h.verifier.spend(&change), Some(Amount::sat(70)));
}

#[tokio::test]
async fn unusable_tokens_are_400_and_not_redeemed() {
    let h = Harness::start().await;
    let request = json!({"duration_minutes": 30});
    let foreign = h
        .verifier
        .mint_token(&MintUrl::new(OTHER_MINT), Amount::sat(100));
    let msat = h.verifier.mint_token(&mint(), Amount::msat(100_000));
    let small = h.token(10);
    for (token, code) in [
        (&foreign, "mint_not_accepted"),
        (&msat, "unsupported_unit"),
        (&small, "insufficient_payment"),
    ] {
        let (status, body) = json(h.post_paid("/spawn-pod", &request, token).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], code);
        assert!(body.get("refund_token").is_none());
        assert!(h.verifier.is_unspent(token), "{code}: token was redeemed");
    }
    let (status, body) = json(
        h.post_paid(
            "/spawn-pod",
            &request,
            &paygress_core::CashuToken::new("cashuBgarbage"),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_token"))
    );
    assert!(h.backend.is_empty());
    assert_eq!(h.verifier.inner.balance(&mint(), Unit::Sat), 0);
}

#[tokio::test]
async fn verifier_without_payment_requests_still_answers_402() {
    // Core's MemoryVerifier keeps the port's default: no NUT-18 requests.
    let verifier = Arc::new(paygress_core::memory::MemoryVerifier::new(vec![mint()]));
    let paygress = Arc::new(
        paygress_core::Paygress::builder(
            paygress_core::ServiceConfig::default(),
            verifier.clone(),
            Arc::new(paygress_core::memory::MemoryBackend::new()),
        )
        .build(),
    );
    let api = paygress_http::HttpApi::new(paygress, verifier, HttpConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/spawn-pod", listener.local_addr().unwrap());
    tokio::spawn(api.serve(listener, std::future::pending()));
    let resp = reqwest::Client::new()
        .post(url)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(x_cashu(&resp).is_none());
    let (status, body) = json(resp).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (402, Some("insufficient_payment"))
    );
    assert!(
        body["message"].as_str().unwrap().contains("60 sat"),
        "{body}"
    );
}

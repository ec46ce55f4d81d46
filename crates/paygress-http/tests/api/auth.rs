//! `/auth`: checking a token without redeeming it.

use super::*;

#[tokio::test]
async fn auth_checks_without_redeeming() {
    let h = Harness::start().await;
    let token = h.token(45);
    let (status, body) = json(
        h.get(&format!(
            "/auth?token={}&duration_minutes=30",
            token.expose().replace(':', "%3A")
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"mint": common::MINT, "amount": 45, "unit": "sat", "spendable": true, "minutes": 45, "covers_requested": true})
    );
    // Token in the header instead of the URL.
    let resp = h
        .client
        .get(h.url("/auth?duration_minutes=60"))
        .header("X-Cashu", token.expose())
        .send()
        .await
        .unwrap();
    let (status, body) = json(resp).await;
    assert_eq!(status, 200);
    assert_eq!(body["covers_requested"], false);
    assert!(h.verifier.is_unspent(&token));
    assert_eq!(h.verifier.inner.balance(&mint(), Unit::Sat), 0);
}

#[tokio::test]
async fn post_auth_takes_the_token_in_the_body_or_x_cashu() {
    let h = Harness::start().await;
    let token = h.token(45);
    let expected = json!({"mint": common::MINT, "amount": 45, "unit": "sat", "spendable": true, "minutes": 45, "covers_requested": true});
    let (status, body) = json(
        h.post_json(
            "/auth",
            &json!({"token": token.expose(), "duration_minutes": 30}),
        )
        .await,
    )
    .await;
    assert_eq!((status, &body), (200, &expected), "{body}");
    let (status, body) = json(
        h.post_paid("/auth", &json!({"duration_minutes": 30}), &token)
            .await,
    )
    .await;
    assert_eq!((status, &body), (200, &expected), "{body}");
    assert!(h.verifier.is_unspent(&token));
    let (status, body) = json(h.post_json("/auth", &json!({})).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _) = json(h.post_json("/auth", &json!({"tokn": "x"})).await).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn auth_errors() {
    let h = Harness::start().await;
    let (status, body) = json(h.get("/auth").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = json(h.get("/auth?token=cashuBnope").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_token"))
    );
    let token = h.token(5);
    let (status, body) = json(
        h.get(&format!(
            "/auth?token={}&duration_minutes=abc",
            token.expose().replace(':', "%3A")
        ))
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let foreign = h
        .verifier
        .mint_token(&MintUrl::new(OTHER_MINT), Amount::sat(5));
    let (status, body) = json(
        h.get(&format!(
            "/auth?token={}",
            foreign.expose().replace(':', "%3A")
        ))
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("mint_not_accepted"))
    );
    h.verifier.spend(&token);
    let (status, body) = json(
        h.get(&format!(
            "/auth?token={}",
            token.expose().replace(':', "%3A")
        ))
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("token_already_spent"))
    );
}

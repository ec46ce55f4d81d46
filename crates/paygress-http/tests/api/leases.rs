//! Leases: listing, top-ups, and the money rule when provisioning or the mint fails.

use super::*;

#[tokio::test]
async fn pods_show_public_fields_only() {
    let h = Harness::start().await;
    let access = spawn(&h).await;
    let name = access["pod_name"].as_str().unwrap();
    let password = access["ssh_password"].as_str().unwrap();

    let resp = h.get("/pods").await;
    let text = resp.text().await.unwrap();
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let pod = &list[0];
    assert_eq!(pod["pod_name"], name);
    assert_eq!(pod["state"], "active");
    assert_eq!(pod["tier"], "standard");
    assert_eq!(pod["remaining_seconds"], 1800);
    assert_eq!(pod["node_port"], access["node_port"]);
    assert_eq!(pod["expires_at"], access["expires_at"]);
    let keys: Vec<&str> = pod
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");

    let (status, one) = json(h.get(&format!("/pods/{name}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(&one, pod);
    let one_text = one.to_string();
    for secret in [password, "alice", "ssh_password", "owner", "127.0.0.1"] {
        assert!(!text.contains(secret), "/pods leaks {secret}");
        assert!(!one_text.contains(secret), "/pods/{{name}} leaks {secret}");
    }
}

#[tokio::test]
async fn get_pod_errors() {
    let h = Harness::start().await;
    let (status, body) = json(h.get("/pods/ssh-pod-zzzzzzzz").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("pod_not_found")),
        "{body}"
    );
    let (status, body) = json(h.get("/pods/Not_A_Pod").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_pod_name"))
    );
    let (status, body) = json(h.get("/pods").await).await;
    assert_eq!((status, body), (200, json!([])));
}

#[tokio::test]
async fn top_up_402_then_pay_extends() {
    let h = Harness::start().await;
    let access = spawn(&h).await;
    let name = access["pod_name"].as_str().unwrap();
    let before: jiff::Timestamp = access["expires_at"].as_str().unwrap().parse().unwrap();

    let request = json!({"pod_name": name});
    let resp = h.post_json("/top-up-pod", &request).await;
    let creq = x_cashu(&resp).unwrap();
    let (status, body) = json(resp).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (402, Some("insufficient_payment"))
    );
    assert!(creq.starts_with("creqAtest:60:sat:"), "{creq}");

    let token = h.token(60);
    let (status, body) = json(h.post_paid("/top-up-pod", &request, &token).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pod_name"], name);
    assert_eq!(body["added_seconds"], 3600);
    let after: jiff::Timestamp = body["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(after.as_second() - before.as_second(), 3600);

    let (_, pod) = json(h.get(&format!("/pods/{name}")).await).await;
    assert_eq!(pod["expires_at"], body["expires_at"]);
    assert_eq!(pod["remaining_seconds"], 1800 + 3600);
}

#[tokio::test]
async fn top_up_failures_leave_the_token_unspent() {
    let h = Harness::start().await;
    let token = h.token(60);

    // Unknown lease: 404 both with and without a token.
    let missing = json!({"pod_name": "ssh-pod-zzzzzzzz"});
    let (status, body) = json(h.post_json("/top-up-pod", &missing).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("pod_not_found"))
    );
    let (status, body) = json(h.post_paid("/top-up-pod", &missing, &token).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("pod_not_found"))
    );

    // Invalid name.
    let (status, body) = json(
        h.post_paid("/top-up-pod", &json!({"pod_name": "../etc"}), &token)
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_pod_name"))
    );

    // Missing pod_name.
    let (status, body) = json(h.post_paid("/top-up-pod", &json!({}), &token).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_request"))
    );

    // Expired lease: 409.
    let access = spawn(&h).await;
    h.clock.advance(31 * 60);
    let expired = json!({"pod_name": access["pod_name"]});
    let (status, body) = json(h.post_json("/top-up-pod", &expired).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lease_expired"))
    );
    let (status, body) = json(h.post_paid("/top-up-pod", &expired, &token).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lease_expired")),
        "{body}"
    );
    let (_, pod) = json(
        h.get(&format!("/pods/{}", access["pod_name"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(pod["state"], "expired");

    assert!(h.verifier.is_unspent(&token));
}

#[tokio::test]
async fn provisioning_failure_is_503_with_a_refund() {
    let h = Harness::start().await;
    h.backend.fail_next(FailOn::Create);
    let token = h.token(30);
    let (status, body) = json(
        h.post_paid("/spawn-pod", &json!({"duration_minutes": 30}), &token)
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("provisioning_failed"))
    );
    let refund = paygress_core::CashuToken::new(body["refund_token"].as_str().unwrap());
    assert_eq!(h.verifier.spend(&refund), Some(Amount::sat(30)));
    assert!(h.backend.is_empty());
}

#[tokio::test]
async fn mint_down_is_503_and_not_redeemed() {
    let h = Harness::start().await;
    h.verifier.inner.set_mint_down(true);
    let token = h.token(30);
    let (status, body) = json(
        h.post_paid("/spawn-pod", &json!({"duration_minutes": 30}), &token)
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("mint_unavailable"))
    );
    assert!(h.verifier.is_unspent(&token));
}

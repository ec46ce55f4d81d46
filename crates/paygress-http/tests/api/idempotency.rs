//! Retries with the `Idempotency-Key` get the first answer; repeats without it get no
//! secret.

use super::*;

#[tokio::test]
async fn retry_with_the_idempotency_key_replays_the_first_answer() {
    let h = Harness::start().await;
    let token = h.token(100);
    let request = json!({"duration_minutes": 30});
    let (s1, first) = json(h.post_paid_keyed("/spawn-pod", &request, &token, KEY).await).await;
    let (s2, second) = json(h.post_paid_keyed("/spawn-pod", &request, &token, KEY).await).await;
    assert_eq!((s1, s2), (201, 201), "{first} {second}");
    assert_eq!(first, second);
    assert_eq!(h.backend.len(), 1);

    // A different Idempotency-Key is a different request: the token is spent.
    let (status, body) = json(
        h.post_paid_keyed("/spawn-pod", &request, &token, "another-key-0123456789")
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("token_already_spent"))
    );
    // The same key for a different request (another token or body) is refused.
    let (status, body) = json(
        h.post_paid_keyed("/spawn-pod", &request, &h.token(30), KEY)
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_request")),
        "{body}"
    );
    let (status, _) = json(
        h.post_paid_keyed("/spawn-pod", &json!({"duration_minutes": 31}), &token, KEY)
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(h.backend.len(), 1);
}

#[tokio::test]
async fn replay_without_the_original_idempotency_key_gets_no_credentials() {
    let h = Harness::start().await;
    let token = h.token(100);
    let request = json!({"duration_minutes": 30, "ssh_username": "alice"});
    let (status, first) = json(h.post_paid_keyed("/spawn-pod", &request, &token, KEY).await).await;
    assert_eq!(status, 201, "{first}");
    let password = first["ssh_password"].as_str().unwrap().to_owned();
    let change = first["change_token"].as_str().unwrap().to_owned();
    let pod = first["pod_name"].as_str().unwrap().to_owned();
    // Whoever knows the spent token (the mint, a proxy that logged the body) replays it.
    for replay in [
        h.post_paid("/spawn-pod", &request, &token).await,
        h.post_json(
            "/spawn-pod",
            &json!({"cashu_token": token.expose(), "duration_minutes": 30, "ssh_username": "alice"}),
        )
        .await,
    ] {
        let (status, body) = json(replay).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("token_already_spent")),
            "{body}"
        );
        assert!(!leaks(&body, &[&password, &change, &pod]), "{body}");
    }
    assert_eq!(h.backend.len(), 1);
}

#[tokio::test]
async fn keyless_repeat_is_answered_without_any_secret() {
    let h = Harness::start().await;
    let token = h.token(100);
    let request = json!({"duration_minutes": 30});
    let (status, first) = json(h.post_paid("/spawn-pod", &request, &token).await).await;
    assert_eq!(status, 201, "{first}");
    let password = first["ssh_password"].as_str().unwrap().to_owned();
    let change = first["change_token"].as_str().unwrap().to_owned();
    let (status, body) = json(h.post_paid("/spawn-pod", &request, &token).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("token_already_spent")),
        "{body}"
    );
    assert!(!leaks(&body, &[&password, &change]), "{body}");
    assert_eq!(h.backend.len(), 1);
    assert_eq!(h.verifier.inner.balance(&mint(), Unit::Sat), 30);
}

#[tokio::test]
async fn top_up_replay_without_the_key_gets_no_change() {
    let h = Harness::start().await;
    let pod = spawn(&h).await["pod_name"].as_str().unwrap().to_owned();
    // More than the longest lease can take: the rest comes back as change.
    let token = h.token(20_000);
    let body = json!({"pod_name": pod});
    let (status, first) = json(h.post_paid_keyed("/top-up-pod", &body, &token, KEY).await).await;
    assert_eq!(status, 200, "{first}");
    let change = first["change_token"].as_str().unwrap().to_owned();
    let (status, again) = json(h.post_paid_keyed("/top-up-pod", &body, &token, KEY).await).await;
    assert_eq!((status, &again), (200, &first));
    let (status, replay) = json(h.post_paid("/top-up-pod", &body, &token).await).await;
    assert_eq!(status, 409, "{replay}");
    assert!(!leaks(&replay, &[&change]), "{replay}");
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400_and_not_redeemed() {
    let h = Harness::start().await;
    let token = h.token(30);
    for bad in ["short", "with spaces in the key!", &"k".repeat(129)] {
        let (status, body) = json(
            h.post_paid_keyed("/spawn-pod", &json!({"duration_minutes": 30}), &token, bad)
                .await,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
    assert!(h.verifier.is_unspent(&token));
}

#[tokio::test]
async fn concurrent_keyless_duplicates_give_credentials_once() {
    let (backend, inner, gate) = GatedBackend::closed();
    let h = Arc::new(
        Harness::start_with(Options {
            backend: Some(backend),
            ..Options::default()
        })
        .await,
    );
    let token = h.token(30);
    let request = json!({"duration_minutes": 30});
    let first = {
        let (h, token, request) = (h.clone(), token.clone(), request.clone());
        tokio::spawn(async move { json(h.post_paid("/spawn-pod", &request, &token).await).await })
    };
    // Once the first holds the token (redeemed, waiting at the gate), send it again.
    while h.verifier.is_unspent(&token) {
        tokio::task::yield_now().await;
    }
    let (status, body) = json(h.post_paid("/spawn-pod", &request, &token).await).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.get("ssh_password").is_none(), "{body}");
    gate.add_permits(1);
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(inner.len(), 1);
}

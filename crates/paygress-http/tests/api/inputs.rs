//! Untrusted input: tokens, fields and bodies that are refused with typed errors, before
//! anything is redeemed.

use super::*;

#[tokio::test]
async fn strings_that_are_not_cashu_tokens_are_400_before_anything() {
    let h = Harness::start().await;
    let long = format!("cashuB{}", "A".repeat(paygress_http::MAX_TOKEN_CHARS));
    for bad in [
        "cashuC123",
        "cashuB",
        "hello",
        "cashuAab$cd",
        "cashuB abc",
        &long,
    ] {
        for path in ["/spawn-pod", "/auth"] {
            let field = if path == "/auth" {
                "token"
            } else {
                "cashu_token"
            };
            let (status, body) = json(h.post_json(path, &json!({ field: bad })).await).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some("invalid_token")),
                "{path} {bad:.20}: {body}"
            );
        }
    }
    assert!(h.backend.is_empty());
}

#[tokio::test]
async fn odd_inputs_never_answer_a_5xx() {
    let h = Harness::start().await;
    let token = h.token(30);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let post = |path: &str| h.client.post(h.url(path));
    let cases = vec![
        post("/spawn-pod").body(vec![0xff, 0xfe, 0x00]),
        post("/spawn-pod").body(deep.clone()),
        post("/auth").body(deep),
        post("/spawn-pod").json(&json!({"duration_minutes": u64::MAX})),
        post("/spawn-pod")
            .json(&json!({"duration_minutes": u64::MAX, "cashu_token": token.expose()})),
        post("/spawn-pod").json(&json!({"duration_minutes": -1})),
        post("/spawn-pod").body(r#"{"duration_minutes": 1e400}"#),
        post("/spawn-pod").json(&json!({"tier": "x".repeat(10_000), "ssh_username": "\u{0}"})),
        post("/spawn-pod")
            .json(&json!({"pod_image": "../../x", "ssh_public_key": "ssh-ed25519 \u{0}"})),
        post("/spawn-pod").header(
            "X-Cashu",
            reqwest::header::HeaderValue::from_bytes(b"cashuB\xff\xfe").unwrap(),
        ),
        post("/spawn-pod")
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(b"\xff\xfe0123456789abcdef").unwrap(),
            )
            .header("X-Cashu", token.expose()),
        post("/top-up-pod").json(&json!({"pod_name": "../../etc/passwd"})),
        post("/top-up-pod").json(&json!({"pod_name": "ssh-pod-zzzzzzzz"})),
        post("/top-up-pod").json(&json!({"pod_name": 7})),
        post("/auth").json(&json!({"token": "cashuBAAAA", "duration_minutes": u64::MAX})),
        h.client.get(h.url("/pods/%00")),
        h.client.get(h.url(&format!("/pods/{}", "a".repeat(5_000)))),
        h.client
            .get(h.url("/auth?token=cashuB%ff&duration_minutes=99999999999999999999999")),
        h.client
            .get(h.url("/auth?token=cashuBAAAA&duration_minutes=18446744073709551615")),
        h.client.delete(h.url("/pods")),
        h.client.get(h.url("/spawn-pod?x=%zz")),
    ];
    for (n, case) in cases.into_iter().enumerate() {
        let resp = case.send().await.unwrap();
        let status = resp.status().as_u16();
        let (_, body) = json(resp).await;
        assert!(status < 500 || status == 503, "case {n}: {status} {body}");
    }
    assert!(h.verifier.is_unspent(&token));
}

#[tokio::test]
async fn invalid_fields_are_422_and_not_redeemed() {
    let h = Harness::start().await;
    let token = h.token(30);
    let (status, body) = json(
        h.post_paid(
            "/spawn-pod",
            &json!({"duration_minutes": 30, "ssh_username": "root; rm -rf /"}),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_username"))
    );
    let (status, body) = json(
        h.post_paid(
            "/spawn-pod",
            &json!({"duration_minutes": 30, "pod_image": "evil/miner"}),
            &token,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("image_not_allowed"))
    );
    assert!(h.verifier.is_unspent(&token));
}

#[tokio::test]
async fn header_and_body_tokens_must_agree() {
    let h = Harness::start().await;
    let a = h.token(30);
    let b = h.token(30);
    let (status, body) = json(
        h.post_paid("/spawn-pod", &json!({"cashu_token": b.expose()}), &a)
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(h.verifier.is_unspent(&a) && h.verifier.is_unspent(&b));
}

#[tokio::test]
async fn garbage_bodies_are_rejected_with_typed_errors() {
    let h = Harness::start().await;
    let cases: [(&[u8], u16); 5] = [
        (b"{not json", 400),
        (b"\xff\xfe\x00garbage", 400),
        (b"[1,2,3]", 422),
        (b"{\"duration_minutes\":\"ten\"}", 422),
        (b"{\"cashu_token\":\"x\",\"extra\":1}", 422),
    ];
    for (bytes, expected) in cases {
        let resp = h
            .client
            .post(h.url("/spawn-pod"))
            .header("content-type", "application/json")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        let (status, body) = json(resp).await;
        assert_eq!(
            status,
            expected,
            "{}: {body}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(body["code"], "invalid_request");
    }
    // The server is still up.
    assert_eq!(h.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn huge_bodies_are_413() {
    let h = Harness::start().await;
    let huge = format!("{{\"ssh_public_key\":\"{}\"}}", "a".repeat(200 * 1024));
    for path in ["/spawn-pod", "/top-up-pod"] {
        let resp = h
            .client
            .post(h.url(path))
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        let (status, body) = json(resp).await;
        assert_eq!(status, 413, "{path}");
        assert_eq!(body["code"], "invalid_request");
    }
    // Chunked (no Content-Length) too.
    let stream = futures_stream(huge.into_bytes());
    let resp = h
        .client
        .post(h.url("/spawn-pod"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let (status, _) = json(resp).await;
    assert_eq!(status, 413);
    assert_eq!(h.get("/healthz").await.status(), 200);
}

fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(8 * 1024).map(|c| Ok(c.to_vec())).collect();
    futures::stream::iter(chunks)
}

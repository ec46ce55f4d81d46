//! The HTTP API over real HTTP on 127.0.0.1, with core's in-memory backend and a
//! verifier over core's in-memory ledger.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Harness, OTHER_MINT, Options, json, mint};
use paygress_core::memory::FailOn;
use paygress_core::{Amount, MintUrl, Unit};
use paygress_http::HttpConfig;
use paygress_http::wire::ComponentHealth;
use serde_json::json;

fn x_cashu(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("x-cashu")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Spawns a 30-minute lease paid with exactly 30 sat; returns its access details.
async fn spawn(h: &Harness) -> serde_json::Value {
    let token = h.token(30);
    let (status, body) = json(
        h.post_json("/spawn-pod", &json!({"cashu_token": token.expose(), "duration_minutes": 30, "ssh_username": "alice"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

// ---------------------------------------------------------------- health, offer, docs

#[tokio::test]
async fn healthz_reports_backend_and_transport() {
    let h = Harness::start().await;
    let (status, body) = json(h.get("/healthz").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], json!({"name": "memory", "up": true}));
    assert_eq!(body["transports"], json!([{"name": "http", "up": true}]));
}

#[tokio::test]
async fn healthz_is_503_when_a_transport_is_down() {
    let probe: paygress_http::TransportProbe = Arc::new(|| {
        vec![
            ComponentHealth {
                name: "http".into(),
                up: true,
            },
            ComponentHealth {
                name: "nostr".into(),
                up: false,
            },
        ]
    });
    let h = Harness::start_with(Options {
        probe: Some(probe),
        ..Options::default()
    })
    .await;
    let (status, body) = json(h.get("/healthz").await).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["transports"][1], json!({"name": "nostr", "up": false}));
}

#[tokio::test]
async fn offer_lists_terms() {
    let h = Harness::start().await;
    let (status, body) = json(h.get("/offer").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["mints"], json!([common::MINT]));
    assert_eq!(body["units"], json!(["sat"]));
    assert_eq!(body["rate_sats_per_hour"], 60);
    assert_eq!(body["backend"], "memory");
    assert_eq!(body["tiers"][0]["id"], "standard");
}

#[tokio::test]
async fn openapi_is_served() {
    let h = Harness::start().await;
    let (status, body) = json(h.get("/openapi.json").await).await;
    assert_eq!(status, 200);
    let expected: serde_json::Value =
        serde_json::from_str(&paygress_http::openapi_json_string().unwrap()).unwrap();
    assert_eq!(body, expected);
    for path in [
        "/healthz",
        "/spawn-pod",
        "/top-up-pod",
        "/pods",
        "/pods/{name}",
        "/auth",
        "/offer",
    ] {
        assert!(body["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(
        body["paths"]["/spawn-pod"]["post"]["responses"]["402"]["headers"]["X-Cashu"].is_object()
    );
}

#[tokio::test]
async fn unknown_path_and_wrong_method_get_typed_errors() {
    let h = Harness::start().await;
    let (status, body) = json(h.get("/nope").await).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "invalid_request");
    let (status, body) = json(h.get("/spawn-pod").await).await;
    assert_eq!(status, 405);
    assert_eq!(body["code"], "invalid_request");
}

// ---------------------------------------------------------------- NUT-24 spawn

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

const KEY: &str = "3f2b8c1e-7d4a-4e9b-a2c5-0b1d2e3f4a5b";

/// Whether a response body (as text) holds any of `secrets`.
fn leaks(body: &serde_json::Value, secrets: &[&str]) -> bool {
    let text = body.to_string();
    secrets.iter().any(|s| text.contains(s))
}

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

// ---------------------------------------------------------------- bad bodies

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

// ---------------------------------------------------------------- pods

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

// ---------------------------------------------------------------- top-up

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

// ---------------------------------------------------------------- money rule under failure

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

// ---------------------------------------------------------------- auth

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

// ---------------------------------------------------------------- limits, shutdown

#[tokio::test]
async fn rate_limit_is_429_per_ip_and_spares_healthz() {
    let h = Harness::start_with(Options {
        config: HttpConfig {
            rate_limit_per_minute: Some(3),
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(h.get("/offer").await.status(), 200);
    }
    let (status, body) = json(h.get("/offer").await).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    assert_eq!(h.get("/healthz").await.status(), 200);
}

async fn offer_from(h: &Harness, forwarded: &str) -> u16 {
    h.client
        .get(h.url("/offer"))
        .header("X-Forwarded-For", forwarded)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn rate_limit_is_on_by_default_and_ignores_x_forwarded_for_unless_trusted() {
    let h = Harness::start().await;
    let limit = paygress_http::DEFAULT_RATE_LIMIT_PER_MINUTE;
    // Spoofed X-Forwarded-For values do not buy a fresh budget.
    for n in 0..limit {
        assert_eq!(
            offer_from(&h, &format!("10.0.{}.{}", n / 256, n % 256)).await,
            200
        );
    }
    assert_eq!(offer_from(&h, "10.9.9.9").await, 429);
}

#[tokio::test]
async fn trusted_proxy_x_forwarded_for_names_the_client() {
    let h = Harness::start_with(Options {
        config: HttpConfig {
            rate_limit_per_minute: Some(2),
            trust_forwarded_for: true,
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    // The proxy appends the client it saw: the last entry counts.
    for _ in 0..2 {
        assert_eq!(offer_from(&h, "6.6.6.6, 198.51.100.1").await, 200);
    }
    assert_eq!(offer_from(&h, "7.7.7.7, 198.51.100.1").await, 429);
    assert_eq!(offer_from(&h, "198.51.100.1, 198.51.100.2").await, 200);
}

#[tokio::test]
async fn graceful_shutdown_stops_serving() {
    let mut h = Harness::start().await;
    assert_eq!(h.get("/healthz").await.status(), 200);
    h.shutdown().await.unwrap();
    let fresh = reqwest::Client::new();
    assert!(fresh.get(h.url("/healthz")).send().await.is_err());
}

// ---------------------------------------------------------------- timeout

/// A backend whose `create` waits until the test opens the gate.
struct GatedBackend {
    inner: paygress_core::memory::MemoryBackend,
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl paygress_core::PodBackend for GatedBackend {
    fn name(&self) -> &'static str {
        "gated"
    }
    async fn create(
        &self,
        spec: &paygress_core::LeaseSpec,
    ) -> Result<paygress_core::Provisioned, paygress_core::BackendError> {
        let _permit = self.gate.acquire().await.unwrap();
        self.inner.create(spec).await
    }
    async fn extend(
        &self,
        id: &paygress_core::LeaseId,
        e: &paygress_core::Extension,
    ) -> Result<(), paygress_core::BackendError> {
        self.inner.extend(id, e).await
    }
    async fn delete(&self, id: &paygress_core::LeaseId) -> Result<(), paygress_core::BackendError> {
        self.inner.delete(id).await
    }
    async fn get(
        &self,
        id: &paygress_core::LeaseId,
    ) -> Result<Option<paygress_core::LeaseRecord>, paygress_core::BackendError> {
        self.inner.get(id).await
    }
    async fn list(&self) -> Result<Vec<paygress_core::LeaseRecord>, paygress_core::BackendError> {
        self.inner.list().await
    }
}

#[tokio::test]
async fn timed_out_paid_request_finishes_and_a_retry_gets_its_answer() {
    let inner = paygress_core::memory::MemoryBackend::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let backend = Arc::new(GatedBackend {
        inner: inner.clone(),
        gate: gate.clone(),
    });
    let h = Harness::start_with(Options {
        config: HttpConfig {
            request_timeout: std::time::Duration::from_secs(1),
            ..HttpConfig::default()
        },
        backend: Some(backend),
        ..Options::default()
    })
    .await;
    let token = h.token(30);
    let request = json!({"duration_minutes": 30});
    let (status, body) = json(h.post_paid_keyed("/spawn-pod", &request, &token, KEY).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    // The payment was taken and the request is still running, not cancelled.
    assert!(!h.verifier.is_unspent(&token));
    assert!(inner.is_empty());

    gate.add_permits(1);
    let (status, body) = json(h.post_paid_keyed("/spawn-pod", &request, &token, KEY).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(inner.len(), 1);
    assert_eq!(h.verifier.inner.balance(&mint(), Unit::Sat), 30);
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_wait_and_time_out_unredeemed() {
    let inner = paygress_core::memory::MemoryBackend::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let backend = Arc::new(GatedBackend {
        inner: inner.clone(),
        gate: gate.clone(),
    });
    let h = Arc::new(
        Harness::start_with(Options {
            config: HttpConfig {
                request_timeout: std::time::Duration::from_secs(1),
                ..HttpConfig::default()
            },
            backend: Some(backend),
            service: paygress_core::ServiceConfig {
                max_concurrent_requests: 1,
                ..Default::default()
            },
            ..Options::default()
        })
        .await,
    );
    let request = json!({"duration_minutes": 30});
    let first = h.token(30);
    // The first request holds the only permit (its create waits at the gate) ...
    let (status, _) = json(h.post_paid_keyed("/spawn-pod", &request, &first, KEY).await).await;
    assert_eq!(status, 503);
    assert!(!h.verifier.is_unspent(&first));
    // ... so the second never reaches the service: its token is untouched.
    let second = h.token(30);
    let (status, body) = json(h.post_paid("/spawn-pod", &request, &second).await).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));
    assert!(h.verifier.is_unspent(&second));

    gate.add_permits(2);
    let (status, _) = json(h.post_paid("/spawn-pod", &request, &second).await).await;
    assert_eq!(status, 201);
    let (status, _) = json(h.post_paid_keyed("/spawn-pod", &request, &first, KEY).await).await;
    assert_eq!(status, 201);
    assert_eq!(inner.len(), 2);
}

#[tokio::test]
async fn concurrent_keyless_duplicates_give_credentials_once() {
    let inner = paygress_core::memory::MemoryBackend::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let backend = Arc::new(GatedBackend {
        inner: inner.clone(),
        gate: gate.clone(),
    });
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

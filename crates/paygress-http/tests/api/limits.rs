//! Rate limits, graceful shutdown, the request timeout and the concurrency limit.

use super::*;

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

#[tokio::test]
async fn timed_out_paid_request_finishes_and_a_retry_gets_its_answer() {
    let (backend, inner, gate) = GatedBackend::closed();
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
    let (backend, inner, gate) = GatedBackend::closed();
    let h = Arc::new(
        Harness::start_with(Options {
            config: HttpConfig {
                request_timeout: std::time::Duration::from_secs(1),
                ..HttpConfig::default()
            },
            backend: Some(backend),
            service: paygress_core::ServiceConfig::default().with_max_concurrent_requests(1),
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

//! Health, the offer, the OpenAPI document and unknown paths.

use super::*;

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

//! The buyer's HTTP client (feature `client`) against the real server on 127.0.0.1,
//! with core's in-memory ports.

#![cfg(feature = "client")]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Harness;
use paygress_core::{
    CashuToken, ErrorCode, LeaseState, Reply, Request, SpawnRequest, StatusRequest, TopUpRequest,
};
use paygress_http::client::HttpClient;

fn spawn(token: CashuToken) -> Request {
    Request::Spawn(
        SpawnRequest::new(token)
            .with_ssh_username("alice")
            .with_duration_minutes(30),
    )
}

#[tokio::test]
async fn spawn_top_up_and_status_read_back_as_core_replies() {
    let h = Harness::start().await;
    let client = HttpClient::new(&format!("{}/", h.base), Duration::from_secs(30)).unwrap();
    let Reply::AccessDetails(access) = client.send(&spawn(h.token(30))).await.unwrap() else {
        panic!("not access details")
    };
    assert_eq!(access.ssh_username, "alice");
    assert_eq!(access.duration_seconds, 30 * 60);
    let pod = access.pod_name.to_string();

    let top_up = Request::TopUp(TopUpRequest {
        pod_name: pod.clone(),
        cashu_token: h.token(10),
    });
    let Reply::TopUp(t) = client.send(&top_up).await.unwrap() else {
        panic!("not a top-up")
    };
    assert_eq!(t.added_seconds, 10 * 60);
    assert_eq!(t.pod_name, access.pod_name);

    let status = Request::Status(StatusRequest {
        pod_name: pod.clone(),
    });
    let Reply::Status(s) = client.send(&status).await.unwrap() else {
        panic!("not a status")
    };
    assert_eq!(s.pod_name, access.pod_name);
    assert_eq!(s.state, LeaseState::Active);
    assert_eq!(s.expires_at, t.expires_at);
}

#[tokio::test]
async fn error_answers_become_error_replies_with_their_code() {
    let h = Harness::start().await;
    let client = HttpClient::new(&h.base, Duration::from_secs(30)).unwrap();
    let token = h.token(30);
    assert!(matches!(
        client.send(&spawn(token.clone())).await.unwrap(),
        Reply::AccessDetails(_)
    ));
    let again = client.send(&spawn(token)).await.unwrap();
    assert_eq!(again.error_code(), Some(ErrorCode::TokenAlreadySpent));
    let missing = Request::Status(StatusRequest {
        pod_name: "ssh-pod-00000000".to_owned(),
    });
    let reply = client.send(&missing).await.unwrap();
    assert!(
        matches!(
            reply.error_code(),
            Some(ErrorCode::PodNotFound | ErrorCode::InvalidPodName)
        ),
        "{reply:?}"
    );
}

/// Answers each HTTP request on `listener` with the next of `answers` (status, JSON)
/// and returns the `Idempotency-Key` each request carried.
async fn answer_http(
    listener: tokio::net::TcpListener,
    answers: Vec<(u16, &'static str)>,
) -> Vec<Option<String>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut keys = Vec::new();
    for (status, body) in answers {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    keys.push(text[..end].lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("idempotency-key")
                            .then(|| value.trim().to_owned())
                    }));
                    break;
                }
            }
            assert!(n > 0, "connection closed mid-request");
        }
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
    }
    keys
}

#[tokio::test]
async fn paid_requests_carry_a_fresh_idempotency_key_kept_across_retries() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(answer_http(
        listener,
        vec![
            (503, r#"{"code":"unavailable","message":"timed out"}"#),
            (409, r#"{"code":"token_already_spent","message":"spent"}"#),
            (409, r#"{"code":"token_already_spent","message":"spent"}"#),
        ],
    ));
    let request = spawn(CashuToken::new("cashuBabc"));
    let client = HttpClient::new(&base, Duration::from_secs(30)).unwrap();
    let first = client.send(&request).await.unwrap();
    assert_eq!(first.error_code(), Some(ErrorCode::TokenAlreadySpent));
    let second = client.send(&request).await.unwrap();
    assert_eq!(second.error_code(), Some(ErrorCode::TokenAlreadySpent));
    let keys: Vec<String> = server
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0], keys[1], "a retry reuses its request's key");
    assert_ne!(keys[1], keys[2], "a new request gets a new key");
    assert!(
        keys.iter()
            .all(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
    );
}

#[tokio::test]
async fn only_the_spawns_key_releases_and_a_retry_returns_the_same_refund() {
    let h = Harness::start().await;
    let client = HttpClient::new(&h.base, Duration::from_secs(30)).unwrap();
    let owner_key = paygress_http::client::idempotency_key();
    let Reply::AccessDetails(access) = client
        .send_keyed(&spawn(h.token(30)), &owner_key, None)
        .await
        .unwrap()
    else {
        panic!("not access details")
    };
    let release = Request::Release(paygress_core::ReleaseRequest {
        pod_name: access.pod_name.to_string(),
    });

    // Someone else's key: refused, the lease keeps running.
    let other = paygress_http::client::idempotency_key();
    let stranger = client
        .send_keyed(&release, &other, Some(&other))
        .await
        .unwrap();
    assert_eq!(
        stranger.error_code(),
        Some(ErrorCode::NotOwner),
        "{stranger:?}"
    );
    // No owner key at all: 401.
    let raw = reqwest::Client::new()
        .post(format!(
            "{}{}",
            h.base,
            paygress_http::paths::release(access.pod_name.as_str())
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Ten of the thirty minutes used: twenty come back (60 sat an hour).
    h.clock.advance(600);
    let release_key = paygress_http::client::idempotency_key();
    let Reply::Released(released) = client
        .send_keyed(&release, &release_key, Some(&owner_key))
        .await
        .unwrap()
    else {
        panic!("not released")
    };
    assert_eq!(released.pod_name, access.pod_name);
    assert_eq!(released.refunded_seconds, 1200);
    assert_eq!(released.refund_amount, paygress_core::Amount::sat(20));
    assert!(released.refund_token.is_some());
    let status = client
        .send(&Request::Status(StatusRequest {
            pod_name: access.pod_name.to_string(),
        }))
        .await
        .unwrap();
    assert_eq!(status.error_code(), Some(ErrorCode::PodNotFound));

    // A retry of that release (same Idempotency-Key): the first answer, the same token.
    let Reply::Released(retry) = client
        .send_keyed(&release, &release_key, Some(&owner_key))
        .await
        .unwrap()
    else {
        panic!("not released")
    };
    assert_eq!(retry, released);
    // A new release: the lease is gone; no second token.
    let again = client
        .send_keyed(
            &release,
            &paygress_http::client::idempotency_key(),
            Some(&owner_key),
        )
        .await
        .unwrap();
    assert_eq!(
        again.error_code(),
        Some(ErrorCode::PodNotFound),
        "{again:?}"
    );
    assert!(again.returned_token().is_none());
}

//! End to end, with every real part: an in-process Nostr relay, an in-process Cashu mint
//! (fake Lightning), the service on the local backend, a buyer speaking encrypted Nostr
//! with real tokens, and the system `ssh` client logging in.
#![cfg(feature = "dev")]

use std::time::{Duration, Instant};

use paygress_cashu::testkit::TokenFormat;
use paygress_core::{
    DurationLimits, ErrorCode, Rate, Reply, ServiceConfig, SpawnRequest, StatusRequest,
    TopUpRequest,
};
use paygress_nostr::BuyerClient;
use paygress_nostr::nostr_sdk::Keys;
use paygress_testkit::demo::{ssh_command, ssh_run};
use paygress_testkit::dev::{DevOptions, DevStack};

fn args(ports: &str) -> DevOptions {
    DevOptions {
        data_dir: None,
        http_port: 0,
        port_range: ports.to_owned(),
        unsandboxed: false,
    }
}

/// One sat buys one second, leases from 5 s: the whole life of a lease fits in a test.
fn fast_terms() -> ServiceConfig {
    ServiceConfig::default()
        .with_name("e2e")
        .with_rate(Rate::from_sats_per_hour(3600).expect("non-zero"))
        .with_limits(DurationLimits {
            min_seconds: 5,
            max_seconds: 3600,
        })
        .with_ssh_host("127.0.0.1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_login_top_up_expire() {
    let stack = DevStack::start_with(&args("2400-2419"), fast_terms())
        .await
        .expect("dev stack starts");
    let buyer = BuyerClient::connect(Keys::generate(), &[stack.relay_url()], stack.service_key)
        .await
        .expect("buyer connects")
        .with_timeout(Duration::from_secs(30));

    // Pay 25 sat for 20 s: 5 sat change.
    let token = stack
        .mint
        .mint_token(25, TokenFormat::V4)
        .await
        .expect("mint");
    let reply = buyer
        .spawn(SpawnRequest::new(token).with_ssh_username("alice"))
        .await
        .expect("reply");
    let Reply::AccessDetails(access) = reply else {
        panic!("expected access details, got {reply:?}")
    };
    assert_eq!(access.duration_seconds, 25);
    assert!(
        access.change_token.is_none(),
        "no duration asked: all of it buys time"
    );

    // The reply's credentials log in with the system ssh client.
    let work = tempfile::tempdir().expect("tempdir");
    let out = ssh_run(&access, "echo hello-from-lease", work.path())
        .await
        .expect("ssh login works");
    assert_eq!(out.trim(), "hello-from-lease");

    // Keep a session open with a running process: expiry must end both.
    let mut session = ssh_command(&access, "sleep 1000", work.path())
        .expect("ssh command")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack.local.processes(&access.pod_name).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the session's process never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Top-up: 5 sat = 5 s more, counted from the current expiry.
    let token = stack
        .mint
        .mint_token(5, TokenFormat::V4)
        .await
        .expect("mint");
    let reply = buyer
        .top_up(TopUpRequest {
            pod_name: access.pod_name.to_string(),
            cashu_token: token,
        })
        .await
        .expect("reply");
    let Reply::TopUp(top) = reply else {
        panic!("expected a top-up result, got {reply:?}")
    };
    assert_eq!(top.added_seconds, 5);
    assert_eq!(
        top.expires_at.as_second(),
        access.expires_at.as_second() + 5,
        "extends from the current expiry"
    );

    // Status for the owner.
    let reply = buyer
        .status(StatusRequest {
            pod_name: access.pod_name.to_string(),
        })
        .await
        .expect("reply");
    assert!(
        matches!(reply, Reply::Status(ref s) if s.expires_at == top.expires_at),
        "{reply:?}"
    );

    // After expiry: login refused, no process of the lease left.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let gone = ssh_run(&access, "true", work.path()).await.is_err()
            && stack.local.processes(&access.pod_name).await.is_empty();
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lease still reachable long after expiry"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        jiff::Timestamp::now() >= top.expires_at,
        "not removed before its expiry"
    );
    let ended = tokio::time::timeout(Duration::from_secs(30), session.wait()).await;
    assert!(ended.is_ok(), "the open session was closed at expiry");

    // A top-up after expiry is refused and the token stays with the buyer.
    let token = stack
        .mint
        .mint_token(5, TokenFormat::V4)
        .await
        .expect("mint");
    let reply = buyer
        .top_up(TopUpRequest {
            pod_name: access.pod_name.to_string(),
            cashu_token: token.clone(),
        })
        .await
        .expect("reply");
    assert!(
        matches!(
            reply.error_code(),
            Some(ErrorCode::PodNotFound | ErrorCode::LeaseExpired)
        ),
        "{reply:?}"
    );
    assert_eq!(
        stack
            .mint
            .redeem_as_buyer(&token)
            .await
            .expect("still spendable"),
        5
    );

    buyer.shutdown().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_and_change_are_real_tokens() {
    let stack = DevStack::start_with(&args("2420-2439"), fast_terms())
        .await
        .expect("dev stack starts");
    let buyer = BuyerClient::connect(Keys::generate(), &[stack.relay_url()], stack.service_key)
        .await
        .expect("buyer connects")
        .with_timeout(Duration::from_secs(30));

    // Asking for 1 minute (60 sat) with 100 sat: 40 sat change, redeemable.
    let token = stack
        .mint
        .mint_token(100, TokenFormat::V4)
        .await
        .expect("mint");
    let reply = buyer
        .spawn(
            SpawnRequest::new(token)
                .with_ssh_username("bob")
                .with_duration_minutes(1),
        )
        .await
        .expect("reply");
    let Reply::AccessDetails(access) = reply else {
        panic!("{reply:?}")
    };
    let change = access.change_token.expect("change");
    assert_eq!(
        stack
            .mint
            .redeem_as_buyer(&change)
            .await
            .expect("change redeems"),
        40
    );

    // A token spent twice: the second request is refused, nothing granted.
    let token = stack
        .mint
        .mint_token(10, TokenFormat::V4)
        .await
        .expect("mint");
    let first = buyer
        .top_up(TopUpRequest {
            pod_name: access.pod_name.to_string(),
            cashu_token: token.clone(),
        })
        .await
        .expect("reply");
    assert!(matches!(first, Reply::TopUp(_)), "{first:?}");
    let second = buyer
        .top_up(TopUpRequest {
            pod_name: access.pod_name.to_string(),
            cashu_token: token,
        })
        .await
        .expect("reply");
    assert_eq!(second.error_code(), Some(ErrorCode::TokenAlreadySpent));

    buyer.shutdown().await;
    stack.shutdown().await;
}

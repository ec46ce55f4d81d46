//! `Paygress::serve` over a channel transport: every request gets its reply through its
//! own responder, and a slow mint for one request does not hold up another.

mod common;

use std::sync::Arc;

use common::*;
use futures::FutureExt;
use paygress_core::{ErrorCode, Reply, Request, StatusRequest};
use tokio::sync::Notify;

#[tokio::test]
async fn serve_publishes_the_offer_and_answers_each_request_until_the_transport_closes() {
    let fx = Fixture::new();
    let (transport, client) = ChannelTransport::new();
    let server = tokio::spawn(fx.service.clone().serve(transport.clone()));

    let token = fx.wallet.token(100);
    let spawned = access(
        client
            .send("1", spawn_req(&token, Some(60)))
            .await
            .await
            .expect("reply"),
    );
    assert_eq!(fx.wallet.spend(spawned.change_token.as_ref()), 40);

    let topped = topped_up(
        client
            .send("2", top_up_req(&spawned.pod_name, &fx.wallet.token(30)))
            .await
            .await
            .expect("reply"),
    );
    assert_eq!(topped.expires_at, at(HOUR + 1800));

    let status = Request::Status(StatusRequest {
        pod_name: spawned.pod_name.to_string(),
    });
    match client.send("3", status).await.await.expect("reply") {
        Reply::Status(s) => assert_eq!(s.remaining_seconds, HOUR + 1800),
        other => panic!("expected status, got {other:?}"),
    }

    // A duplicate through the transport is answered with the first reply.
    let again = client
        .send("1", spawn_req(&token, Some(60)))
        .await
        .await
        .expect("reply");
    assert_eq!(access(again).pod_name, spawned.pod_name);

    let bad = client
        .send("4", spawn_req(&fx.wallet.token(1), Some(60)))
        .await;
    assert_eq!(
        error(bad.await.expect("reply")).code,
        ErrorCode::InsufficientPayment
    );

    drop(client);
    server
        .await
        .expect("serve returns once the transport is closed");
    let offers = transport.offers();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].rate_sats_per_hour, 60);
    assert_eq!(offers[0].mints, vec![mint()]);
    assert_eq!(offers[0].backend, "memory");
    assert_eq!(fx.backend.len(), 1);
    assert_eq!(fx.wallet.balance(), 90);
}

#[tokio::test]
async fn a_slow_mint_for_one_request_does_not_block_another() {
    let fx = Fixture::new();
    let slow = fx.wallet.token(60);
    let fast = fx.wallet.token(60);

    // The slow token's redeem signals that it started, then waits to be released.
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, r, slow_text) = (started.clone(), release.clone(), slow.expose().to_owned());
    fx.wallet.before_redeem(move |token| {
        let gate = (token.expose() == slow_text).then(|| (s.clone(), r.clone()));
        async move {
            if let Some((started, release)) = gate {
                started.notify_one();
                release.notified().await;
            }
        }
        .boxed()
    });

    let (transport, client) = ChannelTransport::new();
    let server = tokio::spawn(fx.service.clone().serve(transport));

    let mut slow_reply = client.send("slow", spawn_req(&slow, Some(60))).await;
    started.notified().await;
    // The slow request is now inside the mint call. Another request completes.
    let fast_reply = client.send("fast", spawn_req(&fast, Some(60))).await;
    let fast_access = access(fast_reply.await.expect("reply"));
    assert!(fx.backend.spec(&fast_access.pod_name).is_some());
    assert!(
        slow_reply.try_recv().is_err(),
        "the slow request cannot have finished: its redeem is still held"
    );
    assert_eq!(fx.backend.len(), 1);

    release.notify_one();
    let slow_access = access(slow_reply.await.expect("reply"));
    assert_ne!(slow_access.pod_name, fast_access.pod_name);
    assert_eq!(fx.backend.len(), 2);

    drop(client);
    server.await.expect("serve ends");
}

#[tokio::test]
async fn a_slow_mint_does_not_block_handle_called_directly() {
    let fx = Fixture::new();
    let slow = fx.wallet.token(60);
    let fast = fx.wallet.token(60);
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, r, slow_text) = (started.clone(), release.clone(), slow.expose().to_owned());
    fx.wallet.before_redeem(move |token| {
        let gate = (token.expose() == slow_text).then(|| (s.clone(), r.clone()));
        async move {
            if let Some((started, release)) = gate {
                started.notify_one();
                release.notified().await;
            }
        }
        .boxed()
    });
    let service = fx.service.clone();
    let request = spawn_req(&slow, Some(60));
    let slow_task =
        tokio::spawn(async move { service.handle(&key("slow"), &buyer(), request).await });
    started.notified().await;
    access(fx.handle("fast", spawn_req(&fast, Some(60))).await);
    assert!(!slow_task.is_finished());
    release.notify_one();
    access(slow_task.await.expect("task"));
    assert_eq!(fx.wallet.balance(), 120);
}

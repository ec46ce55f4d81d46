//! Relay connections: the offer after start, starting without relays, reconnecting.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_is_retrievable_after_start() {
    let h = Harness::start(1).await;
    // serve() publishes the offer before taking requests: once one request is answered,
    // the offer is on the relay.
    let buyer = h.buyer().await;
    access(
        &buyer
            .request(&spawn_req(h.token(30)), SendOptions::default())
            .await
            .unwrap(),
    );
    let offers = fetch_offers(&h.urls(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(offers.len(), 1);
    let found = &offers[0];
    assert_eq!(found.service, h.keys.public_key());
    assert_eq!(found.identifier, "paygress");
    assert_eq!(found.offer.offer.rate_sats_per_hour, 60);
    assert_eq!(found.offer.offer.mints, vec![h.mint.clone()]);
    assert_eq!(found.offer.request_kinds.spawn, 1000);
    assert_eq!(found.offer.request_kinds.status, 1003);
    assert_eq!(found.offer.encryption, Scheme::ALL.to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_any_reachable_relay() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let url =
        paygress_nostr::nostr_sdk::RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
    let mut config =
        paygress_nostr::NostrConfig::from_values(None, url.as_str(), dir.path()).unwrap();
    config.connect_timeout = Duration::from_millis(200);
    let transport = paygress_nostr::NostrTransport::start(config).await.unwrap();
    let offer = paygress_core::Paygress::builder(
        paygress_core::ServiceConfig::default(),
        std::sync::Arc::new(paygress_core::memory::MemoryVerifier::new(vec![])),
        std::sync::Arc::new(paygress_core::memory::MemoryBackend::new()),
    )
    .build()
    .offer();
    use paygress_core::Transport;
    assert!(transport.publish_offer(&offer).await.is_err());
    transport.shutdown().await;
    assert!(transport.next().await.is_none());
    // The generated key was persisted for the next start.
    assert!(dir.path().join(paygress_nostr::config::KEY_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_to_a_relay_that_comes_up_after_start() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url =
        paygress_nostr::nostr_sdk::RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::generate();
    let backend = paygress_core::memory::MemoryBackend::new();
    let mint = paygress_core::MintUrl::new("http://127.0.0.1:3338");
    let verifier = paygress_core::memory::MemoryVerifier::new(vec![mint.clone()]);
    let (_transport, _serve) = common::start_service(
        &keys,
        std::slice::from_ref(&url),
        dir.path(),
        &backend,
        &verifier,
    )
    .await;
    // The service is up without its relay; now the relay starts.
    let _relay = paygress_nostr::testkit::TestRelay::start_on(port)
        .await
        .unwrap();
    let buyer = paygress_nostr::BuyerClient::connect(
        Keys::generate(),
        std::slice::from_ref(&url),
        keys.public_key(),
    )
    .await
    .unwrap()
    .with_timeout(Duration::from_secs(120));
    let token = verifier.mint_token(&mint, paygress_core::Amount::sat(30));
    let reply = buyer
        .request(&spawn_req(token), SendOptions::default())
        .await
        .unwrap();
    access(&reply);
    assert_eq!(backend.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_through_the_port_closes_the_relay_connection() {
    let relay = paygress_nostr::testkit::TestRelay::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config =
        paygress_nostr::NostrConfig::from_values(None, relay.url().as_str(), dir.path()).unwrap();
    let transport: paygress_core::DynTransport =
        std::sync::Arc::new(paygress_nostr::NostrTransport::start(config).await.unwrap());
    assert!(
        relay.wait_for_connections(1, Duration::from_secs(10)).await,
        "never: the transport connects"
    );
    transport.shutdown().await;
    assert!(
        relay.wait_for_connections(0, Duration::from_secs(10)).await,
        "never: the relay connection is closed"
    );
    assert!(transport.next().await.is_none(), "closed for requests");
    // A second call does nothing.
    transport.shutdown().await;
    assert_eq!(relay.connections(), 0);
}

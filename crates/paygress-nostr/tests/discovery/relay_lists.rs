//! Relay lists (NIP-65, NIP-17) used both ways: replies reach a buyer's inbox, requests
//! reach a service's read relays.

use super::*;

/// Publishes `keys`' relay lists (NIP-65 read relays `read`, NIP-17 inbox `inbox`) on `on`.
async fn publish_lists(keys: &Keys, on: &[RelayUrl], read: &[RelayUrl], inbox: &[RelayUrl]) {
    let client = client_on(on, None).await;
    let nip65 =
        EventBuilder::relay_list(read.iter().map(|u| (u.clone(), Some(RelayMetadata::Read))))
            .sign_with_keys(keys)
            .unwrap();
    let nip17 = inbox_relays_event(inbox).sign_with_keys(keys).unwrap();
    client.send_event(&nip65).await.unwrap();
    client.send_event(&nip17).await.unwrap();
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_a_buyer_who_reads_only_their_inbox_relay() {
    let h = Harness::start(1).await;
    let inbox = TestRelay::start().await.unwrap();
    let buyer_keys = Keys::generate();
    // The buyer's lists, on the service's relay where the service looks them up.
    publish_lists(&buyer_keys, &h.urls(), &[inbox.url()], &[inbox.url()]).await;
    let buyer = BuyerClient::connect_routed(
        buyer_keys.clone(),
        &[inbox.url()],
        &h.urls(),
        h.keys.public_key(),
    )
    .await
    .unwrap()
    .with_timeout(TIMEOUT);
    // NIP-17: the gift-wrapped reply goes to the buyer's kind 10050 relay.
    let nip17 = SendOptions {
        scheme: Scheme::Nip17,
        p_tag: true,
    };
    let reply = buyer.request(&spawn_req(h.token(30)), nip17).await.unwrap();
    let Reply::AccessDetails(access) = reply else {
        panic!("expected access details, got {reply:?}")
    };
    let wraps = fetch(
        &inbox.url(),
        Filter::new()
            .kind(Kind::GiftWrap)
            .pubkey(buyer_keys.public_key()),
    )
    .await;
    assert!(!wraps.is_empty());
    // NIP-44: the kind 1001 reply goes to the buyer's NIP-65 read relay.
    let reply = buyer
        .request(
            &status_req(&access.pod_name.to_string()),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Status(_)), "{reply:?}");
    buyer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_only_to_relays_from_the_service_relay_list_is_served() {
    // The buyer knows only the index relay; the service reads on another relay and
    // publishes its lists on both.
    let index = TestRelay::start().await.unwrap();
    let home = TestRelay::start().await.unwrap();
    let keys = Keys::generate();
    let mint = MintUrl::new("http://127.0.0.1:3338");
    let verifier = MemoryVerifier::new(vec![mint.clone()]);
    let backend = MemoryBackend::new();
    let dir = tempfile::tempdir().unwrap();
    let index_url = index.url();
    let (transport, _serve) =
        start_service_with(&keys, &[home.url()], dir.path(), &backend, &verifier, |c| {
            c.index_relays = vec![index_url]
        })
        .await;
    let service = keys.public_key();
    eventually("the service's relay list on the index relay", || async {
        !fetch(
            &index.url(),
            Filter::new().author(service).kind(Kind::RelayList),
        )
        .await
        .is_empty()
    })
    .await;

    let buyer_keys = Keys::generate();
    let (buyer, route) = reach(
        buyer_keys.clone(),
        &[index.url()],
        &ServiceRef {
            public_key: service,
            relays: vec![],
        },
        Scheme::Nip44,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(route.service_lists.read, vec![home.url()]);
    assert_eq!(route.write, vec![home.url()]);
    let buyer = buyer.with_timeout(TIMEOUT);
    let token = verifier.mint_token(&mint, Amount::sat(30));
    let reply = buyer
        .request(&spawn_req(token), SendOptions::default())
        .await
        .unwrap();
    assert!(matches!(reply, Reply::AccessDetails(_)), "{reply:?}");
    let mine = Filter::new()
        .author(buyer_keys.public_key())
        .kind(Kind::Custom(1000));
    assert_eq!(fetch(&home.url(), mine.clone()).await.len(), 1);
    assert!(
        fetch(&index.url(), mine).await.is_empty(),
        "the request went to the index relay too"
    );
    buyer.shutdown().await;
    transport.shutdown().await;
}

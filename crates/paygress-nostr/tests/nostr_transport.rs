//! Issue 3 acceptance: the Nostr transport against real in-process relays, a real core
//! service (in-memory backend and wallet) and a buyer built on nostr-sdk.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Harness, TIMEOUT};
use paygress_core::{ErrorCode, Reply, Request, SpawnRequest, StatusRequest, TopUpRequest};
use paygress_nostr::client::PreparedRequest;
use paygress_nostr::nostr_sdk::{Client, EventBuilder, Filter, Keys, Kind, Tag};
use paygress_nostr::wire::{self, KIND_REPLY, KIND_SPAWN, MAX_CONTENT_BYTES};
use paygress_nostr::{Scheme, SendOptions, fetch_offers};

fn spawn_req(token: paygress_core::CashuToken) -> Request {
    Request::Spawn(SpawnRequest {
        cashu_token: token,
        ssh_username: Some("alice".into()),
        pod_image: None,
        duration_minutes: Some(30),
        tier: None,
        ssh_public_key: None,
        password_login: None,
    })
}

fn access(reply: &Reply) -> &paygress_core::AccessDetails {
    match reply {
        Reply::AccessDetails(a) => a,
        other => panic!("expected access details, got {other:?}"),
    }
}

/// Fetches the kind 1001 events answering `id` with an independent client, as
/// `nak req -k 1001 -e <id>` would.
async fn replies_on(
    h: &Harness,
    id: paygress_nostr::nostr_sdk::EventId,
) -> Vec<paygress_nostr::nostr_sdk::Event> {
    let client = Client::default();
    for url in h.urls() {
        client.add_relay(url).await.unwrap();
    }
    client.connect().await;
    client.wait_for_connection(TIMEOUT).await;
    let filter = Filter::new().kind(Kind::Custom(KIND_REPLY)).event(id);
    let events = client.fetch_events(filter, TIMEOUT).await.unwrap();
    client.shutdown().await;
    events.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_without_p_tag_is_answered_by_e_filter_and_decrypts_with_service_key() {
    let h = Harness::start(1).await;
    let buyer_keys = Keys::generate();
    let buyer = h.buyer_as(buyer_keys.clone()).await;
    let opts = SendOptions {
        scheme: Scheme::Nip44,
        p_tag: false,
    };
    let prepared = buyer.prepare(&spawn_req(h.token(60)), opts).await.unwrap();
    assert_eq!(prepared.event.tags.public_keys().count(), 0);
    let reply = buyer.send_and_wait(&prepared).await.unwrap();
    let details = access(&reply);
    assert_eq!(details.ssh_username, "alice");
    assert_eq!(details.duration_seconds, 30 * 60);
    assert!(
        details.change_token.is_some(),
        "60 sat for 30 minutes leaves change"
    );
    let spec = h.backend.spec(&details.pod_name).unwrap();
    assert_eq!(
        spec.owner.as_str(),
        format!("nostr:{}", buyer.public_key().to_hex())
    );
    assert_eq!(spec.password.expose(), details.ssh_password.expose());

    // The seed's reader: kind 1001 by #e, signed by the service, NIP-44 from its npub.
    let found = replies_on(&h, prepared.event.id).await;
    assert_eq!(found.len(), 1);
    let event = &found[0];
    assert_eq!(event.pubkey, h.keys.public_key());
    assert!(event.verify().is_ok());
    assert!(event.tags.public_keys().any(|p| *p == buyer.public_key()));
    let (scheme, json) = wire::decrypt(
        buyer_keys.secret_key(),
        &h.keys.public_key(),
        &event.content,
    )
    .unwrap();
    assert_eq!(scheme, Scheme::Nip44);
    let raw: Reply = serde_json::from_str(&json).unwrap();
    assert_eq!(raw, reply);
    assert_eq!(h.transport.stats().delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p_tagged_spawn_then_top_up_and_status_get_typed_replies() {
    let h = Harness::start(1).await;
    let buyer = h.buyer().await;
    let reply = buyer
        .request(&spawn_req(h.token(30)), SendOptions::default())
        .await
        .unwrap();
    let lease = access(&reply).pod_name.clone();
    let before = access(&reply).expires_at;

    let top_up = buyer
        .top_up(TopUpRequest {
            pod_name: lease.to_string(),
            cashu_token: h.token(15),
        })
        .await
        .unwrap();
    let Reply::TopUp(t) = top_up else {
        panic!("expected top-up reply, got {top_up:?}")
    };
    assert_eq!(t.added_seconds, 15 * 60);
    assert!(t.expires_at > before);

    let status = buyer
        .status(StatusRequest {
            pod_name: lease.to_string(),
        })
        .await
        .unwrap();
    let Reply::Status(s) = status else {
        panic!("expected status, got {status:?}")
    };
    assert_eq!(s.expires_at, t.expires_at);

    // Errors get a reply too (the seed sent none): a spent token.
    let token = h.token(30);
    assert!(h.verifier.spend(&token).is_some());
    let err = buyer
        .top_up(TopUpRequest {
            pod_name: lease.to_string(),
            cashu_token: token,
        })
        .await
        .unwrap();
    assert_eq!(err.error_code(), Some(ErrorCode::TokenAlreadySpent));
    assert_eq!(h.backend.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nip04_request_gets_nip04_reply() {
    let h = Harness::start(1).await;
    let buyer_keys = Keys::generate();
    let buyer = h.buyer_as(buyer_keys.clone()).await;
    let opts = SendOptions {
        scheme: Scheme::Nip04,
        p_tag: false,
    };
    let prepared = buyer.prepare(&spawn_req(h.token(30)), opts).await.unwrap();
    assert!(prepared.event.content.contains("?iv="));
    let reply = buyer.send_and_wait(&prepared).await.unwrap();
    access(&reply);
    let found = replies_on(&h, prepared.event.id).await;
    assert_eq!(found.len(), 1);
    let (scheme, _) = wire::decrypt(
        buyer_keys.secret_key(),
        &h.keys.public_key(),
        &found[0].content,
    )
    .unwrap();
    assert_eq!(scheme, Scheme::Nip04);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nip17_gift_wrapped_request_gets_gift_wrapped_reply() {
    let h = Harness::start(1).await;
    let buyer = h.buyer().await;
    let opts = SendOptions {
        scheme: Scheme::Nip17,
        p_tag: true,
    };
    let prepared = buyer.prepare(&spawn_req(h.token(30)), opts).await.unwrap();
    assert_eq!(prepared.event.kind, Kind::GiftWrap);
    assert_ne!(
        prepared.event.pubkey,
        buyer.public_key(),
        "wrapped by a throwaway key"
    );
    let reply = buyer.send_and_wait(&prepared).await.unwrap();
    let details = access(&reply);
    // The lease belongs to the rumor's author, not the throwaway wrapper key.
    let spec = h.backend.spec(&details.pod_name).unwrap();
    assert_eq!(
        spec.owner.as_str(),
        format!("nostr:{}", buyer.public_key().to_hex())
    );
    // Status over NIP-17 by the same author works (ownership carried through).
    let status = buyer
        .request(
            &Request::Status(StatusRequest {
                pod_name: details.pod_name.to_string(),
            }),
            opts,
        )
        .await
        .unwrap();
    assert!(matches!(status, Reply::Status(_)), "{status:?}");
    // No plain kind 1001 was published for it.
    assert!(replies_on(&h, prepared.reply_key).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_event_on_two_relays_makes_one_lease() {
    let h = Harness::start(2).await;
    let buyer = h.buyer().await;
    let prepared = buyer
        .prepare(&spawn_req(h.token(30)), SendOptions::default())
        .await
        .unwrap();
    // BuyerClient publishes to every relay it is connected to: both.
    let reply = buyer.send_and_wait(&prepared).await.unwrap();
    access(&reply);
    // Publish the very same event again to both relays, then a fresh request; once the
    // fresh one is answered, the duplicate has been seen and skipped.
    buyer.publish(&prepared.event).await.unwrap();
    let second = buyer
        .request(&spawn_req(h.token(30)), SendOptions::default())
        .await
        .unwrap();
    access(&second);
    assert_eq!(h.backend.len(), 2);
    assert_eq!(h.transport.stats().delivered, 2);
    let replies = replies_on(&h, prepared.event.id).await;
    assert_eq!(replies.len(), 1, "one reply to the duplicated request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_does_not_reprocess_handled_requests() {
    let mut h = Harness::start(1).await;
    let buyer = h.buyer().await;
    let first = buyer
        .prepare(&spawn_req(h.token(30)), SendOptions::default())
        .await
        .unwrap();
    access(&buyer.send_and_wait(&first).await.unwrap());
    h.stop_service().await;

    // A new process: fresh core service and in-memory journal, same key and data dir.
    // The relay hands the stored request to the new subscription again.
    h.restart_service().await;
    let second = buyer
        .request(&spawn_req(h.token(30)), SendOptions::default())
        .await
        .unwrap();
    access(&second);
    // The relay sends stored events before live ones on one subscription, so by the
    // time a request published after the restart is answered, the old one was seen.
    let third = buyer
        .request(&spawn_req(h.token(30)), SendOptions::default())
        .await
        .unwrap();
    access(&third);
    let stats = h.transport.stats();
    assert_eq!(stats.delivered, 2, "{stats:?}");
    assert!(stats.duplicates >= 1, "{stats:?}");
    assert_eq!(h.backend.len(), 3);
    assert_eq!(replies_on(&h, first.event.id).await.len(), 1);
}

/// Publishes a hand-made kind 1000 event from `keys` and returns its id.
async fn publish_raw(
    buyer: &paygress_nostr::BuyerClient,
    keys: &Keys,
    content: String,
    tags: Vec<Tag>,
) -> PreparedRequest {
    let event = EventBuilder::new(Kind::Custom(KIND_SPAWN), content)
        .tags(tags)
        .sign_with_keys(keys)
        .unwrap();
    buyer.publish(&event).await.unwrap();
    PreparedRequest {
        reply_key: event.id,
        scheme: Scheme::Nip44,
        event,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_typed_errors_or_are_dropped_and_others_are_served() {
    let h = Harness::start(1).await;
    let keys = Keys::generate();
    let buyer = h.buyer_as(keys.clone()).await;
    let service = h.keys.public_key();
    let p = || vec![Tag::public_key(service)];
    let enc = |json: &str| wire::encrypt(Scheme::Nip44, keys.secret_key(), &service, json).unwrap();

    let mut rejected = Vec::new();
    // Oversized content (never decrypted).
    rejected.push(publish_raw(&buyer, &keys, "A".repeat(MAX_CONTENT_BYTES + 1024), p()).await);
    // Encrypted to somebody else, but p-tagged to us: undecryptable.
    let stranger = Keys::generate();
    let foreign = wire::encrypt(
        Scheme::Nip44,
        keys.secret_key(),
        &stranger.public_key(),
        "{}",
    )
    .unwrap();
    rejected.push(publish_raw(&buyer, &keys, foreign, p()).await);
    // Not JSON.
    rejected.push(publish_raw(&buyer, &keys, enc("cashu_token=abc"), p()).await);
    // Unknown field.
    rejected.push(
        publish_raw(
            &buyer,
            &keys,
            enc(r#"{"cashu_token":"x","duration_minute":5}"#),
            p(),
        )
        .await,
    );
    // Untagged garbage and a request for another service: silently ignored.
    publish_raw(&buyer, &keys, "garbage".into(), vec![]).await;
    let other = wire::encrypt(
        Scheme::Nip44,
        keys.secret_key(),
        &stranger.public_key(),
        "{}",
    )
    .unwrap();
    publish_raw(
        &buyer,
        &keys,
        other,
        vec![Tag::public_key(stranger.public_key())],
    )
    .await;

    for r in &rejected {
        let reply = buyer.wait_reply(r.reply_key, TIMEOUT).await.unwrap();
        assert_eq!(
            reply.error_code(),
            Some(ErrorCode::InvalidRequest),
            "{reply:?}"
        );
    }
    let ok = buyer
        .request(&spawn_req(h.token(30)), SendOptions::default())
        .await
        .unwrap();
    access(&ok);
    let stats = h.transport.stats();
    assert_eq!(stats.rejected, 4, "{stats:?}");
    assert_eq!(stats.ignored, 2, "{stats:?}");
    assert_eq!(stats.delivered, 1, "{stats:?}");
    assert_eq!(h.backend.len(), 1);
}

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
async fn the_owner_releases_over_nip44_and_nip17_and_nobody_else_can() {
    let h = Harness::start(1).await;
    let buyer = h.buyer().await;
    let release = |pod: &str| {
        Request::Release(paygress_core::ReleaseRequest {
            pod_name: pod.to_owned(),
        })
    };
    for scheme in [Scheme::Nip44, Scheme::Nip17] {
        let opts = SendOptions {
            scheme,
            p_tag: true,
        };
        let reply = buyer.request(&spawn_req(h.token(30)), opts).await.unwrap();
        let pod = access(&reply).pod_name.to_string();

        let stranger = h.buyer_as(Keys::generate()).await;
        let refused = stranger.request(&release(&pod), opts).await.unwrap();
        assert_eq!(
            refused.error_code(),
            Some(ErrorCode::NotOwner),
            "{scheme:?}: {refused:?}"
        );
        assert!(refused.returned_token().is_none());

        let reply = buyer.request(&release(&pod), opts).await.unwrap();
        let Reply::Released(released) = reply else {
            panic!("{scheme:?}: expected a release, got {reply:?}")
        };
        assert_eq!(released.pod_name.to_string(), pod);
        // 30 minutes bought, seconds used, 5 minutes' minimum charge (60 sat an hour).
        assert!(
            (24..=25).contains(&released.refund_amount.value),
            "{released:?}"
        );
        let token = released.refund_token.clone().unwrap();
        assert_eq!(h.verifier.spend(&token), Some(released.refund_amount));

        // Released twice: a clear error and no second token. (Sent over NIP-44: a
        // NIP-17 rumor with the same content in the same second is the same request,
        // answered once.)
        let again = buyer
            .request(&release(&pod), SendOptions::default())
            .await
            .unwrap();
        assert_eq!(
            again.error_code(),
            Some(ErrorCode::PodNotFound),
            "{scheme:?}: {again:?}"
        );
        assert!(again.returned_token().is_none());
    }
}

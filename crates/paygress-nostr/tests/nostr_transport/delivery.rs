//! Each request is handled once (across relays and restarts); malformed ones get typed
//! errors or are dropped.

use super::*;

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
    let replies = replies_on(&h.urls(), prepared.event.id).await;
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
    assert_eq!(replies_on(&h.urls(), first.event.id).await.len(), 1);
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

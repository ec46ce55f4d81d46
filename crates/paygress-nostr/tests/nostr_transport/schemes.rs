//! Requests in every scheme (NIP-44 with and without a `p` tag, NIP-04, NIP-17) get
//! replies in the same scheme.

use super::*;

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
    let found = replies_on(&h.urls(), prepared.event.id).await;
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
    let found = replies_on(&h.urls(), prepared.event.id).await;
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
    assert!(replies_on(&h.urls(), prepared.reply_key).await.is_empty());
}

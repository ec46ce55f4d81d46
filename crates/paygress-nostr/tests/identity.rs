//! Issue 12: nobody gets what is not theirs. A NIP-17 rumor's id is computed by the
//! service, never taken from the rumor, so a forged rumor cannot claim another buyer's
//! request id and be served that buyer's stored reply.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Harness, TIMEOUT, spawn_as, status_req};
use paygress_core::Reply;
use paygress_nostr::nostr_sdk::nips::nip59::UnwrappedGift;
use paygress_nostr::nostr_sdk::{Client, EventBuilder, Filter, Keys, Kind, Tag, TagKind};
use paygress_nostr::wire::KIND_SPAWN;
use paygress_nostr::{Scheme, SendOptions};

const NIP17: SendOptions = SendOptions {
    scheme: Scheme::Nip17,
    p_tag: true,
};

/// Every gift-wrapped message on the relays addressed to `keys`, decrypted.
async fn wrapped_messages_to(h: &Harness, keys: &Keys) -> Vec<String> {
    let client = Client::default();
    for url in h.urls() {
        client.add_relay(url).await.unwrap();
    }
    client.connect().await;
    client.wait_for_connection(TIMEOUT).await;
    let filter = Filter::new().kind(Kind::GiftWrap).pubkey(keys.public_key());
    let events = client.fetch_events(filter, TIMEOUT).await.unwrap();
    client.shutdown().await;
    let mut out = Vec::new();
    for e in events {
        if let Ok(UnwrappedGift { rumor, .. }) = UnwrappedGift::from_gift_wrap(keys, &e).await {
            out.push(rumor.content);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_rumor_with_a_served_request_id_gets_nothing() {
    // A dedup window of one id: the victim's request leaves it after one more request.
    let h = Harness::start_with(1, |c| c.dedup_capacity = 1).await;
    let victim = h.buyer().await;
    let prepared = victim
        .prepare(&spawn_as(h.token(60), Some("victim")), NIP17)
        .await
        .unwrap();
    let victim_id = prepared.reply_key;
    let Reply::AccessDetails(served) = victim.send_and_wait(&prepared).await.unwrap() else {
        panic!("victim not served");
    };
    let password = served.ssh_password.expose().to_owned();
    let pod = served.pod_name.to_string();
    // Push the victim's id out of the transport's dedup window.
    let other = h.buyer().await;
    other.request(&status_req(&pod), NIP17).await.unwrap();
    let before = h.transport.stats();

    // The attacker writes a rumor of their own whose `id` field claims the victim's id.
    let attacker_keys = Keys::generate();
    let attacker = h.buyer_as(attacker_keys.clone()).await;
    let json = paygress_nostr::wire::request_json(&spawn_as(h.token(60), Some("victim"))).unwrap();
    let mut rumor = EventBuilder::new(Kind::PrivateDirectMessage, json)
        .tags([
            Tag::public_key(h.keys.public_key()),
            Tag::custom(TagKind::k(), [KIND_SPAWN.to_string()]),
        ])
        .build(attacker_keys.public_key());
    rumor.id = Some(victim_id);
    let wrap = EventBuilder::gift_wrap(&attacker_keys, &h.keys.public_key(), rumor, [])
        .await
        .unwrap();
    attacker.publish(&wrap).await.unwrap();
    // The transport reads events in order: once a later request of the attacker is
    // answered, the forged one has been classified.
    let later = attacker.request(&status_req(&pod), NIP17).await.unwrap();
    assert!(later.error_code().is_some(), "{later:?}");

    let after = h.transport.stats();
    assert_eq!(
        after.delivered,
        before.delivered + 1,
        "the forged rumor reached the service: {after:?}"
    );
    assert_eq!(after.ignored, before.ignored + 1, "{after:?}");
    // Nothing answering the victim's id reached the attacker, and no message to the
    // attacker holds any part of the victim's reply.
    assert!(
        attacker
            .wait_reply(victim_id, Duration::ZERO)
            .await
            .is_err()
    );
    for text in wrapped_messages_to(&h, &attacker_keys).await {
        assert!(
            !text.contains(&password),
            "victim's password leaked: {text}"
        );
        assert!(
            !text.contains(&pod) || !text.contains("ssh_password"),
            "{text}"
        );
    }
    assert_eq!(h.backend.len(), 1, "no lease for the forged request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumor_without_an_id_is_keyed_by_its_computed_id() {
    let h = Harness::start(1).await;
    let keys = Keys::generate();
    let buyer = h.buyer_as(keys.clone()).await;
    let json = paygress_nostr::wire::request_json(&spawn_as(h.token(30), Some("victim"))).unwrap();
    let mut rumor = EventBuilder::new(Kind::PrivateDirectMessage, json)
        .tag(Tag::custom(TagKind::k(), [KIND_SPAWN.to_string()]))
        .build(keys.public_key());
    let expected = rumor.id();
    rumor.id = None;
    let wrap = EventBuilder::gift_wrap(&keys, &h.keys.public_key(), rumor, [])
        .await
        .unwrap();
    buyer.publish(&wrap).await.unwrap();
    let reply = buyer.wait_reply(expected, TIMEOUT).await.unwrap();
    assert!(matches!(reply, Reply::AccessDetails(_)), "{reply:?}");
}

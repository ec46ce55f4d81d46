use std::sync::{Arc, Mutex};
use std::time::Duration;

use nostr_sdk::nips::nip59::UnwrappedGift;
use nostr_sdk::{Client, Event, EventBuilder, EventId, Keys, Kind, Tag, TagKind};

use super::classify::Verdict;
use super::{Announce, Counters, Shared, reply_event};
use crate::config::HANDLED_FILE;
use crate::dedup::Dedup;
use crate::directory::RelayDirectory;
use crate::limits::Limiter;
use crate::wire::{self, KIND_REPLY, RequestKind, Scheme};

fn shared(dir: &std::path::Path, keys: &Keys) -> Shared {
    shared_with(dir, keys, 100)
}

fn shared_with(dir: &std::path::Path, keys: &Keys, dedup_capacity: usize) -> Shared {
    Shared {
        client: Client::default(),
        keys: keys.clone(),
        relays: vec![],
        dedup: Mutex::new(Dedup::open(&dir.join(HANDLED_FILE), dedup_capacity).unwrap()),
        backlog: Duration::from_secs(3600),
        offer: Mutex::new(None),
        offer_retry: tokio::sync::Notify::new(),
        counters: Counters::default(),
        limiter: Limiter::new(&crate::NostrLimits::default()),
        announce: Announce::default(),
        directory: Arc::new(RelayDirectory::new(
            Client::default(),
            vec![],
            Duration::from_secs(1),
            10,
        )),
    }
}

#[tokio::test]
async fn forged_foreign_and_duplicate_events_are_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let service = Keys::generate();
    let s = shared(dir.path(), &service);
    let buyer = Keys::generate();
    let json = r#"{"cashu_token":"fakecashu:1"}"#;
    let content = wire::encrypt(
        Scheme::Nip44,
        buyer.secret_key(),
        &service.public_key(),
        json,
    )
    .unwrap();
    let good = EventBuilder::new(RequestKind::Spawn.kind(), content.clone())
        .sign_with_keys(&buyer)
        .unwrap();
    // Same id and signature, different content: the signature no longer matches.
    let mut forged = good.clone();
    forged.content = wire::encrypt(
        Scheme::Nip44,
        buyer.secret_key(),
        &service.public_key(),
        r#"{"cashu_token":"fakecashu:2"}"#,
    )
    .unwrap();
    assert!(matches!(s.classify(&forged).await, Verdict::Ignore(_)));
    // p-tagged to someone else.
    let other = EventBuilder::new(RequestKind::Spawn.kind(), content)
        .tag(Tag::public_key(Keys::generate().public_key()))
        .sign_with_keys(&buyer)
        .unwrap();
    assert!(matches!(s.classify(&other).await, Verdict::Ignore(_)));
    // Delivered once, then a duplicate.
    assert!(matches!(
        s.classify(&good).await,
        Verdict::Deliver {
            scheme: Scheme::Nip44,
            ..
        }
    ));
    assert!(matches!(s.classify(&good).await, Verdict::Duplicate));
    // A gift wrap whose rumor claims another author than the seal signer is dropped.
    let mut rumor =
        EventBuilder::new(Kind::PrivateDirectMessage, json).build(Keys::generate().public_key());
    rumor.ensure_id();
    let wrap = EventBuilder::gift_wrap(&buyer, &service.public_key(), rumor, [])
        .await
        .unwrap();
    assert!(matches!(s.classify(&wrap).await, Verdict::Ignore(_)));
}

#[tokio::test]
async fn gift_wrap_key_is_the_computed_rumor_id_and_a_wrong_stated_id_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let service = Keys::generate();
    let s = shared(dir.path(), &service);
    let buyer = Keys::generate();
    let json = r#"{"pod_name":"pod-1"}"#;
    let rumor = || {
        EventBuilder::new(Kind::PrivateDirectMessage, json)
            .tag(Tag::custom(TagKind::k(), ["1003"]))
            .build(buyer.public_key())
    };
    let mut forged = rumor();
    forged.id = Some(EventId::from_byte_array([9; 32]));
    let wrap = EventBuilder::gift_wrap(&buyer, &service.public_key(), forged, [])
        .await
        .unwrap();
    assert!(matches!(
        s.classify(&wrap).await,
        Verdict::Ignore("rumor id does not match its content")
    ));
    let mut honest = rumor();
    let expected = honest.id();
    let wrap = EventBuilder::gift_wrap(&buyer, &service.public_key(), honest, [])
        .await
        .unwrap();
    match s.classify(&wrap).await {
        Verdict::Deliver { key, author, .. } => {
            assert_eq!((key, author), (expected, buyer.public_key()));
        }
        _ => panic!("honest rumor not delivered"),
    }
}

/// A p-tagged kind 1000 event from `keys` with `content` encrypted to `service`
/// (or left as is when `plain`).
fn request_event(keys: &Keys, service: &Keys, content: &str, encrypt: bool) -> Event {
    let content = if encrypt {
        wire::encrypt(
            Scheme::Nip44,
            keys.secret_key(),
            &service.public_key(),
            content,
        )
        .unwrap()
    } else {
        content.to_owned()
    };
    EventBuilder::new(RequestKind::Spawn.kind(), content)
        .tag(Tag::public_key(service.public_key()))
        .sign_with_keys(keys)
        .unwrap()
}

#[tokio::test]
async fn junk_never_enters_the_dedup_window() {
    let dir = tempfile::tempdir().unwrap();
    let service = Keys::generate();
    // A window of 16 ids, then 10 000 junk events.
    let s = shared_with(dir.path(), &service, 16);
    let buyer = Keys::generate();
    let good = request_event(&buyer, &service, r#"{"cashu_token":"fakecashu:1"}"#, true);
    assert!(matches!(s.classify(&good).await, Verdict::Deliver { .. }));
    let pool: Vec<Keys> = (0..100).map(|_| Keys::generate()).collect();
    let mut outcomes = [0usize; 3];
    for n in 0..10_000usize {
        let keys = &pool[n % pool.len()];
        let junk = match n % 4 {
            // Addressed to us and undecryptable.
            0 | 1 => request_event(keys, &service, &format!("junk {n}"), false),
            // Decryptable, not a request.
            2 => request_event(keys, &service, &format!("junk {n}"), true),
            // Not even JSON of the right shape.
            _ => request_event(keys, &service, &format!("{{\"n\":{n}}}"), true),
        };
        match s.classify(&junk).await {
            Verdict::Reject { .. } => outcomes[0] += 1,
            Verdict::Limited(_) => outcomes[1] += 1,
            Verdict::Ignore(_) | Verdict::Duplicate => outcomes[2] += 1,
            Verdict::Deliver { .. } => panic!("junk delivered"),
        }
    }
    // Within the per-sender bursts (100 senders × 30) most junk is rejected after
    // decryption: the path that must not claim ids.
    assert!(outcomes[0] >= 1_000, "{outcomes:?}");
    assert!(
        matches!(s.classify(&good).await, Verdict::Duplicate),
        "junk pushed a handled request out of the dedup window"
    );
}

#[tokio::test]
async fn reply_events_carry_e_and_p_tags_and_decrypt() {
    let service = Keys::generate();
    let buyer = Keys::generate();
    let request = EventId::from_byte_array([7; 32]);
    for scheme in [Scheme::Nip44, Scheme::Nip04] {
        let e = reply_event(&service, scheme, request, &buyer.public_key(), "{\"a\":1}")
            .await
            .unwrap();
        assert_eq!(e.kind, Kind::Custom(KIND_REPLY));
        assert_eq!(e.pubkey, service.public_key());
        assert_eq!(e.tags.event_ids().collect::<Vec<_>>(), vec![&request]);
        assert_eq!(
            e.tags.public_keys().collect::<Vec<_>>(),
            vec![&buyer.public_key()]
        );
        let (found, plain) =
            wire::decrypt(buyer.secret_key(), &service.public_key(), &e.content).unwrap();
        assert_eq!((found, plain.as_str()), (scheme, "{\"a\":1}"));
    }
    let wrap = reply_event(&service, Scheme::Nip17, request, &buyer.public_key(), "{}")
        .await
        .unwrap();
    let UnwrappedGift { sender, rumor } =
        UnwrappedGift::from_gift_wrap(&buyer, &wrap).await.unwrap();
    assert_eq!(sender, service.public_key());
    assert_eq!(rumor.tags.event_ids().collect::<Vec<_>>(), vec![&request]);
}

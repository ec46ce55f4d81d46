//! Offers as NIP-89/NIP-99 events with a NIP-40 expiration, and the legacy kind.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_found_by_handler_and_classified_filters_and_38383_is_off_by_default() {
    let h = Harness::start_with(1, |c| c.offer_location = Some("Lisbon".into())).await;
    offer_published(&h).await;
    let relay = &h.urls()[0];
    let service = h.keys.public_key();

    let handlers = fetch(
        relay,
        Filter::new()
            .kind(Kind::Custom(31990))
            .custom_tag(SingleLetterTag::lowercase(Alphabet::K), "1000"),
    )
    .await;
    assert_eq!(handlers.len(), 1);
    let handler = &handlers[0];
    assert_eq!(handler.pubkey, service);
    let ks: Vec<&str> = tag(handler, "k").iter().map(|t| t[1].as_str()).collect();
    assert_eq!(ks, ["1000", "1002", "1003", "1004"]);
    let offer: NostrOffer = serde_json::from_str(&handler.content).unwrap();
    assert_eq!(offer.offer.mints, vec![h.mint.clone()]);
    assert_eq!(offer.location.as_deref(), Some("Lisbon"));

    let listings = fetch(
        relay,
        Filter::new().kind(Kind::Custom(30402)).hashtag("paygress"),
    )
    .await;
    assert_eq!(listings.len(), 1);
    let listing = &listings[0];
    assert_eq!(
        tag(listing, "price"),
        vec![&["price", "60", "SAT", "hour", "standard"].map(String::from)[..]]
    );
    assert!(!tag(listing, "title").is_empty());
    assert!(!tag(listing, "summary").is_empty());
    assert_eq!(tag(listing, "location")[0][1], "Lisbon");
    for e in [handler, listing] {
        assert_eq!(e.tags.identifier(), Some("paygress"));
        let expires = *e
            .tags
            .expiration()
            .expect("offers carry a NIP-40 expiration");
        assert!(expires > Timestamp::now() + Duration::from_secs(3600));
    }
    assert!(
        fetch(relay, Filter::new().kind(Kind::Custom(38383)))
            .await
            .is_empty(),
        "kind 38383 belongs to NIP-69 trade orders: not published by default"
    );
    // The service's relay lists are out too.
    let lists = fetch(
        relay,
        Filter::new()
            .author(service)
            .kinds([Kind::RelayList, Kind::InboxRelays]),
    )
    .await;
    assert_eq!(lists.len(), 2);

    let found = fetch_offers(&h.urls(), TIMEOUT).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].service, service);
    assert_eq!(found[0].relays, h.urls());
    assert_ne!(found[0].kind, 38383);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_kind_is_kept_by_a_setting_and_read_with_the_new_ones() {
    let h = Harness::start_with(1, |c| c.legacy_offer = true).await;
    offer_published(&h).await;
    let relay = &h.urls()[0];
    let legacy = fetch(
        relay,
        Filter::new().kind(Kind::Custom(38383)).hashtag("paygress"),
    )
    .await;
    assert_eq!(legacy.len(), 1);
    assert!(legacy[0].tags.expiration().is_some());
    // An old service that only ever published 38383 (no expiration) is listed too.
    let old = Keys::generate();
    let mut offer = NostrOffer::new(offer_template("old", 30));
    offer.offer.name = "old".into();
    let event = EventBuilder::new(Kind::Custom(38383), serde_json::to_string(&offer).unwrap())
        .tags([
            paygress_nostr::nostr_sdk::Tag::identifier("old"),
            paygress_nostr::nostr_sdk::Tag::hashtag("paygress"),
        ])
        .sign_with_keys(&old)
        .unwrap();
    let client = client_on(&h.urls(), None).await;
    client.send_event(&event).await.unwrap();
    client.shutdown().await;
    let found = fetch_offers(&h.urls(), TIMEOUT).await.unwrap();
    let services: Vec<PublicKey> = found.iter().map(|o| o.service).collect();
    assert_eq!(found.len(), 2, "{services:?}");
    assert!(services.contains(&old.public_key()));
    assert!(services.contains(&h.keys.public_key()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_offers_are_ignored() {
    let h = Harness::start_with(1, |c| c.offer_ttl = Duration::from_secs(3 * 3600)).await;
    offer_published(&h).await;
    let now = Timestamp::now();
    let live = fetch_offers_at(&h.urls(), TIMEOUT, now).await.unwrap();
    assert_eq!(live.len(), 1);
    let expires = live[0].expires_at.unwrap();
    // The same events seen after their expiration (as a relay that does not enforce
    // NIP-40 would still serve them) are not offers any more.
    let later = fetch_offers_at(&h.urls(), TIMEOUT, expires + 1)
        .await
        .unwrap();
    assert!(later.is_empty(), "{later:?}");
    // A provider whose (hand-made) offer expires in a minute is listed now, not after.
    let short = Keys::generate();
    let client = client_on(&h.urls(), None).await;
    for b in offer_events(
        &NostrOffer::new(offer_template("short", 5)),
        &OfferMeta {
            identifier: "short".into(),
            expires_at: Some(now + 60),
            location: None,
            legacy: false,
        },
    )
    .unwrap()
    {
        client
            .send_event(&b.sign_with_keys(&short).unwrap())
            .await
            .unwrap();
    }
    client.shutdown().await;
    assert_eq!(
        fetch_offers_at(&h.urls(), TIMEOUT, now)
            .await
            .unwrap()
            .len(),
        2
    );
    let found = fetch_offers_at(&h.urls(), TIMEOUT, now + 61).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].service, h.keys.public_key());
}

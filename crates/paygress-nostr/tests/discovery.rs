//! Issue 15 acceptance: offers as NIP-89/NIP-99 events with NIP-40 expiration, relay
//! lists (NIP-65, NIP-17) used both ways, NIP-05 and nprofile service names, and a
//! market of providers, against real in-process relays and real core services.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, TIMEOUT, start_service_with};
use paygress_core::memory::{MemoryBackend, MemoryVerifier};
use paygress_core::{
    Amount, MintUrl, Offer, Paygress, Rate, Reply, Request, ServiceConfig, SpawnRequest,
    StatusRequest,
};
use paygress_nostr::directory::inbox_relays_event;
use paygress_nostr::market::{self, Reachability, SortBy, SurveyOptions};
use paygress_nostr::nostr_sdk::nips::nip65::RelayMetadata;
use paygress_nostr::nostr_sdk::{
    Alphabet, Client, Event, EventBuilder, Filter, Keys, Kind, PublicKey, RelayUrl,
    SingleLetterTag, TagKind, Timestamp,
};
use paygress_nostr::offer::{OfferMeta, offer_events};
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::wire::NostrOffer;
use paygress_nostr::{
    BuyerClient, NostrConfig, NostrTransport, Scheme, SendOptions, ServiceRef, fetch_offers,
    fetch_offers_at, reach, resolve_service,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Polls `check` until it holds (or fails the test after `TIMEOUT`).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never saw: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn client_on(relays: &[RelayUrl], keys: Option<&Keys>) -> Client {
    let client = match keys {
        Some(k) => Client::builder().signer(k.clone()).build(),
        None => Client::default(),
    };
    for url in relays {
        client.add_relay(url.clone()).await.unwrap();
    }
    client.connect().await;
    client.wait_for_connection(TIMEOUT).await;
    client
}

async fn fetch(relay: &RelayUrl, filter: Filter) -> Vec<Event> {
    let client = client_on(std::slice::from_ref(relay), None).await;
    let events = client.fetch_events(filter, TIMEOUT).await.unwrap();
    client.shutdown().await;
    events.into_iter().collect()
}

fn status(pod: &str) -> Request {
    Request::Status(StatusRequest {
        pod_name: pod.into(),
    })
}

fn spawn(token: paygress_core::CashuToken) -> Request {
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

fn tag<'a>(e: &'a Event, name: &str) -> Vec<&'a [String]> {
    e.tags
        .iter()
        .filter(|t| t.kind() == TagKind::custom(name) || t.kind().to_string() == name)
        .map(|t| t.as_slice())
        .collect()
}

/// Waits until the harness service has published its offer (serve() publishes it
/// before taking requests, so an answered request proves it).
async fn offer_published(h: &Harness) {
    let buyer = h.buyer().await;
    buyer
        .request(&status("ssh-pod-00000000"), SendOptions::default())
        .await
        .unwrap();
    buyer.shutdown().await;
}

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
    let reply = buyer.request(&spawn(h.token(30)), nip17).await.unwrap();
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
            &status(&access.pod_name.to_string()),
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
        .request(&spawn(token), SendOptions::default())
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

fn offer_template(name: &str, sat_per_hour: u64) -> Offer {
    Offer {
        name: name.into(),
        version: "0.1.0".into(),
        rate_sats_per_hour: sat_per_hour,
        rate_msat_per_hour: sat_per_hour * 1000,
        tiers: vec![],
        min_duration_minutes: 1,
        max_duration_minutes: 60,
        mints: vec![MintUrl::new("http://127.0.0.1:3338")],
        units: vec![paygress_core::Unit::Sat],
        ssh_host: "127.0.0.1".into(),
        backend: "memory".into(),
        images: vec!["img".into()],
        locking_key: None,
    }
}

struct Provider {
    keys: Keys,
    transport: Arc<NostrTransport>,
    _serve: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn provider(relays: &[RelayUrl], name: &str, sat_per_hour: u64, mint: &MintUrl) -> Provider {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let config = ServiceConfig {
        name: name.into(),
        rate: Rate::from_sats_per_hour(sat_per_hour).unwrap(),
        ..ServiceConfig::default()
    };
    let service = Arc::new(
        Paygress::builder(
            config,
            Arc::new(MemoryVerifier::new(vec![mint.clone()])),
            Arc::new(MemoryBackend::new()),
        )
        .build(),
    );
    let transport = Arc::new(
        NostrTransport::start(NostrConfig::new(keys.clone(), relays.to_vec(), dir.path()))
            .await
            .unwrap(),
    );
    let serve = tokio::spawn(service.serve(transport.clone()));
    Provider {
        keys,
        transport,
        _serve: serve,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cheapest_live_provider_accepting_the_buyers_mint_is_chosen() {
    let relay = TestRelay::start().await.unwrap();
    let urls = vec![relay.url()];
    let mine = MintUrl::new("http://127.0.0.1:3338");
    let other = MintUrl::new("http://127.0.0.1:4444");
    let dear = provider(&urls, "dear", 100, &mine).await;
    let foreign = provider(&urls, "foreign", 50, &other).await;
    let fair = provider(&urls, "fair", 70, &mine).await;
    // Cheapest of all, but nobody answers for it.
    let ghost = Keys::generate();
    let client = client_on(&urls, None).await;
    for b in offer_events(
        &NostrOffer::new(offer_template("ghost", 10)),
        &OfferMeta {
            identifier: "ghost".into(),
            expires_at: Some(Timestamp::now() + 3600),
            location: None,
            legacy: false,
        },
    )
    .unwrap()
    {
        client
            .send_event(&b.sign_with_keys(&ghost).unwrap())
            .await
            .unwrap();
    }
    client.shutdown().await;
    eventually("four offers", || async {
        fetch_offers(&urls, TIMEOUT).await.unwrap().len() == 4
    })
    .await;

    let opts = SurveyOptions {
        timeout: Duration::from_secs(5),
        ..SurveyOptions::default()
    };
    let mut listings = market::survey(&urls, &opts).await.unwrap();
    assert_eq!(listings.len(), 4);
    let by_key = |k: &Keys| {
        listings
            .iter()
            .find(|l| l.offer.service == k.public_key())
            .unwrap()
            .clone()
    };
    assert_eq!(by_key(&ghost).reachability, Reachability::NoAnswer);
    for p in [&dear, &foreign, &fair] {
        assert!(
            matches!(by_key(&p.keys).reachability, Reachability::Answered { .. }),
            "{:?}",
            by_key(&p.keys)
        );
    }
    let chosen = market::cheapest(&listings, None, None, std::slice::from_ref(&mine)).unwrap();
    assert_eq!(chosen.offer.service, fair.keys.public_key());
    let chosen = market::cheapest(
        &listings,
        Some("standard"),
        Some(70_000),
        std::slice::from_ref(&mine),
    );
    assert_eq!(chosen.unwrap().offer.service, fair.keys.public_key());
    assert!(market::cheapest(&listings, None, Some(69_000), std::slice::from_ref(&mine)).is_none());
    assert!(market::cheapest(&listings, Some("gpu"), None, std::slice::from_ref(&mine)).is_none());
    let any = market::cheapest(&listings, None, None, &[]).unwrap();
    assert_eq!(any.offer.service, foreign.keys.public_key());

    market::sort(&mut listings, SortBy::Price, None);
    let names: Vec<&str> = listings
        .iter()
        .map(|l| l.offer.offer.offer.name.as_str())
        .collect();
    assert_eq!(names, ["ghost", "foreign", "fair", "dear"]);
    market::sort(&mut listings, SortBy::Latency, None);
    assert_eq!(listings[3].offer.service, ghost.public_key());
    for p in [dear, foreign, fair] {
        p.transport.shutdown().await;
    }
}

/// Serves `body` with `status` to every request on 127.0.0.1 (one connection at a time).
async fn http_server(status: &'static str, body: String) -> (u16, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nip05_names_and_nprofiles_resolve_to_the_service_and_its_relays() {
    let h = Harness::start(1).await;
    let service = h.keys.public_key().to_hex();
    let relay = h.urls()[0].to_string();
    let body =
        format!(r#"{{"names":{{"compute":"{service}"}},"relays":{{"{service}":["{relay}"]}}}}"#);
    let (port, server) = http_server("200 OK", body).await;
    let found = resolve_service(&format!("compute@127.0.0.1:{port}"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(found.public_key, h.keys.public_key());
    assert_eq!(found.relays, h.urls());
    // Unknown name: an error, not some other key.
    assert!(
        resolve_service(&format!("nobody@127.0.0.1:{port}"), TIMEOUT)
            .await
            .is_err()
    );
    server.abort();
    let (port, server) = http_server("404 Not Found", "{}".into()).await;
    assert!(
        resolve_service(&format!("compute@127.0.0.1:{port}"), TIMEOUT)
            .await
            .is_err()
    );
    server.abort();

    // Reached with the NIP-05 relay hints only (no --relay): the service is served.
    let (buyer, route) = reach(Keys::generate(), &[], &found, Scheme::Nip44, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(route.write, h.urls());
    let reply = buyer
        .with_timeout(TIMEOUT)
        .request(&status("ssh-pod-00000000"), SendOptions::default())
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Error(_)), "{reply:?}");

    // An nprofile carries the same hints.
    let nprofile =
        paygress_nostr::nostr_sdk::nips::nip19::Nip19Profile::new(h.keys.public_key(), h.urls());
    let text = paygress_nostr::nostr_sdk::ToBech32::to_bech32(&nprofile).unwrap();
    let found = resolve_service(&text, TIMEOUT).await.unwrap();
    assert_eq!(found.relays, h.urls());
}

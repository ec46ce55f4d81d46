//! A market of providers: the cheapest live one accepting the buyer's mint is chosen.

use super::*;

struct Provider {
    keys: Keys,
    transport: Arc<NostrTransport>,
    _serve: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn provider(relays: &[RelayUrl], name: &str, sat_per_hour: u64, mint: &MintUrl) -> Provider {
    let keys = Keys::generate();
    let dir = tempfile::tempdir().unwrap();
    let config = ServiceConfig::default()
        .with_name(name)
        .with_rate(Rate::from_sats_per_hour(sat_per_hour).unwrap());
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

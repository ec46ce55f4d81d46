//! Service tests: quotes.

use super::*;

// ---------------------------------------------------------------- status

#[tokio::test]
async fn status_answers_the_owner_only() {
    let (service, backend, _, clock) = Ports::new().never_redeems().build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(600);
    let ask = |pod: &str| {
        Request::Status(StatusRequest {
            pod_name: pod.to_owned(),
        })
    };

    match service
        .handle(&key("s1"), &buyer(), ask(lease.as_str()))
        .await
    {
        Reply::Status(s) => {
            assert_eq!(s.pod_name, lease);
            assert_eq!(s.state, LeaseState::Active);
            assert_eq!(s.remaining_seconds, HOUR - 600);
            assert_eq!(s.expires_at, at(HOUR));
            assert_eq!(s.tier, "standard");
        }
        other => panic!("expected status, got {other:?}"),
    }
    let stranger = Requester::new("test", "stranger");
    let err = expect_error(
        service
            .handle(&key("s2"), &stranger, ask(lease.as_str()))
            .await,
    );
    assert_eq!(err.code, ErrorCode::NotOwner);
    let err = expect_error(
        service
            .handle(&key("s3"), &buyer(), ask(LeaseId::generate().as_str()))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PodNotFound);
    let err = expect_error(
        service
            .handle(&key("s4"), &buyer(), ask("pod; rm -rf"))
            .await,
    );
    assert_eq!(err.code, ErrorCode::InvalidPodName);

    clock.advance(i64::try_from(HOUR).expect("fits"));
    match service
        .handle(&key("s1"), &buyer(), ask(lease.as_str()))
        .await
    {
        Reply::Status(s) => {
            assert_eq!(s.state, LeaseState::Expired);
            assert_eq!(s.remaining_seconds, 0);
        }
        other => panic!("expected status, got {other:?}"),
    }
}

// ---------------------------------------------------------------- expiry

#[tokio::test]
async fn reap_expired_removes_only_expired_leases() {
    let (service, backend, _, clock) = Ports::new().build();
    let short = seed_lease(&backend, Tier::standard(), at(600)).await;
    let exact = seed_lease(&backend, Tier::standard(), at(1200)).await;
    let long = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    assert_eq!(service.reap_expired().await.expect("reap"), 0);
    clock.advance(1200);
    assert_eq!(service.reap_expired().await.expect("reap"), 2);
    assert!(backend.get(&short).await.expect("get").is_none());
    assert!(backend.get(&exact).await.expect("get").is_none());
    assert!(backend.get(&long).await.expect("get").is_some());
    assert_eq!(service.reap_expired().await.expect("reap"), 0);
}

#[tokio::test]
async fn reap_expired_skips_a_lease_extended_meanwhile() {
    let lease = LeaseId::generate();
    let old = record(&lease, at(600));
    let extended = record(&lease, at(HOUR));
    let mut backend = mock_backend();
    backend
        .expect_list()
        .returning(move || Ok(vec![old.clone()]));
    backend
        .expect_get()
        .returning(move |_| Ok(Some(extended.clone())));
    backend.expect_delete().never();
    let mut ports = Ports::new();
    ports.backend = Some(backend);
    let (service, _, _, clock) = ports.build();
    clock.advance(600);
    assert_eq!(service.reap_expired().await.expect("reap"), 0);
}

// ---------------------------------------------------------------- offer, price, quote

#[tokio::test]
async fn offer_price_and_quote_follow_the_config() {
    let mut ports = Ports::new();
    ports
        .verifier
        .expect_accepted_mints()
        .returning(|| vec![mint()]);
    ports
        .verifier
        .expect_accepted_units()
        .returning(|| vec![Unit::Sat]);
    ports
        .verifier
        .expect_locking_key()
        .returning(|| Some("02abcd".to_owned()));
    ports.verifier.expect_check().returning(|_| {
        Ok(TokenCheck {
            mint: mint(),
            amount: Amount::sat(90),
            spendable: true,
        })
    });
    let (service, _, _, _) = ports.build();

    let offer = service.offer();
    assert_eq!(offer.rate_sats_per_hour, 60);
    assert_eq!(offer.min_duration_minutes, 1);
    assert_eq!(offer.max_duration_minutes, 24 * 60);
    assert_eq!(offer.mints, vec![mint()]);
    assert_eq!(offer.backend, "memory");
    assert_eq!(offer.locking_key.as_deref(), Some("02abcd"));
    assert_eq!(
        offer.images,
        ["linuxserver/openssh-server:latest", "ubuntu:24.04"]
    );
    assert_eq!(offer.tiers[1].rate_msat_per_hour, 120_000);

    assert_eq!(
        service.price(60, None, Unit::Sat).expect("price"),
        Amount::sat(60)
    );
    assert_eq!(
        service.price(60, Some("big"), Unit::Msat).expect("price"),
        Amount::msat(120_000)
    );
    assert_eq!(
        service
            .price(0, None, Unit::Sat)
            .expect_err("too short")
            .code,
        ErrorCode::DurationOutOfRange
    );
    assert_eq!(
        service
            .price(60, Some("nope"), Unit::Sat)
            .expect_err("tier")
            .code,
        ErrorCode::UnknownTier
    );

    let quote = service
        .quote_token(&token(), Some(60))
        .await
        .expect("quote");
    assert_eq!(quote.minutes, 90);
    assert_eq!(quote.covers_requested, Some(true));
    let quote = service
        .quote_token(&token(), Some(91))
        .await
        .expect("quote");
    assert_eq!(quote.covers_requested, Some(false));
}

// ---------------------------------------------------------------- top-up quotes

#[tokio::test]
async fn top_up_price_uses_the_leases_tier_and_falls_back_to_the_base_rate() {
    let (service, memory, _, _) = Ports::new().build();
    let big = seed_lease(&memory, big_tier(), at(HOUR)).await;
    assert_eq!(
        service.top_up_price(big.as_str(), 60, Unit::Sat).await,
        Ok((HOUR, Amount::sat(120)))
    );
    // A tier the operator has since removed is priced at the base rate, as the top-up
    // itself would be.
    let gone = Tier {
        id: "retired".to_owned(),
        ..big_tier()
    };
    let old = seed_lease(&memory, gone, at(HOUR)).await;
    assert_eq!(
        service.top_up_price(old.as_str(), 60, Unit::Sat).await,
        Ok((HOUR, Amount::sat(60)))
    );
}

#[tokio::test]
async fn top_up_price_is_capped_by_headroom_and_refuses_like_a_top_up() {
    let (service, memory, _, clock) = Ports::new().build();
    // 30 s below the maximum: the quote is for those 30 s, below the spawn minimum.
    let near_max = seed_lease(&memory, Tier::standard(), at(MAX_SECONDS - 30)).await;
    assert_eq!(
        service
            .top_up_price(near_max.as_str(), 60, Unit::Msat)
            .await,
        Ok((30, Amount::msat(500)))
    );
    let full = seed_lease(&memory, Tier::standard(), at(MAX_SECONDS)).await;
    let e = service.top_up_price(full.as_str(), 60, Unit::Sat).await;
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::LeaseAtMaximum));
    let e = service
        .top_up_price("ssh-pod-zzzzzzzz", 60, Unit::Sat)
        .await;
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::PodNotFound));
    let e = service.top_up_price("nope", 60, Unit::Sat).await;
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::InvalidPodName));
    clock.advance(i64::try_from(MAX_SECONDS).expect("fits"));
    let e = service.top_up_price(full.as_str(), 60, Unit::Sat).await;
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::LeaseExpired));
}

#[tokio::test(start_paused = true)]
async fn the_reaper_wakes_at_the_next_paid_second_not_at_the_next_interval() {
    let (service, backend, _, clock) = Ports::new().build();
    let service = Arc::new(service);
    let lease = seed_lease(&backend, Tier::standard(), at(600)).await;
    let task = tokio::spawn(
        service
            .clone()
            .run_maintenance(std::time::Duration::from_secs(24 * 3600)),
    );
    // The first pass finds nothing due (the runtime's clock is paused: this lets it run).
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    assert!(backend.get(&lease).await.expect("get").is_some());
    // The service's clock and the runtime's reach the paid second together.
    clock.advance(600);
    tokio::time::sleep(std::time::Duration::from_millis(600_010)).await;
    assert!(
        backend.get(&lease).await.expect("get").is_none(),
        "reaped at its paid second, not a day later"
    );
    task.abort();
}

#[tokio::test]
async fn reap_expired_spares_a_provisioning_lease_and_removes_an_ended_one() {
    let starting = LeaseId::generate();
    let ended = LeaseId::generate();
    let mut provisioning = record(&starting, at(600));
    provisioning.phase = crate::lease::LeasePhase::Provisioning;
    let mut failed = record(&ended, at(HOUR));
    failed.phase = crate::lease::LeasePhase::Ended;
    let mut backend = MockPodBackend::new();
    let listed = vec![provisioning.clone(), failed.clone()];
    backend.expect_list().returning(move || Ok(listed.clone()));
    backend
        .expect_get()
        .with(eq(ended.clone()))
        .returning(move |_| Ok(Some(failed.clone())));
    backend
        .expect_delete()
        .with(eq(ended.clone()))
        .times(1)
        .returning(|_| Ok(()));
    backend.expect_sweep().times(1).returning(|| Ok(2));
    let mut ports = Ports::new();
    ports.backend = Some(backend);
    let (service, _, _, clock) = ports.build();
    clock.advance(1200);
    // One ended lease and two swept orphans; the provisioning lease is untouched.
    assert_eq!(service.reap_expired().await.expect("reap"), 3);
}

/// The reaper does not wait for the sweep: a lease expires at its paid second while a
/// sweep over thousands of objects is still listing them (10,000 leases on the fake
/// API: expiries seconds late while it ran in the reaper's pass).
#[tokio::test(start_paused = true)]
async fn a_slow_sweep_does_not_hold_up_the_reaper() {
    let memory = MemoryBackend::new();
    memory.stall_sweeps();
    let clock = ManualClock::new(start());
    let lease = seed_lease(&memory, Tier::standard(), at(5)).await;
    let service = Arc::new(
        Paygress::builder(
            config(),
            Arc::new(MockPaymentVerifier::new()),
            Arc::new(memory.clone()),
        )
        .clock(Arc::new(clock.clone()))
        .build(),
    );
    let task = tokio::spawn(
        service
            .clone()
            .run_maintenance(std::time::Duration::from_secs(1)),
    );
    // The first pass finds nothing due; the sweep starts and never ends.
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    assert!(memory.get(&lease).await.expect("get").is_some());
    clock.advance(5);
    tokio::time::sleep(std::time::Duration::from_millis(5_010)).await;
    assert!(
        memory.get(&lease).await.expect("get").is_none(),
        "reaped at its paid second, the sweep still running"
    );
    task.abort();
}

//! Service tests: top up.

use super::*;

// ---------------------------------------------------------------- top-up

#[tokio::test]
async fn top_up_extends_from_the_current_expiry_not_from_now() {
    let mut backend = mock_backend();
    let lease = LeaseId::generate();
    let current = record(&lease, at(HOUR));
    backend
        .expect_get()
        .with(eq(lease.clone()))
        .returning(move |_| Ok(Some(current.clone())));
    backend
        .expect_extend()
        .with(
            eq(lease.clone()),
            eq(Extension {
                expires_at: at(HOUR + 1800),
                paid_msat: 60_000 + 30_000,
            }),
        )
        .times(1)
        .returning(|_, _| Ok(()));
    let mut ports = Ports::new()
        .token_worth(Amount::sat(30))
        .redeems(Amount::sat(30))
        .never_issues();
    ports.backend = Some(backend);
    let (service, _, _, clock) = ports.build();
    clock.advance(600);

    let result = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(result.pod_name, lease);
    assert_eq!(result.added_seconds, 1800);
    assert_eq!(result.expires_at, at(HOUR + 1800));
    assert!(result.change_token.is_none());
}

#[tokio::test]
async fn top_up_past_the_maximum_is_capped_with_exact_change() {
    let (service, backend, _, clock) = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(90), "cashuBchange")
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(MAX_SECONDS)).await;
    clock.advance(600);
    let result = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(result.added_seconds, 600);
    assert_eq!(result.expires_at, at(MAX_SECONDS + 600));
    assert!(result.change_token.is_some());
    let record = backend.get(&lease).await.expect("get").expect("lease");
    assert_eq!(record.paid_msat, 60_000 + 10_000);
}

#[tokio::test]
async fn top_up_uses_the_leases_tier_rate() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    let lease = seed_lease(&backend, big_tier(), at(HOUR)).await;
    let result = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(result.added_seconds, 1800);
}

#[tokio::test]
async fn top_up_of_an_unknown_expired_or_misnamed_pod_leaves_the_token_untouched() {
    let (service, backend, _, clock) = Ports::new().never_redeems().never_issues().build();
    let expired = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(i64::try_from(HOUR).expect("fits"));

    let unknown = LeaseId::generate();
    let err = expect_error(
        service
            .handle(&key("a"), &buyer(), top_up_req(&unknown))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PodNotFound);

    let err = expect_error(
        service
            .handle(&key("b"), &buyer(), top_up_req(&expired))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);

    let bad = Request::TopUp(TopUpRequest {
        pod_name: "ssh-pod-../../x".to_owned(),
        cashu_token: token(),
    });
    let err = expect_error(service.handle(&key("c"), &buyer(), bad).await);
    assert_eq!(err.code, ErrorCode::InvalidPodName);
    assert!(err.refund_token.is_none());
}

#[tokio::test]
async fn top_up_of_a_lease_at_the_maximum_leaves_the_token_untouched() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(10))
        .never_redeems()
        .never_issues()
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(MAX_SECONDS)).await;
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseAtMaximum);
}

#[tokio::test]
async fn top_up_too_small_to_buy_a_second_leaves_the_token_untouched() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::msat(16))
        .never_redeems()
        .never_issues()
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
}

#[tokio::test]
async fn top_up_of_a_lease_that_expires_during_redeem_is_refunded() {
    let clock = ManualClock::new(start());
    let mut ports = Ports::new()
        .token_worth(Amount::sat(30))
        .issues(Amount::sat(30), "cashuBrefund");
    ports.clock = clock.clone();
    ports
        .verifier
        .expect_redeem()
        .times(1)
        .returning(move |_, _| {
            // The lease's time runs out while the mint is swapping the proofs.
            clock.advance(3600);
            Ok(Redeemed {
                mint: mint(),
                amount: Amount::sat(30),
            })
        });
    let (service, backend, _, _) = ports.build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);
    assert!(err.refund_token.is_some());
    let record = backend.get(&lease).await.expect("get").expect("lease");
    assert_eq!(record.expires_at, at(HOUR));
}

#[tokio::test]
async fn top_up_whose_extend_fails_is_refunded_in_full() {
    // An unclear failure is read back and retried once; a definitive one is not.
    type Case = (fn() -> BackendError, usize, ErrorCode);
    let cases: [Case; 2] = [
        (
            || BackendError::Unavailable("api down".into()),
            2,
            ErrorCode::ProvisioningFailed,
        ),
        (
            || BackendError::NotFound(LeaseId::generate()),
            1,
            ErrorCode::PodNotFound,
        ),
    ];
    for (error, calls, code) in cases {
        let lease = LeaseId::generate();
        let current = record(&lease, at(HOUR));
        let mut backend = mock_backend();
        backend
            .expect_get()
            .returning(move |_| Ok(Some(current.clone())));
        backend
            .expect_extend()
            .times(calls)
            .returning(move |_, _| Err(error()));
        backend.expect_delete().never();
        let mut ports = Ports::new()
            .token_worth(Amount::sat(30))
            .redeems(Amount::sat(30))
            .issues(Amount::sat(30), "cashuBrefund");
        ports.backend = Some(backend);
        let (service, _, journal, _) = ports.build();
        let err = expect_error(
            service
                .handle(&key("t"), &buyer(), top_up_req(&lease))
                .await,
        );
        assert_eq!(err.code, code);
        assert_eq!(
            err.refund_token.as_ref().map(CashuToken::expose),
            Some("cashuBrefund")
        );
        assert_eq!(service.lease_locks.len(), 0);
        assert!(journal.unfinished().await.expect("journal").is_empty());
    }
}

#[tokio::test]
async fn top_up_whose_extend_answer_is_lost_is_not_refunded_when_the_lease_moved() {
    let (service, backend, journal, _) = Ports::new()
        .token_worth(Amount::sat(30))
        .redeems(Amount::sat(30))
        .never_issues()
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    backend.fail_next(crate::memory::FailOn::ExtendAnswerLost);
    let t = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(t.expires_at, at(HOUR + 1800));
    let record = backend.get(&lease).await.expect("get").expect("lease");
    assert_eq!(record.expires_at, at(HOUR + 1800));
    assert!(journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn top_up_left_extending_by_a_crash_is_concluded_from_the_leases_real_expiry() {
    // Crash after the backend moved the expiry: settlement sees it moved and finishes
    // (never refunds); crash before: the lease is extended now.
    for moved in [true, false] {
        let (service, backend, journal, _) = Ports::new().never_issues().build();
        let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
        let target = at(HOUR + 1800);
        if moved {
            backend
                .extend(
                    &lease,
                    &Extension {
                        expires_at: target,
                        paid_msat: 90_000,
                    },
                )
                .await
                .expect("extend");
        }
        let stage = Stage::Extending {
            lease: lease.clone(),
            payment: Redeemed {
                mint: mint(),
                amount: Amount::sat(30),
            },
            target,
            paid_msat: 90_000,
            added_seconds: 1800,
            change: Amount::sat(0),
            revived: false,
        };
        journal
            .put(&key("t"), &Entry::new(buyer(), start(), stage))
            .await
            .expect("journal");
        assert_eq!(service.settle().await, 1);
        let record = backend.get(&lease).await.expect("get").expect("lease");
        assert_eq!(record.expires_at, target, "moved before the crash: {moved}");
        let t = expect_top_up(
            service
                .handle(&key("t"), &buyer(), top_up_req(&lease))
                .await,
        );
        assert_eq!(t.expires_at, target);
    }
}

#[tokio::test]
async fn top_up_left_extending_on_an_expired_lease_is_refunded() {
    let (service, backend, journal, clock) =
        Ports::new().issues(Amount::sat(30), "cashuBrefund").build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.set(at(2 * HOUR));
    let stage = Stage::Extending {
        lease: lease.clone(),
        payment: Redeemed {
            mint: mint(),
            amount: Amount::sat(30),
        },
        target: at(HOUR + 1800),
        paid_msat: 90_000,
        added_seconds: 1800,
        change: Amount::sat(0),
        revived: false,
    };
    journal
        .put(&key("t"), &Entry::new(buyer(), start(), stage))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 1);
    let e = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(
        e.refund_token.as_ref().map(CashuToken::expose),
        Some("cashuBrefund")
    );
}

#[tokio::test]
async fn lease_locks_are_released_after_refused_top_ups_and_reaping() {
    let clock = ManualClock::new(start());
    let mut ports = Ports::new()
        .token_worth(Amount::sat(30))
        .issues(Amount::sat(30), "cashuBrefund");
    ports.clock = clock.clone();
    let c = clock.clone();
    ports
        .verifier
        .expect_redeem()
        .times(1)
        .returning(move |_, _| {
            c.advance(3600);
            Ok(Redeemed {
                mint: mint(),
                amount: Amount::sat(30),
            })
        });
    let (service, backend, _, _) = ports.build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);
    assert_eq!(service.lease_locks.len(), 0);

    assert_eq!(service.reap_expired().await.expect("reap"), 1);
    assert_eq!(service.lease_locks.len(), 0);
}

#[tokio::test]
async fn top_up_of_a_lease_still_starting_leaves_the_token_untouched() {
    let lease = LeaseId::generate();
    let mut starting = record(&lease, at(HOUR));
    starting.phase = crate::lease::LeasePhase::Provisioning;
    let mut backend = mock_backend();
    backend
        .expect_get()
        .returning(move |_| Ok(Some(starting.clone())));
    backend.expect_extend().never();
    let mut ports = Ports::new().never_redeems().never_issues();
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("still starting"), "{}", err.message);
    assert!(err.refund_token.is_none());
}

//! Service tests: releases interrupted (pins, unclear deletes, crashes) and their
//! settlement.

use super::*;

#[tokio::test]
async fn a_refused_pin_deletes_nothing_and_leaves_the_release_open() {
    let lease = LeaseId::generate();
    let current = record(&lease, at(HOUR));
    let mut backend = mock_backend();
    backend
        .expect_get()
        .returning(move |_| Ok(Some(current.clone())));
    backend
        .expect_extend()
        .times(1)
        .returning(|_, _| Err(BackendError::Unavailable("timeout".into())));
    backend.expect_delete().never();
    let mut ports = Ports::new().refunds_in_sat().never_issues();
    ports.backend = Some(backend);
    let (service, _, journal, clock) = ports.build();
    clock.advance(600);
    let err = expect_error(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PaymentPending);
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    assert!(
        matches!(entry.stage, Stage::Releasing { pinned: false, .. }),
        "{entry:?}"
    );
}

#[tokio::test]
async fn a_refused_delete_after_the_pin_stays_open_and_settlement_refunds_against_the_paid_end() {
    let lease = LeaseId::generate();
    let current = record(&lease, at(HOUR));
    let paid = current.paid_msat;
    let pinned = Arc::new(Mutex::new(None::<Timestamp>));
    let mut backend = mock_backend();
    let mut seq = Sequence::new();
    let (c, p) = (current.clone(), pinned.clone());
    backend
        .expect_get()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| Ok(Some(c.clone())));
    let p2 = p.clone();
    backend
        .expect_extend()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, ext| {
            assert_eq!(ext.paid_msat, paid, "a pin is not paid time");
            *p2.lock().expect("lock") = Some(ext.expires_at);
            Ok(())
        });
    backend
        .expect_delete()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(BackendError::Rejected("no".into())));
    let (c2, p3) = (current.clone(), p.clone());
    backend
        .expect_get()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| {
            let mut r = c2.clone();
            r.expires_at = p3.lock().expect("lock").expect("pinned");
            Ok(Some(r))
        });
    // Settlement: the lease is read back pinned; it goes now.
    let (c3, p4) = (current, p);
    backend
        .expect_get()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| {
            let mut r = c3.clone();
            r.expires_at = p4.lock().expect("lock").expect("pinned");
            Ok(Some(r))
        });
    backend
        .expect_delete()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    // 60 s later: 2940 s of the paid hour are left (the pin is not), 49 sat.
    let mut ports = Ports::new()
        .refunds_in_sat()
        .issues(Amount::sat(49), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, clock) = ports.build();
    clock.advance(600);
    let err = expect_error(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PaymentPending);
    let pin = pinned.lock().expect("lock").expect("pinned");
    assert!(pin > at(HOUR + 300 * 24 * 3600), "pinned until {pin}");
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    assert!(
        matches!(entry.stage, Stage::Releasing { pinned: true, .. }),
        "{entry:?}"
    );

    clock.advance(60);
    assert_eq!(service.settle().await, 1);
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    let Stage::Done { reply } = entry.stage else {
        panic!("not settled: {entry:?}");
    };
    let released = expect_released(reply);
    assert_eq!(released.refunded_seconds, 2940);
    assert_eq!(released.refund_amount, Amount::sat(49));
}

#[tokio::test]
async fn an_unclear_delete_stays_open_and_settlement_refunds_once_the_lease_is_gone() {
    let lease = LeaseId::generate();
    let current = record(&lease, at(HOUR));
    let mut backend = mock_backend();
    let mut seq = Sequence::new();
    backend
        .expect_get()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| Ok(Some(current.clone())));
    backend
        .expect_extend()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    backend
        .expect_delete()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(BackendError::Unavailable("timeout".into())));
    backend
        .expect_get()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(BackendError::Unavailable("timeout".into())));
    // Settlement: the lease is gone before its paid end: the journaled refund.
    backend
        .expect_get()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(None));
    let mut ports = Ports::new()
        .refunds_in_sat()
        .issues(Amount::sat(50), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, clock) = ports.build();
    clock.advance(600);
    let err = expect_error(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PaymentPending);
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    assert!(matches!(entry.stage, Stage::Releasing { .. }), "{entry:?}");

    clock.advance(60);
    assert_eq!(service.settle().await, 1);
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    let Stage::Done { reply } = entry.stage else {
        panic!("not settled: {entry:?}");
    };
    let released = expect_released(reply);
    assert_eq!(released.refund_amount, Amount::sat(50));
    assert_eq!(released.refund_token, Some(CashuToken::new("cashuBrefund")));
}

#[tokio::test]
async fn a_crash_before_the_delete_completes_the_release_refunding_only_what_is_unused_now() {
    let (service, backend, journal, clock) = Ports::new()
        .refunds_in_sat()
        .issues(Amount::sat(40), "cashuBrefund")
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    journal
        .put(
            &key("r"),
            &Entry::new(buyer(), at(600), journaled_release(&lease)),
        )
        .await
        .expect("put");
    // Restarted ten minutes later: the lease ran meanwhile.
    clock.advance(1200);
    assert_eq!(service.settle().await, 1);
    assert!(backend.get(&lease).await.expect("get").is_none());
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    let Stage::Done { reply } = entry.stage else {
        panic!("not settled: {entry:?}");
    };
    let released = expect_released(reply);
    assert_eq!(released.refund_amount, Amount::sat(40));
    assert_eq!(released.refunded_seconds, 2400);
}

#[tokio::test]
async fn a_crash_after_the_delete_issues_the_journaled_refund_exactly_once() {
    let (service, backend, journal, clock) = Ports::new()
        .refunds_in_sat()
        .issues(Amount::sat(50), "cashuBrefund")
        .build();
    let lease = LeaseId::generate();
    journal
        .put(
            &key("r"),
            &Entry::new(buyer(), at(600), journaled_release(&lease)),
        )
        .await
        .expect("put");
    clock.advance(700);
    assert_eq!(service.settle().await, 1);
    // Settled: a second settlement and the buyer's resend issue nothing more.
    assert_eq!(service.settle().await, 0);
    let resend = service
        .handle(&key("r"), &buyer(), release_req(&lease))
        .await;
    let released = expect_released(resend);
    assert_eq!(released.refund_token, Some(CashuToken::new("cashuBrefund")));
    assert!(backend.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_release_interrupted_past_the_paid_end_refunds_nothing() {
    let (service, _, journal, clock) = Ports::new().refunds_in_sat().never_issues().build();
    let lease = LeaseId::generate();
    journal
        .put(
            &key("r"),
            &Entry::new(buyer(), at(600), journaled_release(&lease)),
        )
        .await
        .expect("put");
    clock.advance(i64::try_from(HOUR).expect("fits") + 1);
    assert_eq!(service.settle().await, 1);
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    let Stage::Done { reply } = entry.stage else {
        panic!("not settled: {entry:?}");
    };
    let released = expect_released(reply);
    assert!(released.refund_amount.is_zero());
    assert!(released.refund_token.is_none());
}

#[tokio::test]
async fn a_refund_the_mint_cannot_issue_stays_owed_and_settlement_issues_it() {
    let (service, backend, journal, clock) = {
        let mut ports = Ports::new().refunds_in_sat();
        let mut seq = Sequence::new();
        ports
            .verifier
            .expect_issue_once()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Err(PaymentError::MintUnavailable("down".into())));
        ports
            .verifier
            .expect_issue_once()
            .with(always(), eq(mint()), eq(Amount::sat(50)))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Ok(CashuToken::new("cashuBrefund")));
        ports.build()
    };
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(600);
    let owed = expect_released(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert!(owed.refund_token.is_none());
    assert!(
        owed.message.contains("could not be issued yet"),
        "{}",
        owed.message
    );
    assert!(backend.get(&lease).await.expect("get").is_none());
    assert_eq!(service.settle().await, 1);
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    let Stage::Done { reply } = entry.stage else {
        panic!("not settled: {entry:?}");
    };
    assert_eq!(
        expect_released(reply).refund_token,
        Some(CashuToken::new("cashuBrefund"))
    );
}

/// A journal over `memory` whose writes fail from the first [`Stage::Issuing`] on: the
/// process "dies" right after the release's delete, before the refund is recorded.
fn journal_that_dies_before_issuing(memory: &MemoryJournal) -> MockJournal {
    let mut journal = MockJournal::new();
    let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let m = memory.clone();
    journal.expect_put().returning(move |key, entry| {
        if matches!(entry.stage, Stage::Issuing { .. }) {
            dead.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if dead.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(JournalError::Io("the process died".into()));
        }
        futures::executor::block_on(m.put(key, entry))
    });
    let m = memory.clone();
    journal
        .expect_get()
        .returning(move |key| futures::executor::block_on(m.get(key)));
    let m = memory.clone();
    journal
        .expect_unfinished()
        .returning(move || futures::executor::block_on(m.unfinished()));
    journal.expect_prune().returning(|_| Ok(0));
    journal
}

#[tokio::test]
async fn a_crash_after_the_delete_refunds_even_when_the_service_returns_after_the_paid_end() {
    // First run: the lease is released and deleted, then the process dies before the
    // refund is journaled or issued.
    let mut ports = Ports::new().refunds_in_sat();
    ports
        .verifier
        .expect_issue_once()
        .returning(|_, _, _| Err(PaymentError::MintUnavailable("the process died".into())));
    ports.journal = Some(journal_that_dies_before_issuing(&ports.memory_journal));
    let (memory, memory_journal, clock) = (
        ports.memory.clone(),
        ports.memory_journal.clone(),
        ports.clock.clone(),
    );
    let (service, backend, _, _) = ports.build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(600);
    let _ = service
        .handle(&key("r"), &buyer(), release_req(&lease))
        .await;
    drop(service);
    assert!(memory.get(&lease).await.expect("get").is_none());

    // Back long after the lease's paid end: the refund the release decided is owed.
    let mut ports = Ports::new()
        .refunds_in_sat()
        .issues(Amount::sat(50), "cashuBrefund");
    ports.memory = memory;
    ports.memory_journal = memory_journal;
    ports.clock = clock;
    let (service, _, journal, clock) = ports.build();
    clock.advance(i64::try_from(2 * HOUR).expect("fits"));
    assert_eq!(service.settle().await, 1);
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    let Stage::Done { reply } = entry.stage else {
        panic!("not settled: {entry:?}");
    };
    let released = expect_released(reply);
    assert_eq!(released.refund_amount, Amount::sat(50));
    assert_eq!(released.refund_token, Some(CashuToken::new("cashuBrefund")));
}

#[tokio::test]
async fn a_lease_pinned_by_an_interrupted_release_goes_at_recovery_and_its_pin_is_not_refunded() {
    let (service, backend, journal, clock) = Ports::new().refunds_in_sat().never_issues().build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    // The crash came after the pin, before the delete.
    let paid_msat = backend
        .get(&lease)
        .await
        .expect("get")
        .expect("lease")
        .paid_msat;
    backend
        .extend(
            &lease,
            &Extension {
                expires_at: at(HOUR + 366 * 24 * 3600),
                paid_msat,
            },
        )
        .await
        .expect("pin");
    let mut stage = journaled_release(&lease);
    if let Stage::Releasing { pinned, .. } = &mut stage {
        *pinned = true;
    }
    journal
        .put(&key("r"), &Entry::new(buyer(), at(600), stage))
        .await
        .expect("put");
    // Back after the paid end: the lease ran its paid time, and the pin is not paid.
    clock.advance(i64::try_from(2 * HOUR).expect("fits"));
    assert_eq!(service.settle().await, 1);
    assert!(backend.get(&lease).await.expect("get").is_none());
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    let Stage::Done { reply } = entry.stage else {
        panic!("not settled: {entry:?}");
    };
    let released = expect_released(reply);
    assert!(released.refund_amount.is_zero(), "{released:?}");
}

#[tokio::test]
async fn while_a_release_is_open_a_second_release_and_top_ups_are_refused_and_it_refunds_once() {
    let (service, backend, journal, clock) = Ports::new()
        .refunds_in_sat()
        .token_worth(Amount::sat(100))
        .never_redeems()
        .issues(Amount::sat(50), "cashuBrefund")
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(600);
    // The pin's answer is unclear: the release stays open.
    backend.fail_next(FailOn::Extend);
    let err = expect_error(
        service
            .handle(&key("r1"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PaymentPending);

    // A second release under another request would refund the same time again.
    let err = expect_error(
        service
            .handle(&key("r2"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(err.message.contains("being released"), "{}", err.message);
    // A top-up would pay for time the release is about to end: refused, token untouched.
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(err.refund_token.is_none());

    assert_eq!(service.settle().await, 1);
    assert!(backend.get(&lease).await.expect("get").is_none());
    let entry = journal.get(&key("r1")).await.expect("get").expect("entry");
    let Stage::Done { reply } = entry.stage else {
        panic!("not settled: {entry:?}");
    };
    assert_eq!(expect_released(reply).refund_amount, Amount::sat(50));
}

#[tokio::test]
async fn a_release_waits_for_an_open_top_up_so_that_its_time_is_not_refunded_twice() {
    let (service, backend, journal, clock) = Ports::new().refunds_in_sat().never_issues().build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    // A top-up's answer was lost after the backend applied it: its settlement would
    // refund it if the lease were gone, and a release would refund its time too.
    backend
        .extend(
            &lease,
            &Extension {
                expires_at: at(HOUR + 1800),
                paid_msat: 90_000,
            },
        )
        .await
        .expect("extend");
    let open_top_up = Stage::Extending {
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
        .put(&key("t"), &Entry::new(buyer(), at(0), open_top_up))
        .await
        .expect("put");
    clock.advance(600);
    let err = expect_error(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(backend.get(&lease).await.expect("get").is_some());
}

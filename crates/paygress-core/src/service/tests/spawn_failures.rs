//! Service tests: spawn failures (redeem and provisioning).

use super::*;

// ---------------------------------------------------------------- spawn: redeem failures

#[tokio::test]
async fn redeem_failures_create_nothing_and_issue_nothing() {
    let cases: Vec<(fn() -> PaymentError, ErrorCode)> = vec![
        (|| PaymentError::AlreadySpent, ErrorCode::TokenAlreadySpent),
        (
            || PaymentError::MintUnavailable("connection refused".into()),
            ErrorCode::MintUnavailable,
        ),
        (|| PaymentError::Other("weird".into()), ErrorCode::Internal),
    ];
    for (error, code) in cases {
        let mut ports = Ports::new().token_worth(Amount::sat(60)).never_issues();
        ports
            .verifier
            .expect_redeem()
            .times(1)
            .returning(move |_, _| Err(error()));
        // A spent token is checked against what this attempt received: nothing.
        ports
            .verifier
            .expect_resolve()
            .times(0..=1)
            .returning(|_, _| Ok(None));
        let mut backend = mock_backend();
        backend.expect_create().never();
        ports.backend = Some(backend);
        let (service, _, journal, _) = ports.build();
        let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
        assert_eq!(err.code, code);
        assert!(err.refund_token.is_none());
        assert!(journal.unfinished().await.expect("journal").is_empty());
    }
}

#[tokio::test]
async fn journal_write_failure_refuses_payment_without_redeeming() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .never_redeems()
        .never_issues();
    let mut journal = MockJournal::new();
    journal.expect_get().returning(|_| Ok(None));
    journal
        .expect_put()
        .returning(|_, _| Err(JournalError::Io("disk full".into())));
    ports.journal = Some(journal);
    let (service, backend, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("not redeemed"), "{}", err.message);
    assert!(backend.is_empty());
}

#[tokio::test]
async fn journal_read_failure_refuses_before_the_token_is_read() {
    let mut ports = Ports::new().never_redeems().never_issues();
    ports.verifier.expect_inspect().never();
    let mut journal = MockJournal::new();
    journal
        .expect_get()
        .returning(|_| Err(JournalError::Corrupt("bad record".into())));
    journal.expect_put().never();
    ports.journal = Some(journal);
    let (service, _, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::Unavailable);
}

/// The stage a journal line records, named for the order checks below.
fn stage_name(k: &RequestKey, stage: &Entry) -> &'static str {
    assert_eq!(*k, key("1"));
    assert_eq!(stage.requester, buyer());
    match &stage.stage {
        Stage::Redeeming {
            purpose,
            token,
            attempt,
            ..
        } => {
            assert_eq!(*purpose, Purpose::Spawn);
            assert_eq!(*token, self::token());
            assert_eq!(attempt.face, Amount::sat(60));
            "redeeming"
        }
        Stage::Paid { payment, .. } => {
            assert_eq!(payment.amount, Amount::sat(60));
            "paid"
        }
        Stage::Extending { .. } => "extending",
        Stage::Releasing { .. } => "releasing",
        Stage::Issuing { .. } => "issuing",
        Stage::Owed { .. } => "owed",
        Stage::Done { .. } => "done",
    }
}

#[tokio::test]
async fn journal_records_the_redeem_window_then_the_payment_unwaited_then_the_reply() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60));
    let mut journal = MockJournal::new();
    journal.expect_get().returning(|_| Ok(None));
    let log = seen.clone();
    journal.expect_put().returning(move |k, stage| {
        log.lock()
            .expect("lock")
            .push(stage_name(k, stage).to_owned());
        Ok(())
    });
    let log = seen.clone();
    journal.expect_put_lazy().returning(move |k, stage| {
        log.lock()
            .expect("lock")
            .push(format!("{} (unwaited)", stage_name(k, stage)));
        Ok(())
    });
    ports.journal = Some(journal);
    let (service, _, _, _) = ports.build();
    expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    // The window must be durable before the swap and the reply before it is sent; the
    // payment's own line only spares recovery a question to the mint.
    assert_eq!(
        *seen.lock().expect("lock"),
        ["redeeming", "paid (unwaited)", "done"]
    );
}

// ---------------------------------------------------------------- spawn: provisioning failures

#[tokio::test]
async fn failed_create_deletes_the_lease_and_refunds_in_full() {
    let created: Arc<Mutex<Option<LeaseId>>> = Arc::default();
    let mut backend = mock_backend();
    let c = created.clone();
    backend.expect_create().times(1).returning(move |spec| {
        *c.lock().expect("lock") = Some(spec.id.clone());
        Err(BackendError::Unavailable("api server down".into()))
    });
    let c = created.clone();
    backend
        .expect_delete()
        .times(1)
        .withf(move |id| c.lock().expect("lock").as_ref() == Some(id))
        .returning(|_| Ok(()));
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(100), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();

    let reply = spawn(&service, "1", spawn_req(Some(60))).await;
    let err = expect_error(reply.clone());
    assert_eq!(err.code, ErrorCode::ProvisioningFailed);
    assert_eq!(
        err.refund_token.as_ref().map(CashuToken::expose),
        Some("cashuBrefund")
    );
    assert!(err.message.contains("refunded"), "{}", err.message);
    assert_eq!(journal.stage(&key("1")), Some(Stage::Done { reply }));
}

#[tokio::test]
async fn create_already_exists_refunds_without_deleting_the_other_lease() {
    let mut backend = mock_backend();
    backend
        .expect_create()
        .times(1)
        .returning(|spec| Err(BackendError::AlreadyExists(spec.id.clone())));
    backend.expect_delete().never();
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(100), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::ProvisioningFailed);
    assert!(err.refund_token.is_some());
}

#[tokio::test]
async fn failed_create_and_failed_cleanup_still_refund() {
    let mut backend = mock_backend();
    backend
        .expect_create()
        .returning(|_| Err(BackendError::Rejected("quota".into())));
    backend
        .expect_delete()
        .times(1)
        .returning(|_| Err(BackendError::Unavailable("down".into())));
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .issues(Amount::sat(60), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::ProvisioningFailed);
    assert!(err.refund_token.is_some());
}

#[tokio::test]
async fn failed_change_still_grants_the_lease_and_records_the_debt() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100));
    ports
        .verifier
        .expect_issue_once()
        .with(always(), eq(mint()), eq(Amount::sat(40)))
        .times(1)
        .returning(|_, _, _| Err(PaymentError::Issue("mint down".into())));
    let (service, backend, journal, _) = ports.build();

    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert!(access.change_token.is_none());
    assert!(
        access.instructions.iter().any(|i| i.contains("40 sat")),
        "{:?}",
        access.instructions
    );
    assert!(backend.spec(&access.pod_name).is_some());
    match journal.stage(&key("1")) {
        Some(Stage::Issuing {
            reply,
            mint: m,
            amount,
            ..
        }) => {
            assert_eq!(m, mint());
            assert_eq!(amount, Amount::sat(40));
            assert_eq!(expect_access(reply).pod_name, access.pod_name);
        }
        other => panic!("expected Issuing, got {other:?}"),
    }
}

#[tokio::test]
async fn failed_refund_is_reported_as_pending_and_recorded() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100));
    ports
        .verifier
        .expect_issue_once()
        .with(always(), eq(mint()), eq(Amount::sat(100)))
        .times(1)
        .returning(|_, _, _| Err(PaymentError::Issue("mint down".into())));
    let mut backend = mock_backend();
    backend
        .expect_create()
        .returning(|_| Err(BackendError::Unavailable("down".into())));
    backend.expect_delete().returning(|_| Ok(()));
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();

    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::RefundPending);
    assert!(err.refund_token.is_none());
    assert!(err.message.contains("100 sat"), "{}", err.message);
    assert!(matches!(
        journal.stage(&key("1")),
        Some(Stage::Issuing { amount, .. }) if amount == Amount::sat(100)
    ));
}

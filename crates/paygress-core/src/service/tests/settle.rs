//! Service tests: settle.

use super::*;

// ---------------------------------------------------------------- settle

fn paid(purpose: Purpose, lease: &LeaseId, amount: Amount) -> Entry {
    let stage = Stage::Paid {
        purpose,
        lease: lease.clone(),
        payment: Redeemed {
            mint: mint(),
            amount,
        },
    };
    Entry::new(buyer(), start(), stage)
}

#[tokio::test]
async fn settle_of_a_crashed_spawn_deletes_the_pod_and_refunds() {
    let lease = LeaseId::generate();
    let mut backend = mock_backend();
    backend
        .expect_delete()
        .with(eq(lease.clone()))
        .times(1)
        .returning(|_| Ok(()));
    let mut ports = Ports::new().issues(Amount::sat(100), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &paid(Purpose::Spawn, &lease, Amount::sat(100)))
        .await
        .expect("journal");

    assert_eq!(service.settle().await, 1);
    let reply = match journal.stage(&key("1")) {
        Some(Stage::Done { reply }) => reply,
        other => panic!("expected Done, got {other:?}"),
    };
    let err = expect_error(reply.clone());
    assert_eq!(err.code, ErrorCode::ProvisioningFailed);
    assert_eq!(
        err.refund_token.as_ref().map(CashuToken::expose),
        Some("cashuBrefund")
    );
    // The buyer's retry gets the refund.
    assert_eq!(spawn(&service, "1", spawn_req(Some(60))).await, reply);
    assert_eq!(service.settle().await, 0);
}

#[tokio::test]
async fn settle_of_a_crashed_top_up_refunds_without_deleting_the_lease() {
    let lease = LeaseId::generate();
    let mut backend = mock_backend();
    backend.expect_delete().never();
    let mut ports = Ports::new().issues(Amount::sat(30), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &paid(Purpose::TopUp, &lease, Amount::sat(30)))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 1);
    assert!(journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn settle_waits_while_the_pod_cannot_be_deleted() {
    let lease = LeaseId::generate();
    let mut backend = mock_backend();
    backend
        .expect_delete()
        .times(1)
        .returning(|_| Err(BackendError::Unavailable("down".into())));
    let mut ports = Ports::new().never_issues();
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &paid(Purpose::Spawn, &lease, Amount::sat(60)))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 0);
    assert!(matches!(journal.stage(&key("1")), Some(Stage::Paid { .. })));
}

fn redeeming(lease: &LeaseId) -> Entry {
    let stage = Stage::Redeeming {
        purpose: Purpose::Spawn,
        lease: lease.clone(),
        token: token(),
        attempt: attempt(Amount::sat(60)),
    };
    Entry::new(buyer(), start(), stage)
}

fn token_spent(ports: &mut Ports) {
    ports.verifier.expect_check().times(1).returning(|_| {
        Ok(TokenCheck {
            mint: mint(),
            amount: Amount::sat(60),
            spendable: false,
        })
    });
}

#[tokio::test]
async fn settle_of_redeeming_with_an_unspent_token_refunds_nothing() {
    let lease = LeaseId::generate();
    let mut ports = Ports::new().never_issues().never_redeems();
    ports
        .verifier
        .expect_check()
        .with(eq(token()))
        .times(1)
        .returning(|_| {
            Ok(TokenCheck {
                mint: mint(),
                amount: Amount::sat(60),
                spendable: true,
            })
        });
    let mut backend = mock_backend();
    backend.expect_delete().never();
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &redeeming(&lease))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 1);
    match journal.stage(&key("1")) {
        Some(Stage::Done { reply }) => {
            let err = expect_error(reply);
            assert_eq!(err.code, ErrorCode::Unavailable);
            assert!(err.refund_token.is_none());
        }
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn settle_of_redeeming_refunds_what_the_attempt_received_not_the_face_value() {
    let lease = LeaseId::generate();
    // Face value 60, but the wallet received 58 for this attempt (fees): 58 go back.
    let mut ports = Ports::new().issues(Amount::sat(58), "cashuBrefund");
    token_spent(&mut ports);
    ports
        .verifier
        .expect_resolve()
        .withf(|t, a| *t == token() && *a == attempt(Amount::sat(60)))
        .times(1)
        .returning(|_, _| {
            Ok(Some(Redeemed {
                mint: mint(),
                amount: Amount::sat(58),
            }))
        });
    let mut backend = mock_backend();
    backend.expect_delete().returning(|_| Ok(()));
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &redeeming(&lease))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 1);
    assert!(journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn settle_of_redeeming_a_token_spent_by_someone_else_refunds_nothing() {
    let mut ports = Ports::new().never_issues();
    token_spent(&mut ports);
    ports
        .verifier
        .expect_resolve()
        .times(1)
        .returning(|_, _| Ok(None));
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &redeeming(&LeaseId::generate()))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 1);
    match journal.stage(&key("1")) {
        Some(Stage::Done { reply }) => {
            let err = expect_error(reply);
            assert_eq!(err.code, ErrorCode::TokenAlreadySpent);
            assert!(err.refund_token.is_none());
        }
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn settle_of_redeeming_waits_while_the_mint_is_unreachable() {
    let mut ports = Ports::new().never_issues();
    ports
        .verifier
        .expect_check()
        .returning(|_| Err(PaymentError::MintUnavailable("down".into())));
    ports
        .verifier
        .expect_resolve()
        .returning(|_, _| Err(PaymentError::MintUnavailable("down".into())));
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &redeeming(&LeaseId::generate()))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 0);
    assert_eq!(journal.unfinished().await.expect("journal").len(), 1);
}

#[tokio::test]
async fn settle_issues_owed_change_once_the_mint_is_back() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100));
    let mut attempts = 0;
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ids.clone();
    ports
        .verifier
        .expect_issue_once()
        .with(always(), eq(mint()), eq(Amount::sat(40)))
        .times(3)
        .returning(move |id, _, _| {
            seen.lock().expect("lock").push(id.clone());
            attempts += 1;
            if attempts < 3 {
                Err(PaymentError::Issue("mint down".into()))
            } else {
                Ok(CashuToken::new("cashuBchange"))
            }
        });
    let (service, _, journal, _) = ports.build();
    let first = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert!(first.change_token.is_none());
    assert_eq!(service.settle().await, 0);
    assert_eq!(service.settle().await, 1);
    assert!(journal.unfinished().await.expect("journal").is_empty());
    let again = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(again.pod_name, first.pod_name);
    assert_eq!(again.ssh_password, first.ssh_password);
    assert_eq!(
        again.change_token.as_ref().map(CashuToken::expose),
        Some("cashuBchange")
    );
    assert_eq!(service.settle().await, 0);
    // Every try asked for the same issue: a token created by a try whose answer was
    // lost is the one handed out, never a second one.
    let ids = ids.lock().expect("lock");
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

/// A crash after the wallet created the change token but before the journal recorded
/// it leaves the intent: settlement asks the wallet for that same issue (which returns
/// the token it made) and delivers it; it never issues under a new name.
#[tokio::test]
async fn settle_completes_an_interrupted_issue_under_its_own_id() {
    let mut ports = Ports::new();
    let left = IssueId::generate();
    let expected = left.clone();
    ports
        .verifier
        .expect_issue_once()
        .withf(move |id, m, a| *id == expected && *m == mint() && *a == Amount::sat(40))
        .times(1)
        .returning(|_, _, _| Ok(CashuToken::new("cashuBthesame")));
    let (service, _, journal, _) = ports.build();
    let reply = Reply::error(ErrorCode::ProvisioningFailed, "failed");
    journal
        .put(
            &key("1"),
            &Entry {
                requester: buyer(),
                updated_at: start(),
                stage: Stage::Issuing {
                    reply,
                    mint: mint(),
                    amount: Amount::sat(40),
                    issue: left,
                },
            },
        )
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 1);
    match journal.stage(&key("1")) {
        Some(Stage::Done {
            reply: Reply::Error(e),
        }) => assert_eq!(
            e.refund_token.as_ref().map(CashuToken::expose),
            Some("cashuBthesame")
        ),
        other => panic!("expected the refund done, got {other:?}"),
    }
}

#[tokio::test]
async fn settle_skips_a_request_in_flight() {
    let (service, _, journal, _) = Ports::new().never_issues().build();
    journal
        .put(
            &key("1"),
            &paid(Purpose::Spawn, &LeaseId::generate(), Amount::sat(60)),
        )
        .await
        .expect("journal");
    let live = service.request_locks.lock(&key("1")).await;
    assert_eq!(service.settle().await, 0);
    drop(live);
    assert_eq!(journal.unfinished().await.expect("journal").len(), 1);
}

#[tokio::test]
async fn settle_with_an_unreadable_journal_settles_nothing() {
    let mut ports = Ports::new().never_issues();
    let mut journal = MockJournal::new();
    journal
        .expect_unfinished()
        .returning(|| Err(JournalError::Io("disk".into())));
    ports.journal = Some(journal);
    let (service, _, _, _) = ports.build();
    assert_eq!(service.settle().await, 0);
}

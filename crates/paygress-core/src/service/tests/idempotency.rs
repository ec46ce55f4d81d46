//! Service tests: idempotency.

use super::*;

// ---------------------------------------------------------------- idempotency

#[tokio::test]
async fn duplicate_request_replays_the_first_reply_without_charging_again() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(40), "cashuBchange")
        .build();
    let first = spawn(&service, "1", spawn_req(Some(60))).await;
    let second = spawn(&service, "1", spawn_req(Some(60))).await;
    // Even a different body under the same key is answered with the first reply.
    let third = spawn(&service, "1", spawn_req(Some(5))).await;
    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(backend.len(), 1);
}

#[tokio::test]
async fn in_flight_entries_are_removed_once_answered() {
    let (service, _, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert!(service.inflight.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_retry_of_a_request_left_paid_by_a_crash_gets_the_lease_without_a_second_redeem() {
    let mut ports = Ports::new().never_redeems().never_issues();
    ports.verifier.expect_inspect().never();
    ports.verifier.expect_prepare().never();
    let (service, backend, journal, _) = ports.build();
    let paid = Stage::Paid {
        purpose: Purpose::Spawn,
        lease: LeaseId::generate(),
        payment: Redeemed {
            mint: mint(),
            amount: Amount::sat(60),
        },
    };
    journal
        .put(&key("1"), &Entry::new(buyer(), start(), paid))
        .await
        .expect("journal");
    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(access.duration_seconds, HOUR);
    assert!(backend.spec(&access.pod_name).is_some());
    assert!(journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn a_request_id_from_another_sender_gets_nothing_of_the_stored_reply() {
    let (service, _, journal, _) = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(40), "change")
        .build();
    let first = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    let thief = Requester::new("test", "thief");
    let reply = service
        .handle(&key("1"), &thief, Request::Spawn(spawn_req(Some(60))))
        .await;
    let e = expect_error(reply.clone());
    assert_eq!(e.code, ErrorCode::RequestIdInUse);
    let text = serde_json::to_string(&reply).expect("json");
    assert!(!text.contains(first.ssh_password.expose()));
    assert!(!text.contains(first.pod_name.as_str()));
    assert!(e.refund_token.is_none());
    // The owner still gets the first reply.
    assert_eq!(
        spawn(&service, "1", spawn_req(Some(60))).await,
        Reply::AccessDetails(first)
    );
    assert_eq!(journal.len(), 1);
}

/// The journal's requester check is not the only guard: a stored reply whose lease the
/// backend says is someone else's (a corrupted or hand-edited journal, a key collision)
/// is not repeated, and only repeats pay for that lookup.
#[tokio::test]
async fn stored_login_details_of_another_owners_lease_are_not_replayed() {
    let (service, backend, journal, _) = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(40), "change")
        .build();
    let other = Requester::new("test", "other");
    let theirs = service
        .handle(&key("1"), &other, Request::Spawn(spawn_req(Some(60))))
        .await;
    let details = expect_access(theirs.clone());
    assert_eq!(backend.spec(&details.pod_name).expect("lease").owner, other);
    let stored = Entry::new(buyer(), start(), Stage::Done { reply: theirs });
    journal.put(&key("2"), &stored).await.expect("journal");

    let reply = spawn(&service, "2", spawn_req(Some(60))).await;
    let text = serde_json::to_string(&reply).expect("json");
    assert_eq!(expect_error(reply).code, ErrorCode::TokenAlreadySpent);
    assert!(!text.contains(details.ssh_password.expose()));
    // The owner's own repeat still gets it.
    let again = service
        .handle(&key("1"), &other, Request::Spawn(spawn_req(Some(60))))
        .await;
    assert_eq!(expect_access(again), details);
}

#[tokio::test]
async fn duplicate_of_a_request_with_a_pending_refund_still_says_it_is_pending() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100));
    ports
        .verifier
        .expect_issue_once()
        .returning(|_, _, _| Err(PaymentError::Issue("mint down".into())));
    let mut backend = mock_backend();
    backend
        .expect_create()
        .returning(|_| Err(BackendError::Unavailable("down".into())));
    backend.expect_delete().returning(|_| Ok(()));
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();

    let first = spawn(&service, "1", spawn_req(Some(60))).await;
    let again = spawn(&service, "1", spawn_req(Some(60))).await;
    assert_eq!(expect_error(first).code, ErrorCode::RefundPending);
    // Not "provisioning failed, your payment is refunded" without a refund token.
    assert_eq!(expect_error(again).code, ErrorCode::RefundPending);
}

#[tokio::test]
async fn mint_unavailable_reply_is_not_replayed_to_a_retry_of_the_same_request() {
    let mut ports = Ports::new().token_worth(Amount::sat(60));
    let mut calls = 0;
    ports
        .verifier
        .expect_redeem()
        .times(2)
        .returning(move |_, _| {
            calls += 1;
            if calls == 1 {
                Err(PaymentError::MintUnavailable("down".into()))
            } else {
                Ok(Redeemed {
                    mint: mint(),
                    amount: Amount::sat(60),
                })
            }
        });
    let (service, backend, _, _) = ports.build();
    let first = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(first.code, ErrorCode::MintUnavailable);
    assert!(first.code.is_retryable());
    let retry = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert!(backend.spec(&retry.pod_name).is_some());
    // ... and that success is now final.
    let again = spawn(&service, "1", spawn_req(Some(60))).await;
    assert_eq!(again, Reply::AccessDetails(retry));
}

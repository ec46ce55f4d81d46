//! Spawns: change, refunds, duplicates.

use super::*;

#[tokio::test]
async fn spawn_returns_spendable_change_and_keeps_exactly_the_price() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(a.duration_seconds, HOUR);
    assert_eq!(a.expires_at, at(HOUR));
    assert!(!fx.wallet.inner.is_unspent(&token));
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
    let spec = fx.backend.spec(&a.pod_name).expect("lease");
    assert_eq!(spec.password, a.ssh_password);
    assert_eq!(spec.username.as_str(), "alice");
}

#[tokio::test]
async fn spawn_without_duration_spends_the_whole_token_on_time() {
    let fx = Fixture::new();
    let a = access(fx.handle("1", spawn_req(&fx.wallet.token(45), None)).await);
    assert_eq!(a.duration_seconds, 45 * 60);
    assert!(a.change_token.is_none());
    assert_eq!(fx.wallet.balance(), 45);

    let a = access(
        fx.handle("2", spawn_req(&fx.wallet.token(1500), None))
            .await,
    );
    assert_eq!(a.duration_seconds, MAX_SECONDS);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 60);
    assert_eq!(fx.wallet.balance(), 45 + 1440);
}

#[tokio::test]
async fn insufficient_token_is_left_untouched() {
    let fx = Fixture::new();
    let token = fx.wallet.token(59);
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::InsufficientPayment);
    assert!(fx.wallet.inner.is_unspent(&token));
    assert_eq!(fx.wallet.redeems(), 0);
    assert!(fx.backend.is_empty());
}

#[tokio::test]
async fn spent_token_is_refused() {
    let fx = Fixture::new();
    let token = fx.wallet.token(60);
    fx.wallet.inner.spend(&token).expect("spend");
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::TokenAlreadySpent);
    assert!(fx.backend.is_empty());
}

#[tokio::test]
async fn mint_down_leaves_the_token_unspent_and_the_same_request_works_later() {
    let fx = Fixture::new();
    let token = fx.wallet.token(60);
    fx.wallet.inner.set_mint_down(true);
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::MintUnavailable);
    assert!(e.refund_token.is_none());
    assert!(fx.wallet.inner.is_unspent(&token));
    assert!(fx.backend.is_empty());

    fx.wallet.inner.set_mint_down(false);
    // The buyer resends the very same message: it is processed, not replayed.
    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert!(fx.backend.spec(&a.pod_name).is_some());
    assert!(!fx.wallet.inner.is_unspent(&token));
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test]
async fn mint_down_then_a_new_request_with_the_same_token_works() {
    let fx = Fixture::new();
    let token = fx.wallet.token(60);
    fx.wallet.inner.set_mint_down(true);
    error(fx.handle("1", spawn_req(&token, Some(60))).await);
    fx.wallet.inner.set_mint_down(false);
    access(fx.handle("2", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.backend.len(), 1);
}

#[tokio::test]
async fn failed_create_refunds_a_spendable_token_and_leaves_no_lease() {
    let fx = Fixture::new();
    fx.backend.fail_next(FailOn::Create);
    let token = fx.wallet.token(100);
    let reply = fx.handle("1", spawn_req(&token, Some(60))).await;
    let e = error(reply.clone());
    assert_eq!(e.code, ErrorCode::ProvisioningFailed);
    assert!(fx.backend.is_empty());
    // A duplicate gets the same refund token, not a second one.
    assert_eq!(fx.handle("1", spawn_req(&token, Some(60))).await, reply);
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 100);
    assert_eq!(fx.wallet.balance(), 0);
    assert!(fx.journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn change_that_cannot_be_issued_is_settled_later_and_replayed() {
    let fx = Fixture::new();
    fx.wallet.set_issue_down(true);
    let token = fx.wallet.token(100);
    let first = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert!(first.change_token.is_none());
    assert!(
        fx.backend.spec(&first.pod_name).is_some(),
        "the lease is granted"
    );
    let owed = fx.journal.unfinished().await.expect("journal");
    assert!(
        matches!(&owed[..], [(k, Entry { stage: Stage::Issuing { amount, .. }, .. })] if *k == key("1") && *amount == Amount::sat(40)),
        "{owed:?}"
    );

    // While owed, a duplicate gets the same lease and is told the change is pending.
    let dup = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(dup.pod_name, first.pod_name);
    assert!(dup.change_token.is_none());
    assert!(dup.instructions.iter().any(|i| i.contains("40 sat")));

    assert_eq!(fx.service.settle().await, 0, "mint still down");
    fx.wallet.set_issue_down(false);
    assert_eq!(fx.service.settle().await, 1);
    assert_eq!(fx.service.settle().await, 0);

    let dup = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(dup.pod_name, first.pod_name);
    assert_eq!(dup.ssh_password, first.ssh_password);
    assert_eq!(fx.wallet.spend(dup.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
    assert_eq!(fx.backend.len(), 1);
    assert_eq!(fx.wallet.redeems(), 1);
}

#[tokio::test]
async fn refund_that_cannot_be_issued_is_pending_then_settled() {
    let fx = Fixture::new();
    fx.backend.fail_next(FailOn::Create);
    fx.wallet.set_issue_down(true);
    let token = fx.wallet.token(100);
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::RefundPending);
    assert!(e.code.is_retryable());
    assert!(e.refund_token.is_none());
    assert!(fx.backend.is_empty());
    assert_eq!(fx.wallet.balance(), 100, "held until it can be returned");

    fx.wallet.set_issue_down(false);
    assert_eq!(fx.service.settle().await, 1);
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::ProvisioningFailed);
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 100);
    assert_eq!(fx.wallet.balance(), 0);
    assert!(fx.backend.is_empty());
}

#[tokio::test]
async fn sequential_duplicates_get_one_lease_one_redeem_and_identical_replies() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    let first = fx.handle("1", spawn_req(&token, Some(60))).await;
    for _ in 0..3 {
        assert_eq!(fx.handle("1", spawn_req(&token, Some(60))).await, first);
    }
    assert_eq!(fx.wallet.redeems(), 1);
    assert_eq!(fx.backend.len(), 1);
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test]
async fn concurrent_duplicates_get_one_lease_one_redeem_and_identical_replies() {
    let fx = Fixture::new();
    // The first redeem signals that it started, then waits to be released.
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, r) = (started.clone(), release.clone());
    fx.wallet.before_redeem(move |_| {
        let (s, r) = (s.clone(), r.clone());
        async move {
            s.notify_one();
            r.notified().await;
        }
        .boxed()
    });
    let token = fx.wallet.token(100);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let service = fx.service.clone();
        let request = spawn_req(&token, Some(60));
        tasks.push(tokio::spawn(async move {
            service.handle(&key("same"), &buyer(), request).await
        }));
    }
    started.notified().await;
    // Let every other copy run as far as it can (this runtime has one thread, so
    // each yield polls every ready task): each must wait for the first, none may be
    // answered on its own while the payment is in flight.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(tasks.iter().all(|t| !t.is_finished()));
    release.notify_one();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.expect("task"));
    }
    let a = access(replies[0].clone());
    assert!(replies.iter().all(|r| *r == replies[0]));
    assert_eq!(fx.wallet.redeems(), 1);
    assert_eq!(fx.backend.len(), 1);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_on_many_threads_get_one_lease() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let service = fx.service.clone();
        let request = spawn_req(&token, Some(60));
        tasks.push(tokio::spawn(async move {
            service.handle(&key("same"), &buyer(), request).await
        }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.expect("task"));
    }
    access(replies[0].clone());
    assert!(replies.iter().all(|r| *r == replies[0]));
    assert_eq!(fx.wallet.redeems(), 1);
    assert_eq!(fx.backend.len(), 1);
}

//! The service's money flows end to end over the in-memory ports: every redeemed sat
//! ends as lease time (in the service's wallet) or as a token the buyer can spend.

mod common;

use std::sync::Arc;

use common::*;
use futures::FutureExt;
use jiff::Timestamp;
use paygress_core::contract::sample_spec;
use paygress_core::memory::FailOn;
use paygress_core::{
    Amount, CashuToken, Entry, ErrorCode, Journal, JournalError, LeaseId, LeaseState, Paygress,
    PaymentVerifier, PodBackend, Purpose, RedeemAttempt, Reply, Request, RequestKey, Stage,
    StatusRequest,
};
use tokio::sync::{Barrier, Notify};

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

// ---------------------------------------------------------------- top-up

async fn lease_of_an_hour(fx: &Fixture) -> LeaseId {
    access(
        fx.handle("spawn", spawn_req(&fx.wallet.token(60), Some(60)))
            .await,
    )
    .pod_name
}

fn status(pod: &LeaseId) -> Request {
    Request::Status(StatusRequest {
        pod_name: pod.to_string(),
    })
}

#[tokio::test]
async fn top_up_extends_from_the_current_expiry() {
    let fx = Fixture::new();
    let pod = lease_of_an_hour(&fx).await;
    fx.clock.advance(1800);
    let t = topped_up(fx.handle("t", top_up_req(&pod, &fx.wallet.token(30))).await);
    assert_eq!(t.added_seconds, 1800);
    assert_eq!(t.expires_at, at(HOUR + 1800));
    match fx.handle("s", status(&pod)).await {
        Reply::Status(s) => {
            assert_eq!(s.remaining_seconds, HOUR);
            assert_eq!(s.state, LeaseState::Active);
        }
        other => panic!("{other:?}"),
    }
    let record = fx.backend.get(&pod).await.expect("get").expect("lease");
    assert_eq!(record.paid_msat, 90_000);
    assert_eq!(fx.wallet.balance(), 90);
}

#[tokio::test]
async fn top_up_of_an_unknown_or_expired_pod_leaves_the_token_untouched() {
    let fx = Fixture::new();
    let pod = lease_of_an_hour(&fx).await;
    let token = fx.wallet.token(30);

    let e = error(
        fx.handle("a", top_up_req(&LeaseId::generate(), &token))
            .await,
    );
    assert_eq!(e.code, ErrorCode::PodNotFound);
    fx.clock.advance(i64::try_from(HOUR).expect("fits"));
    let e = error(fx.handle("b", top_up_req(&pod, &token)).await);
    assert_eq!(e.code, ErrorCode::LeaseExpired);

    assert!(fx.wallet.inner.is_unspent(&token));
    assert_eq!(fx.wallet.redeems(), 1, "only the spawn");
}

#[tokio::test]
async fn top_up_at_the_maximum_leaves_the_token_untouched() {
    let fx = Fixture::new();
    let pod = access(
        fx.handle("spawn", spawn_req(&fx.wallet.token(1440), None))
            .await,
    )
    .pod_name;
    let token = fx.wallet.token(30);
    let e = error(fx.handle("t", top_up_req(&pod, &token)).await);
    assert_eq!(e.code, ErrorCode::LeaseAtMaximum);
    assert!(fx.wallet.inner.is_unspent(&token));
}

#[tokio::test]
async fn lease_expiring_between_the_check_and_the_lock_is_refunded() {
    let fx = Fixture::new();
    let pod = lease_of_an_hour(&fx).await;
    let clock = fx.clock.clone();
    fx.wallet.before_redeem(move |_| {
        clock.advance(3600);
        async {}.boxed()
    });
    let e = error(fx.handle("t", top_up_req(&pod, &fx.wallet.token(30))).await);
    assert_eq!(e.code, ErrorCode::LeaseExpired);
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 30);
    let record = fx.backend.get(&pod).await.expect("get").expect("lease");
    assert_eq!(record.expires_at, at(HOUR));
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test]
async fn a_passing_extend_failure_is_retried_once() {
    let fx = Fixture::new();
    let pod = lease_of_an_hour(&fx).await;
    fx.backend.fail_next(FailOn::Extend);
    let reply = fx.handle("t", top_up_req(&pod, &fx.wallet.token(30))).await;
    let Reply::TopUp(t) = reply else {
        panic!("expected a top-up, got {reply:?}")
    };
    assert_eq!(t.expires_at, at(HOUR + 1800));
    assert_eq!(fx.wallet.balance(), 90);
}

#[tokio::test]
async fn failed_extend_is_refunded_and_the_lease_unchanged() {
    let fx = Fixture::new();
    let pod = lease_of_an_hour(&fx).await;
    fx.backend.fail_next(FailOn::Extend);
    fx.backend.fail_next(FailOn::Extend);
    let e = error(fx.handle("t", top_up_req(&pod, &fx.wallet.token(30))).await);
    assert_eq!(e.code, ErrorCode::ProvisioningFailed);
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 30);
    let record = fx.backend.get(&pod).await.expect("get").expect("lease");
    assert_eq!(record.expires_at, at(HOUR));
    assert_eq!(record.paid_msat, 60_000);
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test]
async fn concurrent_top_ups_of_one_lease_are_both_counted() {
    // The backend yields between reads and writes, so without the per-lease lock both
    // top-ups would read the same expiry and one extension would be lost.
    let fx = Fixture::yielding();
    let pod = lease_of_an_hour(&fx).await;
    // Both payments are redeemed before either extends the lease.
    let barrier = Arc::new(Barrier::new(2));
    fx.wallet.before_redeem(move |_| {
        let b = barrier.clone();
        async move {
            b.wait().await;
        }
        .boxed()
    });
    let (k1, k2, who) = (key("t1"), key("t2"), buyer());
    let (r1, r2) = (
        top_up_req(&pod, &fx.wallet.token(30)),
        top_up_req(&pod, &fx.wallet.token(20)),
    );
    let (a, b) = tokio::join!(
        fx.service.handle(&k1, &who, r1),
        fx.service.handle(&k2, &who, r2),
    );
    let (a, b) = (topped_up(a), topped_up(b));
    assert_eq!(a.added_seconds + b.added_seconds, 50 * 60);
    assert_eq!(a.expires_at.max(b.expires_at), at(HOUR + 50 * 60));
    let record = fx.backend.get(&pod).await.expect("get").expect("lease");
    assert_eq!(record.expires_at, at(HOUR + 50 * 60));
    assert_eq!(record.paid_msat, 110_000);
    assert_eq!(fx.wallet.balance(), 110);
}

// ---------------------------------------------------------------- expiry and status

#[tokio::test]
async fn reaper_removes_only_expired_leases() {
    let fx = Fixture::new();
    let short = access(
        fx.handle("1", spawn_req(&fx.wallet.token(10), Some(10)))
            .await,
    )
    .pod_name;
    let long = lease_of_an_hour(&fx).await;
    fx.clock.advance(599);
    assert_eq!(fx.service.reap_expired().await.expect("reap"), 0);
    fx.clock.advance(1);
    assert_eq!(fx.service.reap_expired().await.expect("reap"), 1);
    assert!(fx.backend.get(&short).await.expect("get").is_none());
    assert!(fx.backend.get(&long).await.expect("get").is_some());
}

#[tokio::test]
async fn status_is_for_the_owner_only() {
    let fx = Fixture::new();
    let pod = lease_of_an_hour(&fx).await;
    let other = paygress_core::Requester::new("test", "someone-else");
    let e = error(fx.service.handle(&key("s"), &other, status(&pod)).await);
    assert_eq!(e.code, ErrorCode::NotOwner);
    assert!(matches!(
        fx.handle("s", status(&pod)).await,
        Reply::Status(_)
    ));
}

// ---------------------------------------------------------------- crash recovery

/// Simulates a crash after the swap: prepares and applies an attempt at the "mint" and
/// returns it with what the wallet received.
async fn swapped(fx: &Fixture, token: &CashuToken) -> (RedeemAttempt, paygress_core::Redeemed) {
    let attempt = fx.wallet.inner.prepare(token).await.expect("prepare");
    let payment = fx
        .wallet
        .inner
        .redeem(token, &attempt)
        .await
        .expect("redeem");
    (attempt, payment)
}

fn entry(stage: Stage) -> Entry {
    Entry::new(buyer(), Timestamp::UNIX_EPOCH, stage)
}

/// A spawn paid and half-created, then a crash: the journal says `Paid`.
async fn crashed_mid_spawn(fx: &Fixture, token: &CashuToken) -> LeaseId {
    let (_, payment) = swapped(fx, token).await;
    let mut spec = sample_spec(60);
    spec.owner = buyer();
    fx.backend.create(&spec).await.expect("create");
    let paid = Stage::Paid {
        purpose: Purpose::Spawn,
        lease: spec.id.clone(),
        payment,
    };
    fx.journal
        .put(&key("1"), &entry(paid))
        .await
        .expect("journal");
    spec.id
}

#[tokio::test]
async fn a_retry_after_a_crash_mid_spawn_gets_a_fresh_lease_and_no_second_charge() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    let half = crashed_mid_spawn(&fx, &token).await;

    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_ne!(a.pod_name, half, "the half-created pod is replaced");
    assert!(fx.backend.spec(&half).is_none());
    assert_eq!(fx.backend.len(), 1);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
    assert_eq!(fx.wallet.redeems(), 0, "the token is never redeemed again");
    assert!(fx.journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn settle_after_a_crash_mid_spawn_deletes_the_pod_and_refunds() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    crashed_mid_spawn(&fx, &token).await;

    assert_eq!(fx.service.settle().await, 1);
    assert!(fx.backend.is_empty());
    // The buyer's retry gets the refund settlement issued.
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 100);
    assert_eq!(fx.wallet.balance(), 0);
}

fn redeeming(lease: &LeaseId, token: &CashuToken, attempt: RedeemAttempt) -> Entry {
    entry(Stage::Redeeming {
        purpose: Purpose::Spawn,
        lease: lease.clone(),
        token: token.clone(),
        attempt,
    })
}

#[tokio::test]
async fn settle_after_a_crash_before_the_swap_leaves_the_token_to_the_buyer() {
    let fx = Fixture::new();
    let token = fx.wallet.token(60);
    let attempt = fx.wallet.inner.prepare(&token).await.expect("prepare");
    fx.journal
        .put(&key("1"), &redeeming(&LeaseId::generate(), &token, attempt))
        .await
        .expect("journal");
    assert_eq!(fx.service.settle().await, 1);
    assert!(fx.wallet.inner.is_unspent(&token));
    assert_eq!(fx.wallet.balance(), 0);
    // The buyer's retry of the same message now goes through.
    access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test]
async fn settle_after_a_crash_after_the_swap_refunds_what_the_wallet_received() {
    let fx = Fixture::new();
    fx.wallet.inner.set_fee_ppk(1000);
    let token = fx.wallet.token(60);
    let (attempt, _) = swapped(&fx, &token).await;
    fx.journal
        .put(&key("1"), &redeeming(&LeaseId::generate(), &token, attempt))
        .await
        .expect("journal");
    assert_eq!(fx.service.settle().await, 1);
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    // 60 sat face, 1 sat mint fee: 59 received, 59 returned.
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 59);
    assert_eq!(fx.wallet.balance(), 0);
}

#[tokio::test]
async fn a_forged_token_left_mid_swap_is_never_refunded_from_the_operators_wallet() {
    let fx = Fixture::new();
    // The operator holds other buyers' money.
    let income = fx.wallet.token(500);
    access(fx.handle("paid", spawn_req(&income, None)).await);
    let before = fx.wallet.balance();
    // The attacker spends a token himself, then sends it (claiming its value) and the
    // service crashes mid-swap.
    let forged = fx.wallet.token(1000);
    let attempt = fx.wallet.inner.prepare(&forged).await.expect("prepare");
    fx.wallet.inner.spend(&forged).expect("attacker spends it");
    fx.journal
        .put(
            &key("1"),
            &redeeming(&LeaseId::generate(), &forged, attempt),
        )
        .await
        .expect("journal");

    assert_eq!(fx.service.settle().await, 1);
    let e = error(fx.handle("1", spawn_req(&forged, Some(60))).await);
    assert_eq!(e.code, ErrorCode::TokenAlreadySpent);
    assert!(e.refund_token.is_none());
    assert_eq!(
        fx.wallet.balance(),
        before,
        "nothing left the operator's wallet"
    );
}

#[tokio::test]
async fn a_lost_mint_answer_ends_in_the_lease_for_the_retry_never_already_spent() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    fx.wallet.inner.lose_next_answer();
    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test]
async fn a_lost_mint_answer_with_the_mint_then_down_stays_open_until_the_retry() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    // The swap is applied, its answer lost, and the mint goes down before it can be
    // resolved: the request stays open, never "already spent".
    fx.wallet.inner.lose_next_answer_and_go_down();
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::PaymentPending, "{e:?}");
    assert!(fx.backend.is_empty());
    assert_eq!(
        fx.service.settle().await,
        0,
        "still unknown while the mint is down"
    );

    fx.wallet.inner.set_mint_down(false);
    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
    assert!(fx.journal.unfinished().await.expect("journal").is_empty());
}

/// A journal that reads fine but cannot write.
struct ReadOnlyJournal;

#[async_trait::async_trait]
impl Journal for ReadOnlyJournal {
    async fn get(&self, _: &RequestKey) -> Result<Option<Entry>, JournalError> {
        Ok(None)
    }
    async fn put(&self, _: &RequestKey, _: &Entry) -> Result<(), JournalError> {
        Err(JournalError::Io("read-only file system".into()))
    }
    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError> {
        Ok(vec![])
    }
    async fn prune(&self, _: Timestamp) -> Result<usize, JournalError> {
        Ok(0)
    }
}

#[tokio::test]
async fn without_a_journal_no_payment_is_taken() {
    let wallet = HookedVerifier::new();
    let backend = paygress_core::memory::MemoryBackend::new();
    let service = Paygress::builder(
        config(),
        Arc::new(wallet.clone()),
        Arc::new(backend.clone()),
    )
    .journal(Arc::new(ReadOnlyJournal))
    .build();
    let token = wallet.token(60);
    let e = error(
        service
            .handle(&key("1"), &buyer(), spawn_req(&token, Some(60)))
            .await,
    );
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(wallet.inner.is_unspent(&token));
    assert_eq!(wallet.redeems(), 0);
    assert!(backend.is_empty());
}

/// A journal whose `unfinished` snapshot is held back until told: settlement then acts
/// after the snapshot, as a slow one would while live requests complete.
#[derive(Clone)]
struct GatedJournal {
    inner: paygress_core::memory::MemoryJournal,
    snapshotted: Arc<Notify>,
    go: Arc<Notify>,
}

#[async_trait::async_trait]
impl Journal for GatedJournal {
    async fn get(&self, key: &RequestKey) -> Result<Option<Entry>, JournalError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        self.inner.put(key, entry).await
    }
    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError> {
        let snapshot = self.inner.unfinished().await;
        self.snapshotted.notify_one();
        self.go.notified().await;
        snapshot
    }
    async fn prune(&self, before: Timestamp) -> Result<usize, JournalError> {
        self.inner.prune(before).await
    }
}

#[tokio::test]
async fn settlement_never_acts_on_a_stale_snapshot_of_a_request_that_completed() {
    let wallet = HookedVerifier::new();
    let backend = paygress_core::memory::MemoryBackend::new();
    let journal = GatedJournal {
        inner: paygress_core::memory::MemoryJournal::new(),
        snapshotted: Arc::default(),
        go: Arc::default(),
    };
    let service = Arc::new(
        Paygress::builder(
            config(),
            Arc::new(wallet.clone()),
            Arc::new(backend.clone()),
        )
        .journal(Arc::new(journal.clone()))
        .clock(Arc::new(paygress_core::memory::ManualClock::new(start())))
        .build(),
    );
    // The request pauses inside its redeem (journal: Redeeming) until settlement has
    // taken its snapshot; then it completes while settlement still holds the snapshot.
    let in_redeem = Arc::new(Notify::new());
    let (signal, snapshotted) = (in_redeem.clone(), journal.snapshotted.clone());
    wallet.before_redeem(move |_| {
        let (signal, snapshotted) = (signal.clone(), snapshotted.clone());
        async move {
            signal.notify_one();
            snapshotted.notified().await;
        }
        .boxed()
    });
    let token = wallet.token(100);
    let live = {
        let service = service.clone();
        let token = token.clone();
        tokio::spawn(async move {
            service
                .handle(&key("1"), &buyer(), spawn_req(&token, Some(60)))
                .await
        })
    };
    in_redeem.notified().await;
    let settle = {
        let service = service.clone();
        tokio::spawn(async move { service.settle().await })
    };
    let a = access(live.await.expect("request"));
    journal.go.notify_one();
    assert_eq!(
        settle.await.expect("settle"),
        1,
        "the entry is found finished"
    );

    // The buyer keeps the lease and the change; nothing was refunded or deleted.
    assert!(backend.spec(&a.pod_name).is_some());
    assert_eq!(wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(wallet.balance(), 60);
    assert_eq!(
        service
            .handle(&key("1"), &buyer(), spawn_req(&token, Some(60)))
            .await,
        Reply::AccessDetails(a)
    );
}

#[tokio::test]
async fn a_request_resent_after_its_entry_was_pruned_is_never_charged_twice() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.journal.len(), 1);

    // Past the retention (7 days by default), settlement forgets the finished entry.
    fx.clock.advance(8 * 24 * 3600);
    fx.service.settle().await;
    assert!(fx.journal.is_empty(), "finished entries are pruned");

    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::TokenAlreadySpent);
    assert!(e.refund_token.is_none());
    assert_eq!(fx.wallet.balance(), 60, "charged once");
    assert_eq!(fx.backend.len(), 1, "provisioned once");
}

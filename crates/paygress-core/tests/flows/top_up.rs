//! Top-ups, expiry and status.

use super::*;

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

//! Service tests: the grace period (`GRACE_MINUTES`) between a lease's paid end and its
//! removal: status, reaping, top-ups that bring the lease back, releases.

use std::time::Duration;

use super::*;
use crate::protocol::{ReleaseRequest, ReleaseResult};

/// Ten minutes of grace.
const GRACE: u64 = 600;

impl Ports {
    /// Leases are kept [`GRACE`] seconds after their paid end.
    fn with_grace(mut self) -> Self {
        self.config.grace = Duration::from_secs(GRACE);
        self
    }

    /// The verifier accepts sat and msat at [`mint`] (a release prices its refund).
    fn accepts_sat_at_mint(mut self) -> Self {
        self.verifier
            .expect_accepted_units()
            .returning(|| vec![Unit::Sat, Unit::Msat]);
        self.verifier
            .expect_accepted_mints()
            .returning(|| vec![mint()]);
        self
    }
}

fn status_req(pod: &LeaseId) -> Request {
    Request::Status(StatusRequest {
        pod_name: pod.to_string(),
    })
}

/// A mock backend holding `record` (read any number of times).
fn backend_with(record: LeaseRecord) -> MockPodBackend {
    let id = record.id.clone();
    let mut backend = mock_backend();
    backend
        .expect_get()
        .with(eq(id))
        .returning(move |_| Ok(Some(record.clone())));
    backend
}

#[tokio::test]
async fn status_says_grace_between_the_paid_end_and_removal() {
    let (service, backend, _, clock) = Ports::new().with_grace().build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let state = |reply: Reply| match reply {
        Reply::Status(s) => (s.state, s.remaining_seconds),
        other => panic!("expected status, got {other:?}"),
    };
    clock.set(at(HOUR - 1));
    let s = state(
        service
            .handle(&key("a"), &buyer(), status_req(&lease))
            .await,
    );
    assert_eq!(s, (LeaseState::Active, 1));
    clock.set(at(HOUR));
    let s = state(
        service
            .handle(&key("b"), &buyer(), status_req(&lease))
            .await,
    );
    assert_eq!(s, (LeaseState::Grace, 0));
    clock.set(at(HOUR + GRACE));
    let s = state(
        service
            .handle(&key("c"), &buyer(), status_req(&lease))
            .await,
    );
    assert_eq!(s, (LeaseState::Expired, 0));
}

#[tokio::test]
async fn the_reaper_removes_a_lease_only_once_its_grace_period_is_over() {
    let (service, backend, _, clock) = Ports::new().with_grace().build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let (removed, next) = service.reap().await.expect("reap");
    assert_eq!((removed, next), (0, Some(at(HOUR + GRACE))));
    clock.set(at(HOUR + 1));
    let (removed, next) = service.reap().await.expect("reap");
    assert_eq!(removed, 0, "in grace: kept");
    assert_eq!(next, Some(at(HOUR + GRACE)), "wakes up when the grace ends");
    assert!(backend.get(&lease).await.expect("get").is_some());
    clock.set(at(HOUR + GRACE));
    assert_eq!(service.reap().await.expect("reap"), (1, None));
    assert!(backend.get(&lease).await.expect("get").is_none());
}

#[tokio::test]
async fn a_top_up_in_grace_counts_from_now_and_says_so() {
    let lease = LeaseId::generate();
    let mut backend = backend_with(record(&lease, at(HOUR)));
    backend
        .expect_extend()
        .with(
            eq(lease.clone()),
            eq(Extension {
                // From the top-up, not from the paid end five minutes ago.
                expires_at: at(HOUR + 300 + 1800),
                paid_msat: 60_000 + 30_000,
            }),
        )
        .times(1)
        .returning(|_, _| Ok(()));
    let mut ports = Ports::new()
        .with_grace()
        .token_worth(Amount::sat(30))
        .redeems(Amount::sat(30))
        .never_issues();
    ports.backend = Some(backend);
    let (service, _, _, clock) = ports.build();
    clock.set(at(HOUR + 300));
    let result = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(result.added_seconds, 1800);
    assert_eq!(result.expires_at, at(HOUR + 2100));
    let message = result.message.expect("a note on the revival");
    assert!(message.contains("not charged"), "{message}");
}

#[tokio::test]
async fn a_top_up_of_a_running_lease_has_no_revival_note() {
    let (service, backend, _, clock) = Ports::new()
        .with_grace()
        .token_worth(Amount::sat(30))
        .redeems(Amount::sat(30))
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.set(at(HOUR - 60));
    let result = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(result.expires_at, at(HOUR + 1800));
    assert!(result.message.is_none());
}

#[tokio::test]
async fn a_top_up_after_the_grace_period_leaves_the_token_untouched() {
    let (service, backend, _, clock) = Ports::new()
        .with_grace()
        .token_worth(Amount::sat(30))
        .never_redeems()
        .never_issues()
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.set(at(HOUR + GRACE));
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);
    assert!(err.refund_token.is_none());
}

#[tokio::test]
async fn without_grace_an_expired_lease_cannot_be_topped_up() {
    let (service, backend, _, clock) = Ports::new()
        .token_worth(Amount::sat(30))
        .never_redeems()
        .never_issues()
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.set(at(HOUR + 1));
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);
}

#[tokio::test]
async fn a_top_up_whose_lease_cannot_be_brought_back_is_refunded() {
    let lease = LeaseId::generate();
    let mut backend = backend_with(record(&lease, at(HOUR)));
    // The backend removed it meanwhile (its own grace ran out first).
    backend
        .expect_extend()
        .times(1)
        .returning(|id, _| Err(BackendError::NotFound(id.clone())));
    let mut ports = Ports::new()
        .with_grace()
        .token_worth(Amount::sat(30))
        .redeems(Amount::sat(30))
        .issues(Amount::sat(30), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, clock) = ports.build();
    clock.set(at(HOUR + 300));
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PodNotFound);
    assert_eq!(err.refund_token, Some(CashuToken::new("cashuBrefund")));
    assert!(matches!(journal.stage(&key("t")), Some(Stage::Done { .. })));
}

#[tokio::test]
async fn a_top_up_whose_grace_ends_while_it_is_paid_is_refunded() {
    let lease = LeaseId::generate();
    let expired = record(&lease, at(HOUR));
    let mut ports = Ports::new()
        .with_grace()
        .token_worth(Amount::sat(30))
        .redeems(Amount::sat(30))
        .issues(Amount::sat(30), "cashuBrefund");
    let clock = ports.clock.clone();
    let mut backend = mock_backend();
    // Each read takes a second: the lease is in grace when the token is checked and
    // past it once the payment is held.
    backend.expect_get().returning(move |_| {
        clock.advance(1);
        Ok(Some(expired.clone()))
    });
    backend.expect_extend().never();
    ports.backend = Some(backend);
    let (service, _, _, clock) = ports.build();
    clock.set(at(HOUR + GRACE - 1));
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);
    assert_eq!(err.refund_token, Some(CashuToken::new("cashuBrefund")));
}

#[tokio::test]
async fn an_unclear_top_up_settled_in_grace_counts_from_the_settlement() {
    let (service, backend, journal, clock) = Ports::new().with_grace().never_issues().build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    // Decided before the expiry; the backend's answer was lost and it did not move.
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
        .put(&key("t"), &Entry::new(buyer(), at(HOUR - 60), stage))
        .await
        .expect("journal");
    clock.set(at(HOUR + 300));
    assert_eq!(service.settle().await, 1);
    let record = backend.get(&lease).await.expect("get").expect("lease");
    assert_eq!(
        record.expires_at,
        at(HOUR + 300 + 1800),
        "all 1800 s from now"
    );
    assert_eq!(record.paid_msat, 90_000);
    match journal.stage(&key("t")) {
        Some(Stage::Done {
            reply: Reply::TopUp(t),
        }) => {
            assert_eq!(t.expires_at, at(HOUR + 2100));
            assert!(t.message.is_some());
        }
        other => panic!("expected a finished top-up, got {other:?}"),
    }
}

#[tokio::test]
async fn a_release_in_grace_refunds_nothing_and_does_not_bring_the_lease_back() {
    let lease = LeaseId::generate();
    let mut backend = backend_with(record(&lease, at(HOUR)));
    // No pin: it would start the stopped lease again.
    backend.expect_extend().never();
    backend
        .expect_delete()
        .with(eq(lease.clone()))
        .times(1)
        .returning(|_| Ok(()));
    let mut ports = Ports::new()
        .with_grace()
        .accepts_sat_at_mint()
        .never_issues();
    ports.backend = Some(backend);
    let (service, _, journal, clock) = ports.build();
    clock.set(at(HOUR + 60));
    let reply = service
        .handle(
            &key("r"),
            &buyer(),
            Request::Release(ReleaseRequest {
                pod_name: lease.to_string(),
            }),
        )
        .await;
    let released: ReleaseResult = match reply {
        Reply::Released(r) => r,
        other => panic!("expected a release, got {other:?}"),
    };
    assert!(released.refund_amount.is_zero());
    assert_eq!(released.refunded_seconds, 0);
    assert!(released.refund_token.is_none());
    assert!(matches!(journal.stage(&key("r")), Some(Stage::Done { .. })));
}

#[tokio::test]
async fn a_lease_in_grace_still_counts_against_max_leases() {
    let mut ports = Ports::new()
        .with_grace()
        .token_worth(Amount::sat(60))
        .never_redeems();
    ports.config.max_leases = Some(1);
    let (service, backend, _, clock) = ports.build();
    seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.set(at(HOUR + 1));
    let err = expect_error(spawn(&service, "s", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::Unavailable);
}

#[test]
fn grace_is_off_unless_configured() {
    assert_eq!(ServiceConfig::default().grace, Duration::ZERO);
}

//! Service tests: releases (early end with a refund of the unused time).

use mockall::Sequence;

use super::*;
use crate::protocol::{ReleaseRequest, ReleaseResult};

fn release_req(pod: &LeaseId) -> Request {
    Request::Release(ReleaseRequest {
        pod_name: pod.to_string(),
    })
}

fn expect_released(reply: Reply) -> ReleaseResult {
    match reply {
        Reply::Released(r) => r,
        other => panic!("expected a release, got {other:?}"),
    }
}

impl Ports {
    /// The verifier accepts sat and msat at [`mint`].
    fn refunds_in_sat(mut self) -> Self {
        self.verifier
            .expect_accepted_units()
            .returning(|| vec![Unit::Sat, Unit::Msat]);
        self.verifier
            .expect_accepted_mints()
            .returning(|| vec![mint()]);
        self
    }
}

/// A journaled release of `lease` (decided at [`start`] + 600 s, lease paid until an
/// hour): 50 sat for 3000 seconds.
fn journaled_release(lease: &LeaseId) -> Stage {
    Stage::Releasing {
        lease: lease.clone(),
        released_at: at(600),
        expires_at: at(HOUR),
        refunded_seconds: 3000,
        amount: Amount::sat(50),
        mint: mint(),
        pinned: false,
    }
}

#[tokio::test]
async fn release_refunds_the_unused_seconds_after_deleting_the_lease() {
    let lease = LeaseId::generate();
    let current = record(&lease, at(HOUR));
    let mut seq = Sequence::new();
    let mut backend = mock_backend();
    backend
        .expect_get()
        .with(eq(lease.clone()))
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| Ok(Some(current.clone())));
    backend
        .expect_extend()
        .with(eq(lease.clone()), always())
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    backend
        .expect_delete()
        .with(eq(lease.clone()))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    let mut ports = Ports::new().refunds_in_sat();
    ports
        .verifier
        .expect_issue_once()
        .with(always(), eq(mint()), eq(Amount::sat(50)))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(CashuToken::new("cashuBrefund")));
    ports.backend = Some(backend);
    let (service, _, journal, clock) = ports.build();
    clock.advance(600);

    let released = expect_released(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(released.pod_name, lease);
    assert_eq!(released.refunded_seconds, 3000);
    assert_eq!(released.refund_amount, Amount::sat(50));
    assert_eq!(released.released_at, at(600));
    assert_eq!(released.refund_token, Some(CashuToken::new("cashuBrefund")));
    let entry = journal.get(&key("r")).await.expect("get").expect("entry");
    assert!(matches!(entry.stage, Stage::Done { .. }), "{entry:?}");
}

#[tokio::test]
async fn release_charges_the_minimum_from_the_leases_start() {
    let (service, backend, _, clock) = Ports::new()
        .refunds_in_sat()
        .issues(Amount::sat(55), "cashuBrefund")
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    // 60 s used of the 5-minute minimum: 240 more seconds are charged.
    clock.advance(60);
    let released = expect_released(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(released.refunded_seconds, HOUR - 300);
    assert_eq!(released.refund_amount, Amount::sat(55));
    assert!(backend.get(&lease).await.expect("get").is_none());
}

#[tokio::test]
async fn release_uses_the_leases_tier_rate_and_never_refunds_more_than_was_paid() {
    let (service, backend, _, clock) = Ports::new()
        .refunds_in_sat()
        // 120 sat/hour for 3000 s is 100 sat, but only 60 sat were paid.
        .issues(Amount::sat(60), "cashuBrefund")
        .build();
    let lease = seed_lease(&backend, big_tier(), at(HOUR)).await;
    clock.advance(600);
    let released = expect_released(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(released.refund_amount, Amount::sat(60));
}

#[tokio::test]
async fn release_within_the_minimum_ends_the_lease_with_no_token() {
    let (service, backend, _, clock) = Ports::new().refunds_in_sat().never_issues().build();
    let lease = seed_lease(&backend, Tier::standard(), at(240)).await;
    clock.advance(30);
    let released = expect_released(
        service
            .handle(&key("r"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(released.refunded_seconds, 0);
    assert!(released.refund_amount.is_zero());
    assert!(released.refund_token.is_none());
    assert!(backend.get(&lease).await.expect("get").is_none());
}

#[tokio::test]
async fn only_the_owner_may_release() {
    let (service, backend, _, clock) = Ports::new().never_issues().build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(600);
    let stranger = Requester::new("test", "stranger");
    let err = expect_error(
        service
            .handle(&key("r"), &stranger, release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::NotOwner);
    assert!(err.refund_token.is_none());
    assert!(backend.get(&lease).await.expect("get").is_some());
}

#[tokio::test]
async fn a_second_release_is_refused_and_a_resend_replays_the_same_token() {
    let (service, backend, _, clock) = Ports::new()
        .refunds_in_sat()
        .issues(Amount::sat(50), "cashuBrefund")
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(600);
    let first = service
        .handle(&key("r"), &buyer(), release_req(&lease))
        .await;
    assert!(first.returned_token().is_some());
    // The same request again: the same reply, the same token.
    let resend = service
        .handle(&key("r"), &buyer(), release_req(&lease))
        .await;
    assert_eq!(resend, first);
    // A new release of the same lease: it is gone.
    let err = expect_error(
        service
            .handle(&key("r2"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PodNotFound);
    assert!(err.message.contains("released"), "{}", err.message);
    assert!(err.refund_token.is_none());
}

#[tokio::test]
async fn release_of_an_expired_starting_unknown_or_misnamed_lease_is_refused() {
    let (service, backend, _, clock) = Ports::new().never_issues().build();
    let expired = seed_lease(&backend, Tier::standard(), at(60)).await;
    clock.advance(120);
    let err = expect_error(
        service
            .handle(&key("a"), &buyer(), release_req(&expired))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);
    let err = expect_error(
        service
            .handle(&key("b"), &buyer(), release_req(&LeaseId::generate()))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PodNotFound);
    let bad = Request::Release(ReleaseRequest {
        pod_name: "ssh-pod-../../x".to_owned(),
    });
    let err = expect_error(service.handle(&key("c"), &buyer(), bad).await);
    assert_eq!(err.code, ErrorCode::InvalidPodName);

    let lease = LeaseId::generate();
    let mut starting = record(&lease, at(HOUR));
    starting.phase = crate::lease::LeasePhase::Provisioning;
    let mut mock = mock_backend();
    mock.expect_get()
        .returning(move |_| Ok(Some(starting.clone())));
    mock.expect_delete().never();
    let mut ports = Ports::new().never_issues();
    ports.backend = Some(mock);
    let (service, _, _, _) = ports.build();
    let err = expect_error(
        service
            .handle(&key("d"), &buyer(), release_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::Unavailable);
}

/// Releases interrupted: pins, unclear deletes, crashes and settlement.
mod recovery;

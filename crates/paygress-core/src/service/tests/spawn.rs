//! Service tests: spawn.

use super::*;

// ---------------------------------------------------------------- spawn: money

#[tokio::test]
async fn spawn_with_duration_charges_exact_price_and_issues_exact_change() {
    let (service, backend, journal, _) = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(40), "cashuBchange")
        .build();

    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);

    assert_eq!(access.duration_seconds, HOUR);
    assert_eq!(access.expires_at, at(HOUR));
    assert_eq!(access.ssh_username, "alice");
    assert_eq!(access.tier, "standard");
    assert_eq!(
        access.change_token.as_ref().map(CashuToken::expose),
        Some("cashuBchange")
    );
    let spec = backend.spec(&access.pod_name).expect("lease created");
    assert_eq!(spec.paid_msat, 60_000);
    assert_eq!(spec.expires_at, at(HOUR));
    assert_eq!(spec.owner, buyer());
    assert_eq!(spec.password, access.ssh_password);
    assert_eq!(spec.image, "linuxserver/openssh-server:latest");
    assert_eq!(spec.mint, mint());
    match journal.stage(&key("1")) {
        Some(Stage::Done { reply }) => assert_eq!(reply, Reply::AccessDetails(access)),
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn spawn_in_msat_returns_change_to_the_msat() {
    let (service, _, _, _) = Ports::new()
        .token_worth(Amount::msat(100_500))
        .redeems(Amount::msat(100_500))
        .issues(Amount::msat(40_500), "cashuBchange")
        .build();
    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(access.duration_seconds, HOUR);
}

#[tokio::test]
async fn spawn_paying_the_exact_price_issues_no_change() {
    let (service, _, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .never_issues()
        .build();
    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(access.duration_seconds, HOUR);
    assert!(access.change_token.is_none());
}

#[tokio::test]
async fn spawn_without_duration_buys_all_the_time_the_token_pays_for() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(90))
        .redeems(Amount::sat(90))
        .never_issues()
        .build();
    let access = expect_access(spawn(&service, "1", spawn_req(None)).await);
    assert_eq!(access.duration_seconds, 90 * 60);
    assert_eq!(access.expires_at, at(90 * 60));
    assert!(access.change_token.is_none());
    let spec = backend.spec(&access.pod_name).expect("lease created");
    assert_eq!(spec.paid_msat, 90_000);
}

#[tokio::test]
async fn spawn_without_duration_is_capped_at_the_maximum_with_change() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(2000))
        .redeems(Amount::sat(2000))
        .issues(Amount::sat(560), "cashuBchange")
        .build();
    let access = expect_access(spawn(&service, "1", spawn_req(None)).await);
    assert_eq!(access.duration_seconds, MAX_SECONDS);
    assert!(access.change_token.is_some());
    assert_eq!(
        backend.spec(&access.pod_name).expect("lease").paid_msat,
        1_440_000
    );
}

#[tokio::test]
async fn spawn_uses_the_requested_tiers_rate() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(150))
        .redeems(Amount::sat(150))
        .issues(Amount::sat(30), "cashuBchange")
        .build();
    let mut req = spawn_req(Some(60));
    req.tier = Some("big".to_owned());
    let access = expect_access(spawn(&service, "1", req).await);
    assert_eq!(access.tier, "big");
    assert_eq!(access.duration_seconds, HOUR);
    let spec = backend.spec(&access.pod_name).expect("lease");
    assert_eq!(spec.tier, big_tier());
    assert_eq!(spec.paid_msat, 120_000);
}

#[tokio::test]
async fn mint_fee_leaving_too_little_after_redeem_refunds_what_was_received() {
    // The face value covers the price, the amount credited after the mint's fee does not.
    let mut backend = mock_backend();
    backend.expect_create().never();
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(59))
        .issues(Amount::sat(59), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
    assert_eq!(
        err.refund_token.as_ref().map(CashuToken::expose),
        Some("cashuBrefund")
    );
}

// ---------------------------------------------------------------- spawn: the paid clock

fn backend_starting_at(expires_at: Timestamp) -> MockPodBackend {
    let mut backend = mock_backend();
    backend.expect_create().times(1).returning(move |_| {
        Ok(Provisioned {
            ssh_port: 2222,
            node_port: Some(30000),
            ssh_host: None,
            instructions: vec![],
            expires_at: Some(expires_at),
            host_keys: Vec::new(),
        })
    });
    backend
}

#[tokio::test]
async fn the_reply_counts_the_paid_time_from_when_the_backend_started_it() {
    // The pod became reachable 40 s after payment: the buyer still gets the full hour.
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .never_issues();
    ports.backend = Some(backend_starting_at(at(HOUR + 40)));
    let (service, _, _, _) = ports.build();
    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(access.expires_at, at(HOUR + 40));
    assert_eq!(access.duration_seconds, HOUR);
    assert!(
        access
            .instructions
            .iter()
            .any(|l| l.contains(&at(HOUR + 40).to_string())),
        "{:?}",
        access.instructions
    );
}

#[tokio::test]
async fn a_backend_expiry_earlier_than_paid_is_ignored() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .never_issues();
    ports.backend = Some(backend_starting_at(at(HOUR - 100)));
    let (service, _, _, _) = ports.build();
    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(access.expires_at, at(HOUR));
}

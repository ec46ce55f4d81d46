//! Service tests: capacity is checked before the token is touched.

use super::*;

#[tokio::test]
async fn a_full_service_refuses_a_spawn_without_redeeming() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .never_redeems()
        .never_issues();
    ports.verifier.expect_prepare().never();
    let (service, backend, journal, _) = {
        let mut config = config();
        config.max_leases = Some(1);
        let ports = ports;
        let backend: DynPodBackend = Arc::new(ports.memory.clone());
        let service = Paygress::builder(config, Arc::new(ports.verifier), backend)
            .journal(Arc::new(ports.memory_journal.clone()))
            .clock(Arc::new(ports.clock.clone()))
            .build();
        (service, ports.memory, ports.memory_journal, ports.clock)
    };
    seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let e = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("not redeemed"), "{}", e.message);
    assert!(journal.is_empty());
}

#[tokio::test]
async fn a_backend_out_of_room_refuses_a_spawn_without_redeeming() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .never_redeems()
        .never_issues();
    let mut backend = MockPodBackend::new();
    backend
        .expect_check_capacity()
        .returning(|| Err(BackendError::Rejected("no free port".into())));
    backend.expect_create().never();
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    let e = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("no free port"), "{}", e.message);
    assert!(journal.is_empty());
}

#[tokio::test]
async fn the_mint_fee_is_covered_by_the_token_and_shown_to_the_buyer() {
    // 62 sat face with a 2 sat fee: 60 received buys exactly the hour.
    let mut ports = Ports::new().never_issues();
    ports.verifier.expect_inspect().returning(|_| {
        Ok(TokenInfo {
            mint: mint(),
            amount: Amount::sat(62),
            fee: Amount::sat(2),
        })
    });
    ports
        .verifier
        .expect_prepare()
        .returning(|_| Ok(attempt(Amount::sat(62))));
    ports.verifier.expect_redeem().returning(|_, _| {
        Ok(Redeemed {
            mint: mint(),
            amount: Amount::sat(60),
        })
    });
    let (service, _, _, _) = ports.build();
    let a = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(a.duration_seconds, HOUR);
    assert!(
        a.instructions
            .iter()
            .any(|i| i.contains("fee") && i.contains("2 sat"))
    );

    // 61 sat with the same fee cannot cover the hour: refused untouched, fee named.
    let mut ports = Ports::new().never_redeems().never_issues();
    ports.verifier.expect_inspect().returning(|_| {
        Ok(TokenInfo {
            mint: mint(),
            amount: Amount::sat(61),
            fee: Amount::sat(2),
        })
    });
    let (service, _, _, _) = ports.build();
    let e = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(e.code, ErrorCode::InsufficientPayment);
    assert!(e.message.contains("fee of 2 sat"), "{}", e.message);
}

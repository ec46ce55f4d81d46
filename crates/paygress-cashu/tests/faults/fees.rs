//! Input fees: known after warm-up, charged to the buyer, never to the operator.

use super::*;

fn spawn(token: CashuToken, minutes: u64) -> Request {
    Request::Spawn(SpawnRequest::new(token).with_duration_minutes(minutes))
}

#[tokio::test]
async fn input_fee_is_known_after_warm_up_and_charged_to_the_buyer() {
    // One sat per proof.
    let mint = TestMint::start_with(TestMintOptions {
        input_fee_ppk: 1000,
        ..Default::default()
    })
    .await
    .expect("mint");
    let proxy = MintProxy::start(&mint).await.expect("proxy");
    let (v, _dir) = verifier(&[proxy.url()]).await;
    assert!(v.warm_up().await.is_empty());
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let proofs = Token::from_str(t.expose())
        .expect("decode")
        .token_secrets()
        .len() as u64;
    let info = v.inspect(&t).expect("inspect");
    assert_eq!(
        info.fee,
        Amount::sat(proofs),
        "fee known offline after warm-up"
    );

    let backend = Arc::new(MemoryBackend::new());
    // 60 sat per hour: 30 minutes cost 30 sat.
    let service = Paygress::builder(
        ServiceConfig::default(),
        Arc::new(v.clone()),
        backend.clone(),
    )
    .build();
    let alice = Requester::new("test", "alice");

    // Price + fee exceeds the token: refused untouched, and the answer names the fee.
    let short = token(&proxy, 31, TokenFormat::V4).await; // at least 5 proofs: fee >= 5
    let reply = service
        .handle(
            &RequestKey::new("test", "short"),
            &alice,
            spawn(short.clone(), 30),
        )
        .await;
    assert_eq!(
        reply.error_code(),
        Some(ErrorCode::InsufficientPayment),
        "{reply:?}"
    );
    let Reply::Error(e) = &reply else { panic!() };
    assert!(e.message.contains("fee"), "{}", e.message);
    assert!(v.check(&short).await.expect("check").spendable);

    // Enough for price + fee: the lease costs 30, the mint keeps its fee, the change is
    // the rest, and the wallet holds exactly the price.
    let reply = service
        .handle(&RequestKey::new("test", "ok"), &alice, spawn(t, 30))
        .await;
    let Reply::AccessDetails(access) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(access.duration_seconds, 30 * 60);
    let change = access.change_token.clone().expect("change");
    let change_value = Token::from_str(change.expose())
        .expect("decode")
        .value()
        .expect("value")
        .to_u64();
    assert!(proofs < 70);
    // Token = price + the redeem's fee + change + the fee for making the change (the
    // change is net of it, and the reply says how much).
    let issue_fee = 100 - proofs - 30 - change_value;
    assert!(issue_fee < 10, "issue fee {issue_fee}");
    if issue_fee > 0 {
        assert!(
            access
                .instructions
                .iter()
                .any(|i| i.contains(&format!("fee of {issue_fee} sat"))),
            "{:?}",
            access.instructions
        );
    }
    // The wallet holds exactly the price.
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 30);
}

/// Issuing change swaps the service's own proofs, and the mint takes its input fee
/// for that swap: the change is made net of it, so the operator keeps the price.
#[tokio::test]
async fn issuing_change_does_not_cost_the_operator() {
    let mint = TestMint::start_with(TestMintOptions {
        input_fee_ppk: 1000,
        ..Default::default()
    })
    .await
    .expect("mint");
    let proxy = MintProxy::start(&mint).await.expect("proxy");
    let (v, _dir) = verifier(&[proxy.url()]).await;
    v.warm_up().await;
    let service = Paygress::builder(
        ServiceConfig::default(),
        Arc::new(v.clone()),
        Arc::new(MemoryBackend::new()),
    )
    .build();
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let reply = service
        .handle(
            &RequestKey::new("test", "1"),
            &Requester::new("test", "alice"),
            spawn(t, 30),
        )
        .await;
    let Reply::AccessDetails(access) = reply else {
        panic!("expected access, got {reply:?}");
    };
    // The operator keeps exactly the price; the change is net of the mint's fee for
    // making it, and the reply says so.
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 30);
    let change = access.change_token.expect("change");
    let worth = v.inspect(&change).expect("inspect").amount;
    assert!(worth.value < 70, "change worth {worth}");
    assert!(
        access.instructions.iter().any(|i| i.contains("fee")),
        "{:?}",
        access.instructions
    );
}

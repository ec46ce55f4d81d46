//! Core's `Paygress` service paid with real ecash: change and refunds are real tokens.

mod common;

use std::sync::Arc;

use common::{balance, verifier_for};
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_core::memory::{FailOn, MemoryBackend};
use paygress_core::ports::RequestKey;
use paygress_core::protocol::{Reply, Request, SpawnRequest};
use paygress_core::{Paygress, Requester, ServiceConfig, Unit};

fn spawn(token: paygress_core::CashuToken, minutes: u64) -> Request {
    Request::Spawn(SpawnRequest::new(token).with_duration_minutes(minutes))
}

#[tokio::test]
async fn spawn_change_and_refund_are_spendable() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let backend = Arc::new(MemoryBackend::new());
    // Default rate: 60 sat per hour, one sat per minute.
    let service = Paygress::builder(
        ServiceConfig::default(),
        Arc::new(v.clone()),
        backend.clone(),
    )
    .build();
    let alice = Requester::new("test", "alice");

    // Overpay: 100 sat for 30 minutes.
    let token = mint.mint_token(100, TokenFormat::V4).await.expect("token");
    let reply = service
        .handle(&RequestKey::new("test", "1"), &alice, spawn(token, 30))
        .await;
    let Reply::AccessDetails(access) = &reply else {
        panic!("spawn failed: {reply:?}");
    };
    assert_eq!(access.duration_seconds, 30 * 60);
    let change = access.change_token.clone().expect("change");
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 30);
    assert_eq!(
        mint.redeem_as_buyer(&change).await.expect("redeem change"),
        70
    );
    assert_eq!(backend.len(), 1);

    // The backend fails: the whole payment comes back as a real token.
    backend.fail_next(FailOn::Create);
    let token = mint.mint_token(45, TokenFormat::V3).await.expect("token");
    let reply = service
        .handle(&RequestKey::new("test", "2"), &alice, spawn(token, 10))
        .await;
    assert!(reply.error_code().is_some(), "{reply:?}");
    let refund = reply.returned_token().expect("refund").clone();
    assert_eq!(
        mint.redeem_as_buyer(&refund).await.expect("redeem refund"),
        45
    );
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 30);
}

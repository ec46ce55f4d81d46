//! The whole service (core's `Paygress` with an in-memory wallet and journal) on the
//! Kubernetes backend and the fake cluster: a lease from payment to expiry, and a
//! refund when the pod never becomes ready.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fake, assert_empty, on_fake, pod_of, wait_for_pod};
use jiff::SignedDuration;
use paygress_core::memory::{MemoryJournal, MemoryVerifier};
use paygress_core::{
    Amount, DurationLimits, LeaseState, MintUrl, Paygress, Reply, Request, RequestKey, Requester,
    ServiceConfig, SpawnRequest, StatusRequest, TopUpRequest, Unit,
};
use paygress_k8s::K8sConfig;

const MINT: &str = "http://127.0.0.1:3338";

fn buyer() -> Requester {
    Requester::new("test", "buyer")
}

fn service(fake: &Fake, backend: Arc<paygress_k8s::K8sBackend>) -> (Paygress, MemoryVerifier) {
    let wallet = MemoryVerifier::new(vec![MintUrl::new(MINT)]);
    let config = ServiceConfig::default().with_limits(DurationLimits {
        min_seconds: 60,
        max_seconds: 24 * 3600,
    });
    let service = Paygress::builder(config, Arc::new(wallet.clone()), backend)
        .journal(Arc::new(MemoryJournal::new()))
        .clock(Arc::new(fake.clock()))
        .build();
    (service, wallet)
}

#[tokio::test]
async fn lifecycle_a_60_s_lease_topped_up_by_120_s_runs_180_s_from_readiness() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    fake.ready_after(Some(5));
    let backend = Arc::new(on_fake(client, &fake, K8sConfig::default()));
    let (service, wallet) = service(&fake, backend.clone());
    let service = Arc::new(service);
    let mint = MintUrl::new(MINT);
    // The default rate: 60 sat an hour, 1 sat a minute.
    let token = wallet.mint_token(&mint, Amount::sat(1));
    let s = service.clone();
    let spawn = tokio::spawn(async move {
        s.handle(
            &RequestKey::new("test", "spawn"),
            &buyer(),
            Request::Spawn(
                SpawnRequest::new(token)
                    .with_ssh_username("alice")
                    .with_duration_minutes(1),
            ),
        )
        .await
    });
    wait_for_pod(&fake, &spawn).await;
    fake.advance(5);
    let access = match spawn.await.unwrap() {
        Reply::AccessDetails(a) => a,
        other => panic!("{other:?}"),
    };
    let ready = common::epoch() + SignedDuration::from_secs(5);
    assert_eq!(access.expires_at, ready + SignedDuration::from_secs(60));
    assert_eq!(access.ssh_host, "172.18.0.3");
    let pod = access.pod_name.clone();
    fake.advance(30);
    let top_up = wallet.mint_token(&mint, Amount::sat(2));
    match service
        .handle(
            &RequestKey::new("test", "top-up"),
            &buyer(),
            Request::TopUp(TopUpRequest {
                pod_name: pod.to_string(),
                cashu_token: top_up,
            }),
        )
        .await
    {
        Reply::TopUp(t) => assert_eq!(t.added_seconds, 120),
        other => panic!("{other:?}"),
    }
    fake.advance(60);
    assert!(pod_of(&fake, pod.as_str()).is_some(), "running at 90 s");
    let status = service
        .handle(
            &RequestKey::new("test", "status"),
            &buyer(),
            Request::Status(StatusRequest {
                pod_name: pod.to_string(),
            }),
        )
        .await;
    match status {
        Reply::Status(s) => {
            assert_eq!(s.state, LeaseState::Active);
            assert_eq!(s.remaining_seconds, 90);
        }
        other => panic!("{other:?}"),
    }
    fake.advance(90);
    assert!(pod_of(&fake, pod.as_str()).is_none(), "gone at 180 s");
    assert_eq!(service.reap_expired().await.unwrap(), 1);
    assert_empty(&fake);
    assert_eq!(wallet.balance(&mint, Unit::Sat), 3);
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

#[tokio::test(start_paused = true)]
async fn lifecycle_a_pod_never_ready_is_refunded_in_full() {
    let (client, fake) = Fake::start();
    fake.enforce_rbac();
    fake.ready_after(None);
    let config = K8sConfig {
        ready_timeout: Duration::from_secs(120),
        ..K8sConfig::default()
    };
    let backend = Arc::new(on_fake(client, &fake, config));
    let (service, wallet) = service(&fake, backend);
    let mint = MintUrl::new(MINT);
    let token = wallet.mint_token(&mint, Amount::sat(10));
    let reply = service
        .handle(
            &RequestKey::new("test", "spawn"),
            &buyer(),
            Request::Spawn(
                SpawnRequest::new(token)
                    .with_ssh_username("alice")
                    .with_duration_minutes(10),
            ),
        )
        .await;
    let refund = match reply {
        Reply::Error(e) => e.refund_token.expect("a refund"),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        wallet.spend(&refund),
        Some(Amount::sat(10)),
        "refunded in full"
    );
    assert_eq!(wallet.balance(&mint, Unit::Sat), 0);
    assert_empty(&fake);
    assert!(fake.forbidden().is_empty(), "{:?}", fake.forbidden());
}

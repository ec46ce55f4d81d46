//! Issue 11, case 5, buyer side: `paygress request` keeps waiting when the lease's change
//! could not be issued (the mint went down right after the payment), receives the change
//! the service sends once settlement issues it, and saves it. The real `paygress`
//! binary against a service in this process: real relay, real mint, real wallet.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::memory::MemoryBackend;
use paygress_core::{
    BackendError, CashuToken, Extension, LeaseId, LeaseRecord, LeaseSpec, Paygress, PodBackend,
    Provisioned, ServiceConfig,
};
use paygress_nostr::nostr_sdk::{Client, Filter, Keys, Kind, RelayPoolNotification};
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::wire::KIND_REPLY;
use paygress_nostr::{NostrConfig, NostrTransport};
use tokio::sync::Mutex;

/// Creates pods in memory, and stops the mint as it does: the payment is in, the change
/// cannot be issued.
struct MintStopsOnCreate {
    inner: MemoryBackend,
    mint: Arc<Mutex<TestMint>>,
}

#[async_trait]
impl PodBackend for MintStopsOnCreate {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        self.mint.lock().await.stop().await;
        self.inner.create(spec).await
    }

    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        self.inner.extend(id, extension).await
    }

    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        self.inner.delete(id).await
    }

    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        self.inner.get(id).await
    }

    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        self.inner.list().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_waits_for_change_the_mint_could_not_issue_and_saves_it() {
    let relay = TestRelay::start().await.unwrap();
    let mint = TestMint::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let wallet = CashuVerifier::open(
        &CashuConfig::new(data.path().join("cashu.db"), [mint.url().to_string()]).unwrap(),
    )
    .await
    .unwrap();
    assert!(wallet.warm_up().await.is_empty(), "mint reachable");
    // 60 sat are 32+16+8+4 proofs: 30 sat of change needs a swap at the mint.
    let token = mint.mint_token(60, TokenFormat::V4).await.unwrap();
    let mint = Arc::new(Mutex::new(mint));
    let wallet = Arc::new(wallet);

    let service_keys = Keys::generate();
    let transport = Arc::new(
        NostrTransport::start(NostrConfig::new(
            service_keys.clone(),
            vec![relay.url()],
            data.path(),
        ))
        .await
        .unwrap(),
    );
    let backend = MintStopsOnCreate {
        inner: MemoryBackend::new(),
        mint: mint.clone(),
    };
    let service = Arc::new(
        Paygress::builder(ServiceConfig::default(), wallet.clone(), Arc::new(backend))
            .notifier(Arc::new(transport.notifier()))
            .build(),
    );
    tokio::spawn(service.clone().serve(transport.clone()));

    // Watch the buyer's replies as a relay client (to know when the first one is out).
    let buyer = Keys::generate();
    let watcher = Client::default();
    watcher.add_relay(relay.url()).await.unwrap();
    watcher.connect().await;
    watcher.wait_for_connection(Duration::from_secs(5)).await;
    let mut seen = watcher.notifications();
    let filter = Filter::new()
        .kind(Kind::Custom(KIND_REPLY))
        .author(service_keys.public_key())
        .pubkey(buyer.public_key());
    watcher.subscribe(filter, None).await.unwrap();

    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("pay.cashu");
    std::fs::write(&token_file, token.expose()).unwrap();
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_paygress"))
        .args([
            "request",
            "--service",
            &service_keys.public_key().to_hex(),
            "--relay",
            &relay.url().to_string(),
            "--token",
            token_file.to_str().unwrap(),
            "--duration",
            "30m",
            "--follow-up-timeout",
            "20",
            "--json",
        ])
        .env("PAYGRESS_CONFIG_DIR", home.path())
        .env("PAYGRESS_NSEC", buyer.secret_key().to_secret_hex())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The first reply (access details, change owed) is out. Bounded, so that a CLI that
    // failed before any reply ends the test with its output instead of hanging it.
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let RelayPoolNotification::Event { event, .. } = seen.recv().await.unwrap()
                && event.kind == Kind::Custom(KIND_REPLY)
            {
                break;
            }
        }
    })
    .await;
    if first.is_err() {
        let out = cli.wait_with_output().await.unwrap();
        panic!(
            "no first reply seen; cli: {} {}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The mint is back: settlement issues the change and sends it as a new reply.
    mint.lock().await.restart().await.unwrap();
    let mut settled = 0;
    for _ in 0..50 {
        settled = service.settle().await;
        if settled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = cli.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        settled,
        1,
        "the owed change was issued; cli: {stderr} {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success(), "{stderr}");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(reply["type"], "access_details", "{reply}");
    let saved = reply["saved_token_file"]
        .as_str()
        .unwrap_or_else(|| panic!("no change saved: {reply}"));
    let change = CashuToken::new(std::fs::read_to_string(saved).unwrap().trim());
    assert_eq!(
        change.expose(),
        reply["change_token"].as_str().unwrap(),
        "the saved file holds the change"
    );
    assert_eq!(
        mint.lock().await.redeem_as_buyer(&change).await.unwrap(),
        30
    );

    transport.shutdown().await;
    watcher.shutdown().await;
}

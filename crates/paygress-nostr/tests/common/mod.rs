//! Shared set-up: real relays on 127.0.0.1, a real core service on in-memory ports.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use paygress_core::memory::{MemoryBackend, MemoryVerifier};
use paygress_core::{
    Amount, CashuToken, MintUrl, Paygress, Request, ServiceConfig, SpawnRequest, StatusRequest,
};
use paygress_nostr::nostr_sdk::{Client, Event, EventId, Filter, Keys, Kind, RelayUrl};
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::wire::KIND_REPLY;
use paygress_nostr::{BuyerClient, NostrConfig, NostrTransport};
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Harness {
    pub relays: Vec<TestRelay>,
    pub backend: MemoryBackend,
    pub verifier: MemoryVerifier,
    pub mint: MintUrl,
    pub keys: Keys,
    pub data_dir: TempDir,
    pub transport: Arc<NostrTransport>,
    pub serve: JoinHandle<()>,
}

impl Harness {
    pub async fn start(relays: usize) -> Self {
        Self::start_with(relays, |_| {}).await
    }

    /// Like [`Harness::start`], adjusting the transport's config first.
    pub async fn start_with(relays: usize, configure: impl FnOnce(&mut NostrConfig)) -> Self {
        let mut started = Vec::new();
        for _ in 0..relays {
            started.push(TestRelay::start().await.unwrap());
        }
        let mint = MintUrl::new("http://127.0.0.1:3338");
        let verifier = MemoryVerifier::new(vec![mint.clone()]);
        let backend = MemoryBackend::new();
        let keys = Keys::generate();
        let data_dir = tempfile::tempdir().unwrap();
        let urls: Vec<RelayUrl> = started.iter().map(TestRelay::url).collect();
        let (transport, serve) = start_service_with(
            &keys,
            &urls,
            data_dir.path(),
            &backend,
            &verifier,
            configure,
        )
        .await;
        Self {
            relays: started,
            backend,
            verifier,
            mint,
            keys,
            data_dir,
            transport,
            serve,
        }
    }

    pub fn urls(&self) -> Vec<RelayUrl> {
        self.relays.iter().map(TestRelay::url).collect()
    }

    pub fn token(&self, sats: u64) -> CashuToken {
        self.verifier.mint_token(&self.mint, Amount::sat(sats))
    }

    pub async fn buyer(&self) -> BuyerClient {
        self.buyer_as(Keys::generate()).await
    }

    pub async fn buyer_as(&self, keys: Keys) -> BuyerClient {
        BuyerClient::connect(keys, &self.urls(), self.keys.public_key())
            .await
            .unwrap()
            .with_timeout(TIMEOUT)
    }

    /// Stops the transport and waits for `serve` to return (as a process exit would).
    pub async fn stop_service(&mut self) {
        self.transport.shutdown().await;
        (&mut self.serve).await.unwrap();
    }

    /// Starts a new service process: fresh core service and journal, same keys, data
    /// directory, backend and wallet.
    pub async fn restart_service(&mut self) {
        let (t, s) = start_service(
            &self.keys,
            &self.urls(),
            self.data_dir.path(),
            &self.backend,
            &self.verifier,
        )
        .await;
        self.transport = t;
        self.serve = s;
    }
}

pub async fn start_service(
    keys: &Keys,
    relays: &[RelayUrl],
    data_dir: &Path,
    backend: &MemoryBackend,
    verifier: &MemoryVerifier,
) -> (Arc<NostrTransport>, JoinHandle<()>) {
    start_service_with(keys, relays, data_dir, backend, verifier, |_| {}).await
}

pub async fn start_service_with(
    keys: &Keys,
    relays: &[RelayUrl],
    data_dir: &Path,
    backend: &MemoryBackend,
    verifier: &MemoryVerifier,
    configure: impl FnOnce(&mut NostrConfig),
) -> (Arc<NostrTransport>, JoinHandle<()>) {
    let service = Arc::new(
        Paygress::builder(
            ServiceConfig::default(),
            Arc::new(verifier.clone()),
            Arc::new(backend.clone()),
        )
        .build(),
    );
    let mut config = NostrConfig::new(keys.clone(), relays.to_vec(), data_dir);
    config.connect_timeout = Duration::from_secs(5);
    configure(&mut config);
    let transport = Arc::new(NostrTransport::start(config).await.unwrap());
    let serve = tokio::spawn(service.serve(transport.clone()));
    (transport, serve)
}

/// A request for a 30-minute lease paid with `token`, logging in as `user`.
pub fn spawn_as(token: CashuToken, user: Option<&str>) -> Request {
    let mut spawn = SpawnRequest::new(token).with_duration_minutes(30);
    spawn.ssh_username = user.map(str::to_owned);
    Request::Spawn(spawn)
}

/// A request for a 30-minute lease paid with `token`, logging in as `alice`.
pub fn spawn_req(token: CashuToken) -> Request {
    spawn_as(token, Some("alice"))
}

/// A status request for `pod`.
pub fn status_req(pod: &str) -> Request {
    Request::Status(StatusRequest {
        pod_name: pod.to_owned(),
    })
}

/// Every kind 1001 event on `relays` answering `id`, fetched by an independent client
/// as `nak req -k 1001 -e <id>` would.
pub async fn replies_on(relays: &[RelayUrl], id: EventId) -> Vec<Event> {
    let client = Client::default();
    for url in relays {
        client.add_relay(url.clone()).await.unwrap();
    }
    client.connect().await;
    client.wait_for_connection(TIMEOUT).await;
    let filter = Filter::new().kind(Kind::Custom(KIND_REPLY)).event(id);
    let events = client.fetch_events(filter, TIMEOUT).await.unwrap();
    client.shutdown().await;
    events.into_iter().collect()
}

//! A graceful shutdown shuts every transport down through the port: the Nostr
//! transport closes its relay connection, against a real in-process relay; and it
//! lets the pod backend finish what it owes leases (`PodBackend::shutdown`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use paygress_cashu::CashuConfig;
use paygress_core::memory::MemoryBackend;
use paygress_core::{
    BackendError, Extension, LeaseId, LeaseRecord, LeaseSpec, PodBackend, Provisioned,
    ServiceConfig,
};
use paygress_http::HttpConfig;
use paygress_node::{BackendConfig, HttpListen, Node, NodeConfig};
use paygress_nostr::NostrConfig;
use paygress_nostr::nostr_sdk::Keys;
use paygress_nostr::testkit::TestRelay;

/// A node on `backend`, HTTP on a free 127.0.0.1 port (the buyer API off), no
/// maintenance, its data under `data_dir`. No mint listens at its mint's address: the
/// node warns at start and serves anyway.
fn node_config(
    data_dir: &std::path::Path,
    backend: Arc<dyn PodBackend>,
    nostr: Option<NostrConfig>,
) -> NodeConfig {
    NodeConfig {
        service: ServiceConfig::default(),
        journal_path: data_dir.join("journal.jsonl"),
        cashu: CashuConfig::new(data_dir.join("cashu.db"), ["http://127.0.0.1:9"]).unwrap(),
        allow_shared_data: true,
        backend: BackendConfig::Custom(backend),
        nostr,
        http: HttpListen {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            api: false,
            config: HttpConfig::default(),
            web: None,
            web_addr: None,
            metrics: None,
        },
        maintenance: None,
        shutdown_grace: Duration::from_secs(5),
        data_dir: data_dir.to_path_buf(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_nostr_relay_connection() {
    let relay = TestRelay::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let node = Node::start(node_config(
        &data_dir,
        Arc::new(MemoryBackend::new()),
        Some(NostrConfig::new(
            Keys::generate(),
            vec![relay.url()],
            &data_dir,
        )),
    ))
    .await
    .unwrap();
    assert!(
        relay.wait_for_connections(1, Duration::from_secs(10)).await,
        "never: the node connects to the relay"
    );
    // Held past the shutdown: the service (and its Nostr notifier) outlive the node, so
    // only the transport's shutdown, not a drop, closes the connection.
    let service = node.service.clone();
    let transport = node.nostr.clone().unwrap();
    node.shutdown().await;
    assert!(
        relay.wait_for_connections(0, Duration::from_secs(10)).await,
        "never: the relay connection is closed"
    );
    assert_eq!(transport.relays_connected().await, 0);
    drop(service);
}

/// A memory backend that counts its shutdowns.
struct Counting(MemoryBackend, Arc<AtomicUsize>);

#[async_trait]
impl PodBackend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        self.0.create(spec).await
    }
    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        self.0.extend(id, extension).await
    }
    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        self.0.delete(id).await
    }
    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        self.0.get(id).await
    }
    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        self.0.list().await
    }
    async fn shutdown(&self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_backend_finish_what_it_owes_leases() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let node = Node::start(node_config(
        &data_dir,
        Arc::new(Counting(MemoryBackend::new(), shutdowns.clone())),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(shutdowns.load(Ordering::SeqCst), 0);
    node.shutdown().await;
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
}

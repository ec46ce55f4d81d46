//! A graceful shutdown shuts every transport down through the port: the Nostr
//! transport closes its relay connection, against a real in-process relay; and it
//! lets the pod backend finish what it owes leases (`PodBackend::shutdown`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use paygress_cashu::CashuConfig;
use paygress_core::memory::MemoryBackend;
use paygress_core::{PodBackend, ServiceConfig};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_backend_finish_what_it_owes_leases() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let backend = MemoryBackend::new();
    let node = Node::start(node_config(&data_dir, Arc::new(backend.clone()), None))
        .await
        .unwrap();
    assert_eq!(backend.shutdowns(), 0);
    node.shutdown().await;
    assert_eq!(backend.shutdowns(), 1);
}

//! Measures request → reply round trips over a local relay: a buyer sends N spawn
//! requests one after the other (NIP-44, then NIP-17) to a real core service.
//!
//! `cargo run -p paygress-nostr --example nostr_roundtrip --features test-relay --release -- 200`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use paygress_core::memory::{MemoryBackend, MemoryVerifier};
use paygress_core::{Amount, MintUrl, Paygress, Request, ServiceConfig, SpawnRequest};
use paygress_nostr::nostr_sdk::Keys;
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::{BuyerClient, NostrConfig, NostrTransport, Scheme, SendOptions};

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let relay = TestRelay::start().await.unwrap();
    let mint = MintUrl::new("http://127.0.0.1:3338");
    let verifier = MemoryVerifier::new(vec![mint.clone()]);
    let service = Arc::new(
        Paygress::builder(
            ServiceConfig::default(),
            Arc::new(verifier.clone()),
            Arc::new(MemoryBackend::new()),
        )
        .build(),
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::generate();
    let config = NostrConfig::new(keys.clone(), vec![relay.url()], dir.path());
    let transport = Arc::new(NostrTransport::start(config).await.unwrap());
    tokio::spawn(service.serve(transport.clone()));
    let buyer = BuyerClient::connect(Keys::generate(), &[relay.url()], keys.public_key())
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(30));
    for scheme in [Scheme::Nip44, Scheme::Nip04, Scheme::Nip17] {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let request = Request::Spawn(SpawnRequest::new(
                verifier.mint_token(&mint, Amount::sat(10)),
            ));
            let opts = SendOptions {
                scheme,
                p_tag: true,
            };
            let start = Instant::now();
            let reply = buyer.request(&request, opts).await.unwrap();
            times.push(start.elapsed());
            assert!(reply.error_code().is_none(), "{reply:?}");
        }
        times.sort();
        let pct = |p: usize| times[(times.len() - 1) * p / 100];
        println!(
            "{scheme:?}: {n} round trips, p50 {:?}, p90 {:?}, max {:?}",
            pct(50),
            pct(90),
            pct(100)
        );
    }
}

//! The service under test, built in-process from the real adapters: the cdk wallet
//! against the in-process mint, the file journal, a pod backend, the HTTP API and the
//! Nostr transport on the in-process relay. Every port is wrapped in a timer.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::{
    CashuToken, DynJournal, DynPaymentVerifier, DynPodBackend, Paygress, ServiceConfig,
};
use paygress_nostr::nostr_sdk::{Keys, PublicKey};
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::{NostrConfig, NostrLimits, NostrTransport, RateLimit};
use paygress_store::FileJournal;
use tokio::task::JoinHandle;

use crate::timed::{Recorder, TimedBackend, TimedJournal, TimedTransport, TimedVerifier};

/// Mints `n` tokens of `amount` sat each (in chunks of fresh wallets: one big wallet
/// slows down as it grows).
pub async fn tokens(mint: &TestMint, n: usize, amount: u64) -> Result<Vec<CashuToken>> {
    const CHUNK: usize = 50;
    let chunks: Vec<usize> = (0..n.div_ceil(CHUNK))
        .map(|i| CHUNK.min(n - i * CHUNK))
        .collect();
    let mut out = Vec::with_capacity(n);
    for group in chunks.chunks(4) {
        let minted = futures::future::try_join_all(group.iter().map(|&size| async move {
            let buyer = mint.buyer().await?;
            buyer.fund(amount * size as u64).await?;
            let mut v = Vec::with_capacity(size);
            for _ in 0..size {
                v.push(buyer.send(amount, TokenFormat::V4).await?);
            }
            Ok::<_, paygress_cashu::CashuError>(v)
        }))
        .await?;
        out.extend(minted.into_iter().flatten());
    }
    Ok(out)
}

/// A running service with its HTTP API (and optionally Nostr).
pub struct Stack {
    /// Base URL of the HTTP API.
    pub http_url: String,
    /// The service's Nostr key, when Nostr runs.
    pub nostr_key: Option<PublicKey>,
    /// The journal (fsync count).
    pub journal: FileJournal,
    tasks: Vec<JoinHandle<()>>,
    nostr: Option<Arc<NostrTransport>>,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Stack {
    /// Starts the service on `backend` against `mint`, with the HTTP API, and the Nostr
    /// transport when `relay` is given.
    pub async fn start(
        mint: &TestMint,
        backend: DynPodBackend,
        relay: Option<&TestRelay>,
        rec: &Recorder,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let wallet = CashuVerifier::open(&CashuConfig::new(
            dir.path().join("cashu.db"),
            [mint.url().to_string()],
        )?)
        .await?;
        if let Some((mint, _, e)) = wallet.warm_up().await.into_iter().next() {
            bail!("mint {mint} not reachable: {e}");
        }
        let payments: DynPaymentVerifier = Arc::new(TimedVerifier(Arc::new(wallet), rec.clone()));
        let timed_backend = Arc::new(TimedBackend::new(backend, rec.clone()));
        let journal = FileJournal::open(dir.path().join("journal.jsonl"))?;
        let timed_journal: DynJournal =
            Arc::new(TimedJournal(Arc::new(journal.clone()), rec.clone()));
        let config = ServiceConfig::default()
            .with_name("paygress-bench")
            .with_ssh_host("127.0.0.1")
            .with_max_concurrent_requests(512);
        let mut builder =
            Paygress::builder(config, payments.clone(), timed_backend).journal(timed_journal);
        let mut tasks = Vec::new();
        let mut nostr = None;
        let mut nostr_key = None;
        if let Some(relay) = relay {
            let keys = Keys::generate();
            nostr_key = Some(keys.public_key());
            let mut config = NostrConfig::new(keys, vec![relay.url()], dir.path());
            let open = RateLimit {
                burst: 1_000_000,
                per_minute: 1_000_000,
            };
            config.limits = NostrLimits {
                per_sender: open,
                global: open,
                untagged: open,
                error_replies: open,
                max_in_flight: 4096,
            };
            config.dedup_capacity = 1_000_000;
            let transport = Arc::new(NostrTransport::start(config).await.context("nostr")?);
            builder = builder.notifier(Arc::new(transport.notifier()));
            nostr = Some(transport);
        }
        let service = Arc::new(builder.build());
        if let Some(t) = &nostr {
            let timed = Arc::new(TimedTransport(t.clone(), rec.clone()));
            tasks.push(tokio::spawn(service.clone().serve(timed)));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http_url = format!("http://{}", listener.local_addr()?);
        let api = paygress_http::HttpApi::new(
            service.clone(),
            payments,
            paygress_http::HttpConfig {
                rate_limit_per_minute: None,
                ..paygress_http::HttpConfig::default()
            },
        );
        tasks.push(tokio::spawn(async move {
            let _ = api.serve(listener, std::future::pending()).await;
        }));
        Ok(Self {
            http_url,
            nostr_key,
            journal,
            tasks,
            nostr,
            _dir: dir,
        })
    }

    /// Stops the Nostr transport.
    pub async fn shutdown(&self) {
        if let Some(n) = &self.nostr {
            n.shutdown().await;
        }
    }
}

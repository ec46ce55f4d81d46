//! Each scenario: set up, run, return what was measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use paygress_cashu::testkit::TestMint;
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::protocol::SpawnRequest;
use paygress_core::{CashuToken, LeaseId, Reply};
use paygress_nostr::BuyerClient;
use paygress_nostr::nostr_sdk::{
    Client, EventBuilder, Filter, Keys, Kind, RelayMessage, RelayPoolNotification,
};
use paygress_nostr::testkit::TestRelay;
use serde_json::{Value, json};

use crate::load::{self, Run};
use crate::stack::Stack;
use crate::stats::Summary;
use crate::timed::Recorder;
use paygress_k8s::fake::{NS, Served};

fn idempotency_key() -> String {
    format!("bench-{:032x}", rand::random::<u128>())
}

/// A fresh wallet as the service opens it (its database in a temporary directory,
/// returned with it), warmed up against `mint`.
async fn service_wallet(mint: &TestMint) -> Result<(tempfile::TempDir, CashuVerifier)> {
    let dir = tempfile::tempdir()?;
    let wallet = CashuVerifier::open(&CashuConfig::new(
        dir.path().join("cashu.db"),
        [mint.url().to_string()],
    )?)
    .await?;
    wallet.warm_up().await;
    Ok((dir, wallet))
}

/// One swap against the mint: a fresh service-style wallet receiving tokens one by one.
pub async fn floor_swap(mint: &TestMint, tokens: Vec<CashuToken>) -> Result<Summary> {
    let (_dir, wallet) = service_wallet(mint).await?;
    let mut lat = Vec::new();
    for t in &tokens {
        let t0 = Instant::now();
        wallet.receive(t).await?;
        lat.push(t0.elapsed());
    }
    Ok(Summary::of(&lat))
}

/// The mint alone under load: one service-style wallet receiving `tokens` with
/// `concurrency` at a time (closed loop, as the spawn scenarios); what the service's
/// paid spawns per second are compared with.
pub async fn floor_swap_rate(
    mint: &TestMint,
    tokens: Vec<CashuToken>,
    concurrency: usize,
    rec: &Recorder,
) -> Result<Run> {
    let (_dir, wallet) = service_wallet(mint).await?;
    let wallet = Arc::new(wallet);
    let n = tokens.len();
    let tokens = Arc::new(tokens);
    load::run("mint alone", n, concurrency, rec, move |i| {
        let (wallet, tokens) = (wallet.clone(), tokens.clone());
        async move {
            wallet.receive(&tokens[i]).await?;
            Ok(())
        }
    })
    .await
}

/// One relay round trip: publish an event and see it arrive at another client's
/// subscription (a client does not report events it sent itself).
pub async fn floor_relay(relay: &TestRelay, n: usize) -> Result<Summary> {
    let keys = Keys::generate();
    let publisher = Client::builder().signer(keys.clone()).build();
    let reader = Client::builder().signer(Keys::generate()).build();
    for c in [&publisher, &reader] {
        c.add_relay(relay.url()).await?;
        c.connect().await;
        c.wait_for_connection(Duration::from_secs(5)).await;
    }
    let mut notes = reader.notifications();
    let sub = reader
        .subscribe(
            Filter::new()
                .author(keys.public_key())
                .kind(Kind::TextNote)
                .limit(0),
            None,
        )
        .await?
        .val;
    // Publish only once the relay holds the subscription (its EOSE): an event it
    // receives earlier is stored, not sent, and the first round trip never ends.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), notes.recv()).await?? {
            RelayPoolNotification::Message {
                message: RelayMessage::EndOfStoredEvents(id),
                ..
            } if *id == sub => break,
            _ => {}
        }
    }
    let mut lat = Vec::new();
    for i in 0..n + 1 {
        let event = EventBuilder::text_note(format!("ping {i}")).sign_with_keys(&keys)?;
        let t0 = Instant::now();
        publisher.send_event(&event).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), notes.recv()).await?? {
                RelayPoolNotification::Event { event: e, .. } if e.id == event.id => break,
                _ => {}
            }
        }
        if i > 0 {
            lat.push(t0.elapsed());
        }
    }
    publisher.shutdown().await;
    reader.shutdown().await;
    Ok(Summary::of(&lat))
}

/// One API call: a GET through the same kube client the backend uses.
pub async fn floor_api(api: &Served, n: usize) -> Result<Summary> {
    let jobs: kube::Api<Job> = kube::Api::namespaced(api.client()?, NS);
    let mut lat = Vec::new();
    for i in 0..n + 1 {
        let t0 = Instant::now();
        let _ = jobs.get_opt("no-such-job").await?;
        if i > 0 {
            lat.push(t0.elapsed());
        }
    }
    Ok(Summary::of(&lat))
}

/// Spawns over HTTP, one token each; returns the run and the leases made.
pub async fn http_spawns(
    name: &str,
    stack: &Stack,
    tokens: Vec<CashuToken>,
    concurrency: usize,
    rec: &Recorder,
) -> Result<(Run, Vec<LeaseId>)> {
    let http = reqwest::Client::new();
    let url = format!("{}/spawn-pod", stack.http_url);
    let tokens = Arc::new(tokens);
    let leases = Arc::new(std::sync::Mutex::new(Vec::new()));
    let n = tokens.len();
    let (t, l) = (tokens.clone(), leases.clone());
    let run = load::run(name, n, concurrency, rec, move |i| {
        let (http, url, t, l) = (http.clone(), url.clone(), t.clone(), l.clone());
        async move {
            let resp = http
                .post(&url)
                .header("Idempotency-Key", idempotency_key())
                .json(&json!({"cashu_token": t[i].expose()}))
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json().await?;
            ensure!(status.is_success(), "spawn answered {status}: {body}");
            let lease: LeaseId = body["pod_name"]
                .as_str()
                .context("pod_name")?
                .parse()
                .context("lease id")?;
            l.lock().unwrap_or_else(|p| p.into_inner()).push(lease);
            Ok(())
        }
    })
    .await?;
    let leases = leases.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((run, leases))
}

/// Top-ups over HTTP, lease `i % leases.len()` with token `i`.
pub async fn http_top_ups(
    stack: &Stack,
    leases: Vec<LeaseId>,
    tokens: Vec<CashuToken>,
    concurrency: usize,
    rec: &Recorder,
) -> Result<Run> {
    ensure!(!leases.is_empty(), "no leases to top up");
    let http = reqwest::Client::new();
    let url = format!("{}/top-up-pod", stack.http_url);
    let tokens = Arc::new(tokens);
    let leases = Arc::new(leases);
    let n = tokens.len();
    load::run("HTTP top-up", n, concurrency, rec, move |i| {
        let (http, url, t, l) = (http.clone(), url.clone(), tokens.clone(), leases.clone());
        async move {
            let resp = http
                .post(&url)
                .header("Idempotency-Key", idempotency_key())
                .json(&json!({"pod_name": l[i % l.len()].as_str(), "cashu_token": t[i].expose()}))
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json().await?;
            ensure!(status.is_success(), "top-up answered {status}: {body}");
            Ok(())
        }
    })
    .await
}

/// Spawns over Nostr (NIP-17 gift wraps, the default), one buyer client per worker.
pub async fn nostr_spawns(
    stack: &Stack,
    relay: &TestRelay,
    tokens: Vec<CashuToken>,
    concurrency: usize,
    rec: &Recorder,
) -> Result<Run> {
    let service = stack.nostr_key.context("nostr not started")?;
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        clients.push(
            BuyerClient::connect(Keys::generate(), &[relay.url()], service)
                .await?
                .with_timeout(Duration::from_secs(60)),
        );
    }
    let clients = Arc::new(clients);
    let tokens = Arc::new(tokens);
    let n = tokens.len();
    let c = clients.clone();
    let run = load::run("Nostr spawn", n, concurrency, rec, move |i| {
        let (c, t) = (c.clone(), tokens.clone());
        async move {
            let reply = c[i % c.len()]
                .spawn(SpawnRequest::new(t[i].clone()))
                .await?;
            match reply {
                Reply::AccessDetails(_) => Ok(()),
                other => bail!("spawn over Nostr answered {other:?}"),
            }
        }
    })
    .await?;
    for c in clients.iter() {
        c.shutdown().await;
    }
    Ok(run)
}

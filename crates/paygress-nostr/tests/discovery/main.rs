//! Issue 15 acceptance: offers as NIP-89/NIP-99 events with NIP-40 expiration, relay
//! lists (NIP-65, NIP-17) used both ways, NIP-05 and nprofile service names, and a
//! market of providers, against real in-process relays and real core services.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod names;
mod offers;
mod providers;
mod relay_lists;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, TIMEOUT, spawn_req, start_service_with, status_req};
use paygress_core::memory::{MemoryBackend, MemoryVerifier};
use paygress_core::{Amount, MintUrl, Offer, Paygress, Rate, Reply, ServiceConfig};
use paygress_nostr::directory::inbox_relays_event;
use paygress_nostr::market::{self, Reachability, SortBy, SurveyOptions};
use paygress_nostr::nostr_sdk::nips::nip65::RelayMetadata;
use paygress_nostr::nostr_sdk::{
    Alphabet, Client, Event, EventBuilder, Filter, Keys, Kind, PublicKey, RelayUrl,
    SingleLetterTag, TagKind, Timestamp,
};
use paygress_nostr::offer::{OfferMeta, offer_events};
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::wire::NostrOffer;
use paygress_nostr::{
    BuyerClient, NostrConfig, NostrTransport, Scheme, SendOptions, ServiceRef, fetch_offers,
    fetch_offers_at, reach, resolve_service,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Polls `check` until it holds (or fails the test after `TIMEOUT`).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never saw: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn client_on(relays: &[RelayUrl], keys: Option<&Keys>) -> Client {
    let client = match keys {
        Some(k) => Client::builder().signer(k.clone()).build(),
        None => Client::default(),
    };
    for url in relays {
        client.add_relay(url.clone()).await.unwrap();
    }
    client.connect().await;
    client.wait_for_connection(TIMEOUT).await;
    client
}

async fn fetch(relay: &RelayUrl, filter: Filter) -> Vec<Event> {
    let client = client_on(std::slice::from_ref(relay), None).await;
    let events = client.fetch_events(filter, TIMEOUT).await.unwrap();
    client.shutdown().await;
    events.into_iter().collect()
}

fn tag<'a>(e: &'a Event, name: &str) -> Vec<&'a [String]> {
    e.tags
        .iter()
        .filter(|t| t.kind() == TagKind::custom(name) || t.kind().to_string() == name)
        .map(|t| t.as_slice())
        .collect()
}

/// Waits until the harness service has published its offer (serve() publishes it
/// before taking requests, so an answered request proves it).
async fn offer_published(h: &Harness) {
    let buyer = h.buyer().await;
    buyer
        .request(&status_req("ssh-pod-00000000"), SendOptions::default())
        .await
        .unwrap();
    buyer.shutdown().await;
}

fn offer_template(name: &str, sat_per_hour: u64) -> Offer {
    Offer {
        name: name.into(),
        version: "0.1.0".into(),
        rate_sats_per_hour: sat_per_hour,
        rate_msat_per_hour: sat_per_hour * 1000,
        tiers: vec![],
        min_duration_minutes: 1,
        max_duration_minutes: 60,
        mints: vec![MintUrl::new("http://127.0.0.1:3338")],
        units: vec![paygress_core::Unit::Sat],
        ssh_host: "127.0.0.1".into(),
        backend: "memory".into(),
        images: vec!["img".into()],
        locking_key: None,
    }
}

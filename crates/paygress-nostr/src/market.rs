//! A market of providers: every live offer found on the buyer's relays, each checked for
//! reachability with a status request, and the cheapest live provider for a tier.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nostr_sdk::{
    Client, EventBuilder, EventId, Filter, Keys, Kind, PublicKey, RelayPoolNotification, RelayUrl,
    Tag, Timestamp,
};
use paygress_core::{MintUrl, Reply, Request, StatusRequest};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::client::offer_events_by_relay;
use crate::directory::{RelayLists, fetch_from, relay_lists_filter};
use crate::error::NostrError;
use crate::offer::{DiscoveredOffer, collect_offers, price_msat_per_hour};
use crate::wire::{self, KIND_REPLY, RequestKind, Scheme};

/// Lease name used by reachability checks (no lease has it: any answer will do).
pub const PROBE_POD: &str = "paygress-reachability-check";

/// Whether a provider answered a status request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reachability {
    /// It answered, after `latency_ms` milliseconds.
    Answered {
        /// From publishing the request to receiving the reply.
        latency_ms: u64,
    },
    /// No answer within the survey's timeout.
    NoAnswer,
    /// Not checked.
    NotChecked,
}

impl Reachability {
    /// The latency when it answered.
    pub fn latency(&self) -> Option<Duration> {
        match self {
            Reachability::Answered { latency_ms } => Some(Duration::from_millis(*latency_ms)),
            _ => None,
        }
    }
}

/// One provider in the market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// Its offer.
    pub offer: DiscoveredOffer,
    /// Where it reads requests: its NIP-65 read relays, else the relays its offer is on.
    pub relays: Vec<RelayUrl>,
    /// Whether it answered.
    pub reachability: Reachability,
}

impl Listing {
    /// Price per hour of `tier` (`None`: its default tier) in msat.
    pub fn price_msat_per_hour(&self, tier: Option<&str>) -> Option<u64> {
        price_msat_per_hour(&self.offer.offer, tier)
    }

    /// Whether it accepts tokens of at least one of `mints` (any when `mints` is empty).
    pub fn accepts_any(&self, mints: &[MintUrl]) -> bool {
        let norm = |m: &MintUrl| m.as_str().trim_end_matches('/').to_ascii_lowercase();
        mints.is_empty()
            || self
                .offer
                .offer
                .offer
                .mints
                .iter()
                .any(|m| mints.iter().any(|b| norm(b) == norm(m)))
    }
}

/// How to survey the market.
#[derive(Debug, Clone)]
pub struct SurveyOptions {
    /// How long to wait for relays, and for answers to reachability checks.
    pub timeout: Duration,
    /// Send each provider a status request and time its answer.
    pub probe: bool,
    /// The time offers are judged at (`None`: now).
    pub now: Option<Timestamp>,
}

impl Default for SurveyOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            probe: true,
            now: None,
        }
    }
}

/// Lists every live provider whose offer is on `relays`, with where it reads requests
/// and (when `opts.probe`) whether it answered a status request from a throwaway key.
pub async fn survey(relays: &[RelayUrl], opts: &SurveyOptions) -> Result<Vec<Listing>, NostrError> {
    let keys = Keys::generate();
    let client = Client::builder().signer(keys.clone()).build();
    for url in relays {
        client.add_relay(url.clone()).await?;
    }
    let notifications = client.notifications();
    client.connect().await;
    client.wait_for_connection(opts.timeout).await;
    let result = survey_with(&client, notifications, &keys, relays, opts).await;
    client.shutdown().await;
    result
}

async fn survey_with(
    client: &Client,
    notifications: broadcast::Receiver<RelayPoolNotification>,
    keys: &Keys,
    relays: &[RelayUrl],
    opts: &SurveyOptions,
) -> Result<Vec<Listing>, NostrError> {
    let now = opts.now.unwrap_or_else(Timestamp::now);
    let offers = collect_offers(
        offer_events_by_relay(client, relays, opts.timeout).await?,
        now,
    );
    let providers: Vec<PublicKey> = offers.iter().map(|o| o.service).collect();
    let lists = if providers.is_empty() {
        vec![]
    } else {
        fetch_from(
            client,
            relays,
            vec![relay_lists_filter(providers.iter().copied())],
            opts.timeout,
        )
        .await
        .unwrap_or_default()
    };
    let mut listings: Vec<Listing> = offers
        .into_iter()
        .map(|offer| {
            let found = RelayLists::from_events(&offer.service, lists.iter());
            let relays = if found.read.is_empty() {
                offer.relays.clone()
            } else {
                found.read
            };
            Listing {
                offer,
                relays,
                reachability: Reachability::NotChecked,
            }
        })
        .collect();
    if opts.probe && !listings.is_empty() {
        probe(client, notifications, keys, &mut listings, opts.timeout).await?;
    }
    Ok(listings)
}

/// Sends every provider a status request and records who answered, and how fast.
async fn probe(
    client: &Client,
    mut notifications: broadcast::Receiver<RelayPoolNotification>,
    keys: &Keys,
    listings: &mut [Listing],
    timeout: Duration,
) -> Result<(), NostrError> {
    let pool = client.relays().await;
    let mut all: Vec<RelayUrl> = pool.keys().cloned().collect();
    for l in listings.iter() {
        for url in &l.relays {
            if !all.contains(url) {
                client.add_relay(url.clone()).await?;
                all.push(url.clone());
            }
        }
    }
    client.connect().await;
    client.wait_for_connection(timeout).await;
    let replies = Filter::new()
        .kind(Kind::Custom(KIND_REPLY))
        .pubkey(keys.public_key());
    client.subscribe_to(all, replies, None).await?;
    let json = wire::request_json(&Request::Status(StatusRequest {
        pod_name: PROBE_POD.into(),
    }))?;
    let mut pending: HashMap<EventId, (usize, PublicKey, Instant)> = HashMap::new();
    for (i, l) in listings.iter_mut().enumerate() {
        l.reachability = Reachability::NoAnswer;
        let service = l.offer.service;
        let content = wire::encrypt(Scheme::Nip44, keys.secret_key(), &service, &json)?;
        let event = EventBuilder::new(RequestKind::Status.kind(), content)
            .tag(Tag::public_key(service))
            .sign_with_keys(keys)
            .map_err(|e| NostrError::Event(e.to_string()))?;
        let sent = Instant::now();
        match client.send_event_to(l.relays.clone(), &event).await {
            Ok(out) if !out.success.is_empty() => {
                pending.insert(event.id, (i, service, sent));
            }
            _ => {}
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while !pending.is_empty() {
        let next = tokio::time::timeout_at(deadline, notifications.recv()).await;
        let event = match next {
            Err(_) => break,
            Ok(Ok(RelayPoolNotification::Event { event, .. })) => event,
            Ok(Ok(RelayPoolNotification::Shutdown))
            | Ok(Err(broadcast::error::RecvError::Closed)) => break,
            Ok(_) => continue,
        };
        if event.kind != Kind::Custom(KIND_REPLY) {
            continue;
        }
        let Some(request) = event.tags.event_ids().next().copied() else {
            continue;
        };
        let Some(&(i, service, sent)) = pending.get(&request) else {
            continue;
        };
        let answered = event.pubkey == service
            && event.verify().is_ok()
            && wire::decrypt(keys.secret_key(), &service, &event.content)
                .ok()
                .and_then(|(_, json)| serde_json::from_str::<Reply>(&json).ok())
                .is_some();
        if answered {
            pending.remove(&request);
            let latency_ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
            listings[i].reachability = Reachability::Answered { latency_ms };
        }
    }
    Ok(())
}

/// How to order listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Cheapest first (for a tier; providers without it last), then fastest.
    Price,
    /// Fastest answer first; providers that did not answer last.
    Latency,
}

/// Sorts `listings` by `by`; prices are those of `tier` (`None`: each default tier).
pub fn sort(listings: &mut [Listing], by: SortBy, tier: Option<&str>) {
    let latency = |l: &Listing| l.reachability.latency().unwrap_or(Duration::MAX);
    let price = |l: &Listing| l.price_msat_per_hour(tier).unwrap_or(u64::MAX);
    match by {
        SortBy::Price => listings.sort_by_key(|l| (price(l), latency(l))),
        SortBy::Latency => listings.sort_by_key(|l| (latency(l), price(l))),
    }
}

/// The cheapest provider that answered, sells `tier` (`None`: its default tier) for at
/// most `max_msat_per_hour` (when given) and accepts one of `mints`; the faster one
/// among equally cheap ones.
pub fn cheapest<'a>(
    listings: &'a [Listing],
    tier: Option<&str>,
    max_msat_per_hour: Option<u64>,
    mints: &[MintUrl],
) -> Option<&'a Listing> {
    listings
        .iter()
        .filter_map(|l| {
            let latency = l.reachability.latency()?;
            let price = l.price_msat_per_hour(tier)?;
            let affordable = max_msat_per_hour.is_none_or(|max| price <= max);
            (affordable && l.accepts_any(mints)).then_some((price, latency, l))
        })
        .min_by_key(|(price, latency, _)| (*price, *latency))
        .map(|(_, _, l)| l)
}

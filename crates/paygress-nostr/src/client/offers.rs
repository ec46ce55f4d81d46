//! Fetching services' offers from relays.

use std::time::Duration;

use nostr_sdk::{Client, Event, RelayUrl, Timestamp};

use super::DiscoveredOffer;
use crate::directory::fetch_from;
use crate::error::NostrError;
use crate::offer::{collect_offers, offer_filters};

/// Fetches live Paygress offers from `relays`: kind 31990 handlers serving kind 1000,
/// kind 30402 listings and old kind 38383 events tagged `#paygress`. Expired events and
/// events that do not parse as an offer are skipped; one offer per service and `d` tag
/// (the newest), newest first.
pub async fn fetch_offers(
    relays: &[RelayUrl],
    timeout: Duration,
) -> Result<Vec<DiscoveredOffer>, NostrError> {
    fetch_offers_at(relays, timeout, Timestamp::now()).await
}

/// [`fetch_offers`] as seen at `now` (offers expired at `now` are skipped).
pub async fn fetch_offers_at(
    relays: &[RelayUrl],
    timeout: Duration,
    now: Timestamp,
) -> Result<Vec<DiscoveredOffer>, NostrError> {
    let client = Client::default();
    for url in relays {
        client.add_relay(url.clone()).await?;
    }
    client.connect().await;
    client.wait_for_connection(timeout).await;
    let events = offer_events_by_relay(&client, relays, timeout).await;
    client.shutdown().await;
    Ok(collect_offers(events?, now))
}

/// Every offer event on each of `relays` (in `client`'s pool), with the relay it is on.
pub(crate) async fn offer_events_by_relay(
    client: &Client,
    relays: &[RelayUrl],
    timeout: Duration,
) -> Result<Vec<(RelayUrl, Event)>, NostrError> {
    let queries = relays.iter().map(|url| async move {
        let found = fetch_from(client, std::slice::from_ref(url), offer_filters(), timeout).await;
        (url.clone(), found)
    });
    let mut all = Vec::new();
    let mut failures = Vec::new();
    for (url, found) in futures::future::join_all(queries).await {
        match found {
            Ok(events) => all.extend(events.into_iter().map(|e| (url.clone(), e))),
            Err(e) => failures.push(format!("{url}: {e}")),
        }
    }
    if all.is_empty() && !failures.is_empty() && failures.len() == relays.len() {
        return Err(NostrError::NotPublished(failures.join("; ")));
    }
    Ok(all)
}

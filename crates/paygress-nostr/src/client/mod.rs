//! The buyer side: send requests to a Paygress service over Nostr, wait for its reply,
//! and discover services' offers. Used by the buyer CLI, the demo and the tests.
//!
//! - `connect`: connecting and subscribing to replies ([`BuyerClient::connect`]);
//! - `request`: building, sending and waiting for requests;
//! - `inbox`: filing the replies that arrive by the request they answer;
//! - `offers`: fetching services' offers ([`fetch_offers`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nostr_sdk::{Client, Event, EventId, Keys, PublicKey, RelayUrl};
use tokio::task::JoinHandle;

use crate::wire::Scheme;

mod connect;
mod inbox;
mod offers;
mod request;

pub use crate::offer::DiscoveredOffer;
use inbox::Inbox;
pub use inbox::awaits_follow_up;
pub(crate) use offers::offer_events_by_relay;
pub use offers::{fetch_offers, fetch_offers_at};

/// How a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// Encryption (default NIP-44).
    pub scheme: Scheme,
    /// Whether a direct request carries a `p` tag naming the service (default yes; the
    /// seed's `nak` commands sent none).
    pub p_tag: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            scheme: Scheme::Nip44,
            p_tag: true,
        }
    }
}

/// A request event ready to publish, and the id its reply will reference.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// The event to publish (a kind 1000/1002/1003 event, or a gift wrap).
    pub event: Event,
    /// The id the reply's `e` tag carries (the event id, or the rumor id for NIP-17).
    pub reply_key: EventId,
    /// The scheme, to decrypt the reply.
    pub scheme: Scheme,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    keys: Keys,
    service: PublicKey,
    /// Where requests are published (empty: every relay of the pool).
    write: Vec<RelayUrl>,
    inbox: Arc<Inbox>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// A buyer's connection to one Paygress service.
///
/// At connect it opens two long-lived subscriptions (kind 1001 from the service to the
/// buyer, and gift wraps to the buyer) and files every reply it receives by the request
/// it answers; [`BuyerClient::wait_reply`] takes it from there. One subscription for the
/// client's lifetime (rather than a REQ/CLOSE per request) also avoids a Nagle stall per
/// request on connections that never answer a CLOSE.
#[derive(Debug, Clone)]
pub struct BuyerClient {
    inner: Arc<Inner>,
    timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

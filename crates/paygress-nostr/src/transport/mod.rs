//! The service side: [`NostrTransport`] implements core's [`Transport`].
//!
//! - `start`: connecting, subscribing and the public handle ([`NostrTransport`]);
//! - `events`: the reader and republisher loops and what happens to each event;
//! - `classify`: the checks that decide whether an event is delivered;
//! - `announce`: publishing the offer and relay lists;
//! - `reply`: building and sending replies.
//!
//! [`Transport`]: paygress_core::Transport

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nostr_sdk::{Client, Keys, RelayUrl};
use paygress_core::{Incoming, Offer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dedup::Dedup;
use crate::directory::RelayDirectory;
use crate::limits::Limiter;

mod announce;
mod classify;
mod events;
mod reply;
mod start;
#[cfg(test)]
mod tests;

pub(crate) use reply::{accepted, reply_event, rumor_id, send_to};

/// Gift-wrap timestamps are randomised up to this far into the past (NIP-59).
pub const GIFT_WRAP_SKEW: Duration = Duration::from_secs(2 * 24 * 3600);
pub use crate::offer::OFFER_HASHTAG;
/// Delay before republishing an offer that no relay accepted.
const OFFER_RETRY: Duration = Duration::from_secs(60);

/// Counters of what the transport did with incoming events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Requests handed to the service through [`Transport::next`](paygress_core::Transport::next).
    pub delivered: u64,
    /// Events skipped because their id (or rumor id) was already handled.
    pub duplicates: u64,
    /// Events answered by the transport itself with an `invalid_request` error.
    pub rejected: u64,
    /// Events silently dropped (not for us, bad signature, undecryptable, stale).
    pub ignored: u64,
    /// Events dropped by a rate limit (per sender, or the untagged budget) undecrypted.
    pub limited: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    ignored: AtomicU64,
    limited: AtomicU64,
}

struct Shared {
    client: Client,
    keys: Keys,
    relays: Vec<RelayUrl>,
    dedup: Mutex<Dedup>,
    backlog: Duration,
    offer: Mutex<Option<Offer>>,
    offer_retry: tokio::sync::Notify,
    counters: Counters,
    limiter: Limiter,
    announce: Announce,
    directory: Arc<RelayDirectory>,
}

/// What the service announces besides replies: offer events and relay lists.
#[derive(Debug, Clone, Default)]
struct Announce {
    /// Where offers and relay lists go: the service's relays, inbox and index relays.
    publish_to: Vec<RelayUrl>,
    /// NIP-65 list (the relays requests are read on).
    relays: Vec<RelayUrl>,
    /// NIP-17 inbox list.
    inbox: Vec<RelayUrl>,
    identifier: Option<String>,
    ttl: Duration,
    legacy: bool,
    location: Option<String>,
    payment_request: Option<String>,
    host_key_fingerprint: Option<String>,
}

/// Receives Paygress requests over Nostr and replies over Nostr.
///
/// Requests: kinds 1000 (spawn), 1002 (top-up), 1003 (status) with NIP-44 v2 or NIP-04
/// content, with or without a `p` tag; or NIP-17 gift wraps (kind 1059) around a kind 14
/// rumor carrying the same JSON. Replies: kind 1001 signed by the service key with tags
/// `e` (request) and `p` (requester), encrypted like the request; NIP-17 requests get a
/// gift-wrapped kind 14 rumor with the same tags.
pub struct NostrTransport {
    shared: Arc<Shared>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for NostrTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NostrTransport")
            .field("public_key", &self.shared.keys.public_key().to_hex())
            .field("relays", &self.shared.relays)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

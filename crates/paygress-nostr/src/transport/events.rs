//! The reader and republisher loops, and what happens to each event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nostr_sdk::{Event, EventId, PublicKey, RelayPoolNotification, RelayUrl};
use paygress_core::{Incoming, Reply, RequestKey, Requester, Responder};
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tracing::{debug, warn};

use super::classify::Verdict;
use super::reply::NostrResponder;
use super::{OFFER_RETRY, Shared, lock};
use crate::wire::Scheme;

pub(super) async fn read_loop(
    shared: Arc<Shared>,
    mut notifications: broadcast::Receiver<RelayPoolNotification>,
    tx: mpsc::Sender<Incoming>,
) {
    loop {
        match notifications.recv().await {
            Ok(RelayPoolNotification::Event {
                relay_url, event, ..
            }) => {
                if !shared.on_event(relay_url, *event, &tx).await {
                    break;
                }
            }
            Ok(RelayPoolNotification::Shutdown) => break,
            Ok(RelayPoolNotification::Message { .. }) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "fell behind the relays; some events were not seen"
                );
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    debug!("nostr reader stopped");
}

pub(super) async fn republish_loop(shared: Arc<Shared>, interval: Duration) {
    let mut wait = interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.offer_retry.notified() => {
                // A failed publish: retry soon rather than in an hour.
                wait = OFFER_RETRY.min(interval);
                continue;
            }
        }
        let offer = lock(&shared.offer).clone();
        wait = interval;
        if let Some(offer) = offer
            && let Err(e) = shared.publish_offer(&offer, false).await
        {
            warn!(error = %e, "could not republish the offer; retrying soon");
            wait = OFFER_RETRY.min(interval);
        }
    }
}

impl Shared {
    /// Handles one event; `false` once the service stopped listening.
    pub(super) async fn on_event(
        self: &Arc<Self>,
        relay: RelayUrl,
        event: Event,
        tx: &mpsc::Sender<Incoming>,
    ) -> bool {
        let counters = &self.counters;
        match self.classify(&event).await {
            Verdict::Ignore(why) => {
                debug!(id = %event.id, why, "ignoring event");
                counters.ignored.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Limited(why) => {
                debug!(id = %event.id, why, "rate limited");
                counters.limited.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Duplicate => {
                debug!(id = %event.id, "already handled");
                counters.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Reject {
                key,
                author,
                scheme,
                code,
                message,
            } => {
                if !self.limiter.reject_once(key) {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                debug!(id = %key, %message, "rejecting request");
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                if !self.limiter.error_reply() {
                    debug!(id = %key, "error reply budget spent; not answering");
                    return true;
                }
                // The transport's own error replies go to the request's relay and ours
                // only: junk must not make the service look up and dial relays.
                let responder = self.responder(key, author, scheme, relay, None);
                tokio::spawn(async move {
                    let reply = Reply::error(code, message);
                    if let Err(e) = Box::new(responder).respond(&reply).await {
                        warn!(error = %e, "error reply not delivered");
                    }
                });
            }
            Verdict::Deliver {
                key,
                author,
                scheme,
                request,
                permit,
            } => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                let incoming = Incoming {
                    key: RequestKey::new("nostr", &key.to_hex()),
                    sender: Requester::new("nostr", &author.to_hex()),
                    request,
                    responder: Box::new(self.responder(key, author, scheme, relay, Some(permit))),
                };
                if tx.send(incoming).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    pub(super) fn responder(
        self: &Arc<Self>,
        key: EventId,
        author: PublicKey,
        scheme: Scheme,
        relay: RelayUrl,
        permit: Option<OwnedSemaphorePermit>,
    ) -> NostrResponder {
        let mut relays: BTreeSet<RelayUrl> = self.relays.iter().cloned().collect();
        relays.insert(relay);
        NostrResponder {
            shared: self.clone(),
            request_id: key,
            requester: author,
            scheme,
            relays: relays.into_iter().collect(),
            // Delivered requests only (see the rejection path above).
            look_up: permit.is_some(),
            permit,
        }
    }
}

//! Transports: where requests come from and replies go ([`Transport`], [`Notifier`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::BoxError;
use crate::lease::Requester;
use crate::protocol::{ExpiryNotice, Offer, Reply, Request};

/// A transport's failure to deliver or receive.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer or relay could not be reached.
    #[error("transport unavailable: {0}")]
    Unavailable(String),
    /// The transport is closed.
    #[error("transport closed")]
    Closed,
    /// Anything else.
    #[error("transport error: {0}")]
    Other(#[source] BoxError),
}

/// Identifies one request message, scoped by transport (`nostr:<event id>`). Handling
/// the same key twice returns the first reply and never charges twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestKey(String);

impl RequestKey {
    /// A key for message `id` on `transport`.
    pub fn new(transport: &str, id: &str) -> Self {
        Self(format!("{transport}:{id}"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Sends the reply to one request back to its sender.
#[async_trait]
pub trait Responder: Send {
    /// Delivers `reply`.
    async fn respond(self: Box<Self>, reply: &Reply) -> Result<(), TransportError>;
}

/// An authenticated request from a transport.
pub struct Incoming {
    /// Message identity, for idempotency.
    pub key: RequestKey,
    /// Who sent it (authenticated by the transport: a Nostr signature, …).
    pub sender: Requester,
    /// What they ask.
    pub request: Request,
    /// Where the reply goes.
    pub responder: Box<dyn Responder>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("key", &self.key)
            .field("sender", &self.sender)
            .field("request", &self.request.kind())
            .finish_non_exhaustive()
    }
}

/// A source of requests.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Short name (`nostr`, `http`).
    fn name(&self) -> &'static str;

    /// The next request; `None` once the transport is closed.
    async fn next(&self) -> Option<Incoming>;

    /// Publishes the service's offer where buyers look for it. Default: nothing to do.
    async fn publish_offer(&self, _offer: &Offer) -> Result<(), TransportError> {
        Ok(())
    }

    /// Stops the transport for good at a graceful shutdown, once the requests in flight
    /// were answered (or their time ran out): stops its tasks and closes its
    /// connections; [`Transport::next`] then returns `None` once queued requests are
    /// taken. Called once; a second call does nothing. Default: nothing to release.
    async fn shutdown(&self) {}
}

/// A shared transport.
pub type DynTransport = Arc<dyn Transport>;

/// Delivers a reply decided after the request's own answer was sent: a refund or change
/// that settlement issued once the mint was back, or the outcome of a payment whose
/// mint answer was lost. A Nostr transport sends it as a new reply to the request's
/// author, tagged with the original request.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `reply` for request `key` to `requester`.
    async fn notify(
        &self,
        key: &RequestKey,
        requester: &Requester,
        reply: &Reply,
    ) -> Result<(), TransportError>;

    /// Tells lease owner `owner` that the lease in `notice` is about to expire, with how
    /// to top it up. Called once per lease and expiry. Default: owners of this notifier's
    /// transport cannot be reached outside a reply (nothing is sent).
    async fn notify_expiry(
        &self,
        owner: &Requester,
        notice: &ExpiryNotice,
    ) -> Result<(), TransportError> {
        let _ = (owner, notice);
        Ok(())
    }
}

/// A shared notifier.
pub type DynNotifier = Arc<dyn Notifier>;

//! Building and sending replies.

use std::sync::Arc;

use async_trait::async_trait;
use nostr_sdk::{
    Client, Event, EventBuilder, EventId, Keys, Kind, PublicKey, RelayUrl, Tag, UnsignedEvent,
};
use paygress_core::{Reply, Responder, TransportError};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use super::{Shared, lock};
use crate::error::NostrError;
use crate::wire::{self, KIND_REPLY, Scheme};

/// The NIP-01 id of `rumor`, computed from its fields (the `id` it carries is ignored).
pub(crate) fn rumor_id(rumor: &UnsignedEvent) -> EventId {
    EventId::new(
        &rumor.pubkey,
        &rumor.created_at,
        &rumor.kind,
        &rumor.tags,
        &rumor.content,
    )
}

/// Publishes `event` through `client` to `relays` (the reply path, shared with
/// [`crate::notify::NostrNotifier`]); fails when no relay accepted it.
pub(crate) async fn send_to(
    client: &Client,
    relays: &[RelayUrl],
    event: &Event,
) -> Result<(), NostrError> {
    if relays.is_empty() {
        return Err(NostrError::NotPublished("no relays configured".into()));
    }
    // Send to the relays that are up now, so that one dead relay does not hold a
    // reply for the whole send timeout; when none is up, try them all (which waits
    // for a reconnect up to nostr-sdk's timeout).
    let pool = client.relays().await;
    let connected: Vec<RelayUrl> = relays
        .iter()
        .filter(|u| pool.get(*u).is_some_and(|r| r.is_connected()))
        .cloned()
        .collect();
    let targets = if connected.is_empty() {
        relays.to_vec()
    } else {
        connected
    };
    let out = client.send_event_to(targets, event).await?;
    accepted(&out)
}

/// `Ok` when at least one relay accepted the event `out` reports on; otherwise every
/// relay's refusal.
pub(crate) fn accepted(out: &nostr_sdk::pool::Output<EventId>) -> Result<(), NostrError> {
    if out.success.is_empty() {
        let why: Vec<String> = out
            .failed
            .iter()
            .map(|(u, e)| format!("{u}: {e}"))
            .collect();
        return Err(NostrError::NotPublished(why.join("; ")));
    }
    Ok(())
}

/// Sends one reply, encrypted like its request, then records the request as handled.
pub(super) struct NostrResponder {
    pub(super) shared: Arc<Shared>,
    pub(super) request_id: EventId,
    pub(super) requester: PublicKey,
    pub(super) scheme: Scheme,
    pub(super) relays: Vec<RelayUrl>,
    /// Whether to add the requester's relay lists to `relays` (delivered requests).
    pub(super) look_up: bool,
    /// The in-flight slot of a delivered request, freed once it is answered (or
    /// dropped); `None` for the transport's own error replies, which are not recorded.
    pub(super) permit: Option<OwnedSemaphorePermit>,
}

impl NostrResponder {
    async fn build(&self, reply: &Reply) -> Result<Event, NostrError> {
        let json =
            serde_json::to_string(reply).map_err(|e| NostrError::Malformed(e.to_string()))?;
        reply_event(
            &self.shared.keys,
            self.scheme,
            self.request_id,
            &self.requester,
            &json,
        )
        .await
    }
}

/// Builds the reply event for `request_id` from `keys` to `requester`.
pub(crate) async fn reply_event(
    keys: &Keys,
    scheme: Scheme,
    request_id: EventId,
    requester: &PublicKey,
    json: &str,
) -> Result<Event, NostrError> {
    let tags = [Tag::event(request_id), Tag::public_key(*requester)];
    match scheme {
        Scheme::Nip17 => {
            let rumor = EventBuilder::new(Kind::PrivateDirectMessage, json)
                .tags(tags)
                .build(keys.public_key());
            EventBuilder::gift_wrap(keys, requester, rumor, [])
                .await
                .map_err(|e| NostrError::Event(e.to_string()))
        }
        Scheme::Nip44 | Scheme::Nip04 => {
            let content = wire::encrypt(scheme, keys.secret_key(), requester, json)?;
            EventBuilder::new(Kind::Custom(KIND_REPLY), content)
                .tags(tags)
                .sign_with_keys(keys)
                .map_err(|e| NostrError::Event(e.to_string()))
        }
    }
}

#[async_trait]
impl Responder for NostrResponder {
    async fn respond(self: Box<Self>, reply: &Reply) -> Result<(), TransportError> {
        let event = self.build(reply).await?;
        let relays = if self.look_up {
            self.shared
                .directory
                .reply_targets(self.requester, self.scheme, &self.relays)
                .await
        } else {
            self.relays.clone()
        };
        self.shared.send(&relays, &event).await?;
        // Only now is the request done for good: a crash before this line lets a
        // restart see it again, and core's journal replays the same reply. Rejected
        // events never enter the dedup log (junk must not push real requests out).
        if self.permit.is_some() {
            let (shared, id) = (self.shared.clone(), self.request_id);
            let persisted = tokio::task::spawn_blocking(move || lock(&shared.dedup).persist(&id));
            if let Err(e) = persisted.await {
                warn!(error = %e, "could not record a handled request");
            }
        }
        debug!(request = %self.request_id, reply = %event.id, "reply published");
        Ok(())
    }
}

//! Publishing the offer and the relay lists.

use nostr_sdk::{Event, RelayUrl, Timestamp};
use paygress_core::Offer;
use tracing::{debug, info};

use super::{Shared, send_to};
use crate::directory::{inbox_relays_event, relay_list_event};
use crate::error::NostrError;
use crate::offer::{OfferMeta, offer_events};
use crate::wire::NostrOffer;

impl Shared {
    /// Publishes the relay lists (NIP-65, NIP-17) and the offer events (NIP-89, NIP-99,
    /// and the legacy kind when configured), each with a fresh NIP-40 expiration.
    pub(super) async fn publish_offer(
        &self,
        offer: &Offer,
        connected_only: bool,
    ) -> Result<(), NostrError> {
        if connected_only {
            let pool = self.client.relays().await;
            if !pool.values().any(|r| r.is_connected()) {
                return Err(NostrError::NotPublished("no relay is connected yet".into()));
            }
        }
        let a = &self.announce;
        let mut nostr_offer = NostrOffer::new(offer.clone());
        nostr_offer.payment_request = a.payment_request.clone();
        nostr_offer.host_key_fingerprint = a.host_key_fingerprint.clone();
        nostr_offer.location = a.location.clone();
        let meta = OfferMeta {
            identifier: a.identifier.clone().unwrap_or_else(|| offer.name.clone()),
            expires_at: Some(Timestamp::now() + a.ttl),
            location: a.location.clone(),
            legacy: a.legacy,
        };
        let mut builders = vec![relay_list_event(&a.relays), inbox_relays_event(&a.inbox)];
        builders.extend(offer_events(&nostr_offer, &meta)?);
        for builder in builders {
            let event = builder
                .sign_with_keys(&self.keys)
                .map_err(|e| NostrError::Event(e.to_string()))?;
            self.send(&a.publish_to, &event).await?;
            debug!(id = %event.id, kind = event.kind.as_u16(), "announcement published");
        }
        info!(identifier = %meta.identifier, "offer and relay lists published");
        Ok(())
    }

    pub(super) async fn send(&self, relays: &[RelayUrl], event: &Event) -> Result<(), NostrError> {
        send_to(&self.client, relays, event).await
    }
}

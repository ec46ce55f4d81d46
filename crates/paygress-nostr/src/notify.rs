//! Replies decided after the request's own answer: [`NostrNotifier`] implements core's
//! [`Notifier`].
//!
//! When settlement issues a refund or change the mint could not issue at first, or
//! resolves a payment whose mint answer was lost, the buyer gets a **new** kind 1001
//! event from the service key, tagged `["e", <request id>]` and `["p", <requester>]`,
//! its content the final `Reply` JSON encrypted with NIP-44 v2, whatever scheme the
//! request used: every client that can send a request reads NIP-44 (NIP-17 is built on
//! it), and [`crate::BuyerClient`] files kind 1001 and gift-wrapped replies alike by
//! their `e` tag. The request's id is the event id (the rumor id for NIP-17), as in
//! core's journal key.

use async_trait::async_trait;
use nostr_sdk::{
    Client, Event, EventBuilder, EventId, Keys, Kind, PublicKey, RelayUrl, Tag, TagKind, ToBech32,
};
use paygress_core::{ExpiryNotice, Notifier, Reply, RequestKey, Requester, TransportError};
use serde::{Deserialize, Serialize};
use tracing::{debug, instrument};

use std::sync::Arc;

use crate::directory::RelayDirectory;
use crate::error::NostrError;
use crate::transport::{reply_event, send_to};
use crate::wire::{self, KIND_REPLY, Scheme};

/// The transport name in Nostr request keys and requester identities.
const TRANSPORT: &str = "nostr";

/// Sends settled replies to Nostr buyers as new kind 1001 events. Get one from
/// [`crate::NostrTransport::notifier`]; it shares the transport's relay connections.
/// Keys and requesters of other transports are ignored.
#[derive(Clone)]
pub struct NostrNotifier {
    client: Client,
    keys: Keys,
    relays: Vec<RelayUrl>,
    /// The buyers' relay lists, shared with the transport.
    directory: Option<Arc<RelayDirectory>>,
}

impl std::fmt::Debug for NostrNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NostrNotifier")
            .field("public_key", &self.keys.public_key().to_hex())
            .field("relays", &self.relays)
            .finish_non_exhaustive()
    }
}

impl NostrNotifier {
    /// A notifier publishing through `client` (already connected) to `relays` and the
    /// buyer's NIP-65 read relays (from `directory`), signing as `keys`.
    pub(crate) fn new(
        client: Client,
        keys: Keys,
        relays: Vec<RelayUrl>,
        directory: Option<Arc<RelayDirectory>>,
    ) -> Self {
        Self {
            client,
            keys,
            relays,
            directory,
        }
    }
}

/// The Nostr request id and author named by core's key and requester, or `None` when
/// either belongs to another transport (or is not a Nostr id).
pub(crate) fn nostr_target(
    key: &RequestKey,
    requester: &Requester,
) -> Option<(EventId, PublicKey)> {
    let id = key.as_str().strip_prefix(TRANSPORT)?.strip_prefix(':')?;
    let author = requester
        .as_str()
        .strip_prefix(TRANSPORT)?
        .strip_prefix(':')?;
    Some((
        EventId::from_hex(id).ok()?,
        PublicKey::from_hex(author).ok()?,
    ))
}

/// The `t` tag value of an expiry notice event.
pub const EXPIRY_NOTICE_TAG: &str = "paygress-expiry-notice";

/// The content of an expiry notice: a kind 1001 event from the service, `p`-tagged to
/// the lease's owner and tagged `["t", "paygress-expiry-notice"]` (no `e` tag: it
/// answers no request), NIP-44 encrypted to the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryNoticeMessage {
    /// Always `expiry_notice`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The lease.
    pub pod_name: String,
    /// End of the paid time (RFC 3339).
    pub expires_at: String,
    /// Seconds left when it was sent.
    pub remaining_seconds: u64,
    /// For people.
    pub message: String,
    /// A ready-to-paste `paygress topup` command (fill in the token).
    pub topup_command: String,
}

/// The expiry notice in `event`, if it is one from `service` to the holder of `keys`.
pub fn read_expiry_notice(
    keys: &Keys,
    service: &PublicKey,
    event: &Event,
) -> Option<ExpiryNoticeMessage> {
    if event.kind != Kind::Custom(KIND_REPLY) || event.pubkey != *service {
        return None;
    }
    let (_, json) = wire::decrypt(keys.secret_key(), service, &event.content).ok()?;
    let notice: ExpiryNoticeMessage = serde_json::from_str(&json).ok()?;
    (notice.kind == "expiry_notice").then_some(notice)
}

impl NostrNotifier {
    /// The notice's content for the lease in `notice`.
    fn expiry_message(&self, notice: &ExpiryNotice) -> ExpiryNoticeMessage {
        let me = self.keys.public_key();
        let service = me.to_bech32().unwrap_or_else(|_| me.to_hex());
        let mut command = format!("paygress topup --service {service}");
        for relay in &self.relays {
            command.push_str(&format!(" --relay {relay}"));
        }
        command.push_str(&format!(" --pod {} --token TOKEN", notice.pod_name));
        let minutes = notice.remaining_seconds.div_ceil(60);
        ExpiryNoticeMessage {
            kind: "expiry_notice".to_owned(),
            pod_name: notice.pod_name.to_string(),
            expires_at: notice.expires_at.to_string(),
            remaining_seconds: notice.remaining_seconds,
            message: format!(
                "Lease {} expires at {} (in about {minutes} min). To keep it, top it up: {command}",
                notice.pod_name, notice.expires_at
            ),
            topup_command: command,
        }
    }
}

#[async_trait]
impl Notifier for NostrNotifier {
    #[instrument(skip_all, fields(lease = %notice.pod_name))]
    async fn notify_expiry(
        &self,
        owner: &Requester,
        notice: &ExpiryNotice,
    ) -> Result<(), TransportError> {
        let Some(author) = owner
            .as_str()
            .strip_prefix(TRANSPORT)
            .and_then(|s| s.strip_prefix(':'))
            .and_then(|hex| PublicKey::from_hex(hex).ok())
        else {
            debug!("not a Nostr owner; no notice");
            return Ok(());
        };
        let json = serde_json::to_string(&self.expiry_message(notice))
            .map_err(|e| NostrError::Malformed(e.to_string()))?;
        let content = wire::encrypt(Scheme::Nip44, self.keys.secret_key(), &author, &json)?;
        let event = EventBuilder::new(Kind::Custom(KIND_REPLY), content)
            .tags([
                Tag::public_key(author),
                Tag::custom(TagKind::t(), [EXPIRY_NOTICE_TAG]),
            ])
            .sign_with_keys(&self.keys)
            .map_err(|e| NostrError::Event(e.to_string()))?;
        let relays = match &self.directory {
            Some(d) => d.reply_targets(author, Scheme::Nip44, &self.relays).await,
            None => self.relays.clone(),
        };
        send_to(&self.client, &relays, &event).await?;
        debug!(notice = %event.id, "expiry notice published");
        Ok(())
    }

    #[instrument(skip_all, fields(key = %key.as_str()))]
    async fn notify(
        &self,
        key: &RequestKey,
        requester: &Requester,
        reply: &Reply,
    ) -> Result<(), TransportError> {
        let Some((request_id, author)) = nostr_target(key, requester) else {
            debug!("not a Nostr request; nothing to deliver");
            return Ok(());
        };
        let json =
            serde_json::to_string(reply).map_err(|e| NostrError::Malformed(e.to_string()))?;
        let event = reply_event(&self.keys, Scheme::Nip44, request_id, &author, &json).await?;
        let relays = match &self.directory {
            Some(d) => d.reply_targets(author, Scheme::Nip44, &self.relays).await,
            None => self.relays.clone(),
        };
        send_to(&self.client, &relays, &event).await?;
        debug!(request = %request_id, reply = %event.id, "settled reply published");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nostr_keys_and_requesters_are_targets() {
        let id = EventId::from_byte_array([3; 32]);
        let author = Keys::generate().public_key();
        let key = RequestKey::new("nostr", &id.to_hex());
        let who = Requester::new("nostr", &author.to_hex());
        assert_eq!(nostr_target(&key, &who), Some((id, author)));
        let http_key = RequestKey::new("http", &id.to_hex());
        let http_who = Requester::new("http", &author.to_hex());
        assert_eq!(nostr_target(&http_key, &who), None);
        assert_eq!(nostr_target(&key, &http_who), None);
        assert_eq!(nostr_target(&key, &Requester::unknown()), None);
        let prefixed = RequestKey::new("nostrx", &id.to_hex());
        assert_eq!(nostr_target(&prefixed, &who), None);
        let garbage = RequestKey::new("nostr", "not-hex");
        assert_eq!(nostr_target(&garbage, &who), None);
    }
}

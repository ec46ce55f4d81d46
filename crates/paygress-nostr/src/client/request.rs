//! Building requests, sending them and waiting for their replies.

use std::time::Duration;

use nostr_sdk::{Event, EventBuilder, EventId, Kind, Tag};
use paygress_core::{ReleaseRequest, Reply, Request, SpawnRequest, StatusRequest, TopUpRequest};

use super::inbox::awaits_follow_up;
use super::{BuyerClient, Inner, PreparedRequest, SendOptions, lock};
use crate::error::NostrError;
use crate::transport::accepted;
use crate::wire::{self, RequestKind, Scheme};

impl BuyerClient {
    /// Asks for a new lease (NIP-44, `p`-tagged).
    pub async fn spawn(&self, request: SpawnRequest) -> Result<Reply, NostrError> {
        self.request(&Request::Spawn(request), SendOptions::default())
            .await
    }

    /// Extends a lease (NIP-44, `p`-tagged).
    pub async fn top_up(&self, request: TopUpRequest) -> Result<Reply, NostrError> {
        self.request(&Request::TopUp(request), SendOptions::default())
            .await
    }

    /// Asks for a lease's state (NIP-44, `p`-tagged).
    pub async fn status(&self, request: StatusRequest) -> Result<Reply, NostrError> {
        self.request(&Request::Status(request), SendOptions::default())
            .await
    }

    /// Ends a lease early; the reply carries the refund of its unused time (NIP-44,
    /// `p`-tagged).
    pub async fn release(&self, request: ReleaseRequest) -> Result<Reply, NostrError> {
        self.request(&Request::Release(request), SendOptions::default())
            .await
    }

    /// Sends `request` and waits for its reply.
    pub async fn request(&self, request: &Request, opts: SendOptions) -> Result<Reply, NostrError> {
        let prepared = self.prepare(request, opts).await?;
        self.send_and_wait(&prepared).await
    }

    /// Publishes a prepared request and waits for its reply.
    pub async fn send_and_wait(&self, prepared: &PreparedRequest) -> Result<Reply, NostrError> {
        self.publish(&prepared.event).await?;
        self.wait_reply(prepared.reply_key, self.timeout).await
    }

    /// Builds the event for `request` without sending it.
    pub async fn prepare(
        &self,
        request: &Request,
        opts: SendOptions,
    ) -> Result<PreparedRequest, NostrError> {
        let Inner { keys, service, .. } = &*self.inner;
        let json = wire::request_json(request)?;
        let kind = RequestKind::of(request);
        match opts.scheme {
            Scheme::Nip17 => {
                let mut rumor = EventBuilder::new(Kind::PrivateDirectMessage, json)
                    .tags([
                        Tag::public_key(*service),
                        Tag::custom(nostr_sdk::TagKind::k(), [kind.kind().as_u16().to_string()]),
                    ])
                    .build(keys.public_key());
                let reply_key = rumor.id();
                let event = EventBuilder::gift_wrap(keys, service, rumor, [])
                    .await
                    .map_err(|e| NostrError::Event(e.to_string()))?;
                Ok(PreparedRequest {
                    event,
                    reply_key,
                    scheme: Scheme::Nip17,
                })
            }
            scheme => {
                let content = wire::encrypt(scheme, keys.secret_key(), service, &json)?;
                let mut builder = EventBuilder::new(kind.kind(), content);
                if opts.p_tag {
                    builder = builder.tag(Tag::public_key(*service));
                }
                let event = builder
                    .sign_with_keys(keys)
                    .map_err(|e| NostrError::Event(e.to_string()))?;
                Ok(PreparedRequest {
                    reply_key: event.id,
                    event,
                    scheme,
                })
            }
        }
    }

    /// Publishes `event` to the write relays; fails if none accepted it.
    pub async fn publish(&self, event: &Event) -> Result<(), NostrError> {
        let out = if self.inner.write.is_empty() {
            self.inner.client.send_event(event).await?
        } else {
            self.inner
                .client
                .send_event_to(self.inner.write.clone(), event)
                .await?
        };
        accepted(&out)
    }

    /// Waits for the reply to the request whose reply key is `key` (the request event's
    /// id, or the rumor id for NIP-17), whatever scheme it came in.
    pub async fn wait_reply(&self, key: EventId, timeout: Duration) -> Result<Reply, NostrError> {
        let inbox = &self.inner.inbox;
        let found = tokio::time::timeout(timeout, async {
            loop {
                let arrived = inbox.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some(reply) = lock(&inbox.replies).remove(&key) {
                    return reply.map_err(NostrError::Malformed);
                }
                arrived.await;
            }
        })
        .await;
        found.map_err(|_| NostrError::Timeout(timeout))?
    }

    /// Waits for the reply to `key` as [`BuyerClient::wait_reply`] does (up to `timeout`);
    /// while the reply announces a later one ([`awaits_follow_up`]: the payment is being
    /// checked, a refund or change is owed), keeps waiting, up to `follow_up` in all, for
    /// the reply the service sends once it settled the request, calling `interim` with
    /// each announcing reply. Returns the last reply received: if it still
    /// [`awaits_follow_up`], `follow_up` ran out first.
    pub async fn wait_final(
        &self,
        key: EventId,
        timeout: Duration,
        follow_up: Duration,
        mut interim: impl FnMut(&Reply),
    ) -> Result<Reply, NostrError> {
        let mut reply = self.wait_reply(key, timeout).await?;
        let deadline = tokio::time::Instant::now() + follow_up;
        while awaits_follow_up(&reply) {
            interim(&reply);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.wait_reply(key, left).await {
                // The same announcement again (a relay replaying it): keep waiting.
                Ok(next) if next == reply => {}
                Ok(next) => reply = next,
                Err(NostrError::Timeout(_)) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(reply)
    }
}

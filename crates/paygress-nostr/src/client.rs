//! The buyer side: send requests to a Paygress service over Nostr, wait for its reply,
//! and discover services' offers. Used by the buyer CLI, the demo and the tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nostr_sdk::nips::nip59::UnwrappedGift;
use nostr_sdk::{
    Client, Event, EventBuilder, EventId, Filter, Keys, Kind, PublicKey, RelayPoolNotification,
    RelayUrl, Tag, Timestamp,
};
use paygress_core::{
    ErrorCode, ReleaseRequest, Reply, Request, SpawnRequest, StatusRequest, TopUpRequest,
};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::directory::fetch_from;
use crate::error::NostrError;
pub use crate::offer::DiscoveredOffer;
use crate::offer::{collect_offers, offer_filters};
use crate::transport::GIFT_WRAP_SKEW;
use crate::wire::{self, KIND_REPLY, RequestKind, Scheme};

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

/// Replies received so far, by the id their `e` tag answers.
#[derive(Debug, Default)]
struct Inbox {
    replies: Mutex<HashMap<EventId, Result<Reply, String>>>,
    arrived: Notify,
}

/// Replies kept for requests nobody waits for (yet); older ones are dropped first.
const INBOX_CAPACITY: usize = 1024;

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

impl BuyerClient {
    /// Connects to `relays` as `keys` (waiting at most 5 s for them) to talk to `service`.
    /// Replies to requests sent in the last hour are picked up too.
    pub async fn connect(
        keys: Keys,
        relays: &[RelayUrl],
        service: PublicKey,
    ) -> Result<Self, NostrError> {
        Self::connect_routed(keys, relays, relays, service).await
    }

    /// Connects as `keys` to talk to `service`, reading replies on `read` only and
    /// publishing requests to `write` only (the outbox model: a buyer reads its own
    /// inbox relays and writes to the service's read relays).
    pub async fn connect_routed(
        keys: Keys,
        read: &[RelayUrl],
        write: &[RelayUrl],
        service: PublicKey,
    ) -> Result<Self, NostrError> {
        let client = Client::builder().signer(keys.clone()).build();
        for url in read {
            client.add_read_relay(url.clone()).await?;
        }
        for url in write {
            client.add_write_relay(url.clone()).await?;
        }
        let notifications = client.notifications();
        client.connect().await;
        client.wait_for_connection(Duration::from_secs(5)).await;
        Self::start(client, notifications, keys, read, write, service).await
    }

    /// Subscribes to replies on `read` with an already connected `client`.
    pub(crate) async fn start(
        client: Client,
        notifications: broadcast::Receiver<RelayPoolNotification>,
        keys: Keys,
        read: &[RelayUrl],
        write: &[RelayUrl],
        service: PublicKey,
    ) -> Result<Self, NostrError> {
        let me = keys.public_key();
        let recent = Timestamp::now() - Duration::from_secs(3600);
        let direct = Filter::new()
            .kind(Kind::Custom(KIND_REPLY))
            .author(service)
            .pubkey(me)
            .since(recent);
        let wraps = Filter::new()
            .kind(Kind::GiftWrap)
            .pubkey(me)
            .since(recent - GIFT_WRAP_SKEW);
        client.subscribe_to(read.to_vec(), direct, None).await?;
        client.subscribe_to(read.to_vec(), wraps, None).await?;
        let inbox = Arc::new(Inbox::default());
        let listener = tokio::spawn(listen(notifications, keys.clone(), service, inbox.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                keys,
                service,
                write: write.to_vec(),
                inbox,
                listener,
            }),
            timeout: Duration::from_secs(30),
        })
    }

    /// Sets how long [`BuyerClient::request`] waits for a reply (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The buyer's public key.
    pub fn public_key(&self) -> PublicKey {
        self.inner.keys.public_key()
    }

    /// The underlying nostr-sdk client (to publish hand-made events).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

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

    /// The service this client talks to.
    pub fn service(&self) -> PublicKey {
        self.inner.service
    }

    /// Where requests are published.
    pub fn write_relays(&self) -> &[RelayUrl] {
        &self.inner.write
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

    /// Disconnects.
    pub async fn shutdown(&self) {
        self.inner.listener.abort();
        self.inner.client.shutdown().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What core writes in a lease's instructions when its change could not be issued yet.
const CHANGE_PENDING: &str = "could not be issued yet";

/// Whether `reply` announces a later reply to the same request: `payment_pending` (the
/// mint's answer to the payment was lost and is being checked), `refund_pending` (a
/// refund is owed), or access details whose change could not be issued yet. The service
/// sends the final reply (with the refund or change token) as a new reply to the same
/// request once it has settled it.
pub fn awaits_follow_up(reply: &Reply) -> bool {
    match reply {
        Reply::Error(e) => matches!(e.code, ErrorCode::PaymentPending | ErrorCode::RefundPending),
        Reply::AccessDetails(a) => {
            a.change_token.is_none() && a.instructions.iter().any(|l| l.contains(CHANGE_PENDING))
        }
        Reply::Released(r) => r.refund_token.is_none() && r.message.contains(CHANGE_PENDING),
        Reply::TopUp(_) | Reply::Status(_) => false,
    }
}

/// Files `reply` for request `key`, unless a final reply is already waiting there and
/// this one only announces it (an announcement replayed or delivered late).
fn file_reply(
    replies: &mut HashMap<EventId, Result<Reply, String>>,
    key: EventId,
    reply: Result<Reply, String>,
) {
    let has_final = matches!(replies.get(&key), Some(Ok(old)) if !awaits_follow_up(old));
    let announces = matches!(&reply, Ok(new) if awaits_follow_up(new));
    if has_final && announces {
        return;
    }
    if !replies.contains_key(&key)
        && replies.len() >= INBOX_CAPACITY
        && let Some(old) = replies.keys().next().copied()
    {
        replies.remove(&old);
    }
    replies.insert(key, reply);
}

/// Files every reply from `service` by the request it answers.
async fn listen(
    mut rx: broadcast::Receiver<RelayPoolNotification>,
    keys: Keys,
    service: PublicKey,
    inbox: Arc<Inbox>,
) {
    loop {
        match rx.recv().await {
            Ok(RelayPoolNotification::Event { event, .. }) => {
                if let Some((key, reply)) = read_reply(&keys, service, &event).await {
                    file_reply(&mut lock(&inbox.replies), key, reply);
                    inbox.arrived.notify_waiters();
                }
            }
            Ok(RelayPoolNotification::Shutdown) | Err(broadcast::error::RecvError::Closed) => {
                break;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
        }
    }
}

/// The request id `event` answers and its reply, if it is a reply from `service`.
async fn read_reply(
    keys: &Keys,
    service: PublicKey,
    event: &Event,
) -> Option<(EventId, Result<Reply, String>)> {
    let parse = |json: &str| serde_json::from_str::<Reply>(json).map_err(|e| e.to_string());
    if event.kind == Kind::GiftWrap {
        let UnwrappedGift { sender, rumor } =
            UnwrappedGift::from_gift_wrap(keys, event).await.ok()?;
        if sender != service || rumor.pubkey != sender {
            return None;
        }
        let key = *rumor.tags.event_ids().next()?;
        return Some((key, parse(&rumor.content)));
    }
    if event.kind != Kind::Custom(KIND_REPLY) || event.pubkey != service {
        return None;
    }
    let key = *event.tags.event_ids().next()?;
    let reply = wire::decrypt(keys.secret_key(), &service, &event.content)
        .map_err(|e| e.to_string())
        .and_then(|(_, json)| parse(&json));
    Some((key, reply))
}

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

#[cfg(test)]
mod tests {
    use paygress_core::{CashuToken, ErrorReply};

    use super::*;

    fn error(code: ErrorCode, refund: Option<&str>) -> Reply {
        Reply::Error(ErrorReply {
            code,
            message: "m".into(),
            refund_token: refund.map(CashuToken::new),
        })
    }

    #[test]
    fn pending_codes_announce_a_follow_up_and_final_replies_do_not() {
        assert!(awaits_follow_up(&error(ErrorCode::RefundPending, None)));
        assert!(awaits_follow_up(&error(ErrorCode::PaymentPending, None)));
        assert!(!awaits_follow_up(&error(
            ErrorCode::ProvisioningFailed,
            Some("cashuBx")
        )));
        assert!(!awaits_follow_up(&error(
            ErrorCode::TokenAlreadySpent,
            None
        )));
    }

    #[test]
    fn a_late_announcement_never_hides_the_final_reply() {
        let key = EventId::from_byte_array([1; 32]);
        let pending = error(ErrorCode::RefundPending, None);
        let done = error(ErrorCode::ProvisioningFailed, Some("cashuBx"));
        let mut replies = HashMap::new();
        file_reply(&mut replies, key, Ok(done.clone()));
        file_reply(&mut replies, key, Ok(pending.clone()));
        assert_eq!(replies.get(&key), Some(&Ok(done.clone())));
        // In order, the final reply replaces the announcement.
        let mut replies = HashMap::new();
        file_reply(&mut replies, key, Ok(pending));
        file_reply(&mut replies, key, Ok(done.clone()));
        assert_eq!(replies.get(&key), Some(&Ok(done)));
    }
}

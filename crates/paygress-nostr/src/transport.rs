//! The service side: [`NostrTransport`] implements core's [`Transport`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nostr_sdk::nips::nip59::UnwrappedGift;
use nostr_sdk::{
    Client, Event, EventBuilder, EventId, Filter, Keys, Kind, PublicKey, RelayPoolNotification,
    RelayUrl, Tag, Timestamp, UnsignedEvent,
};
use paygress_core::{
    ErrorCode, Incoming, Offer, Reply, Request, RequestKey, Requester, Responder, Transport,
    TransportError,
};
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, instrument, warn};

use crate::config::{HANDLED_FILE, NostrConfig, npub};
use crate::dedup::Dedup;
use crate::directory::{RelayDirectory, inbox_relays_event, relay_list_event};
use crate::error::NostrError;
use crate::limits::Limiter;
use crate::notify::NostrNotifier;
use crate::offer::{OfferMeta, offer_events};
use crate::wire::{self, KIND_REPLY, MAX_CONTENT_BYTES, NostrOffer, RequestKind, Scheme};

/// Gift-wrap timestamps are randomised up to this far into the past (NIP-59).
pub const GIFT_WRAP_SKEW: Duration = Duration::from_secs(2 * 24 * 3600);
pub use crate::offer::OFFER_HASHTAG;
/// Delay before republishing an offer that no relay accepted.
const OFFER_RETRY: Duration = Duration::from_secs(60);

/// Counters of what the transport did with incoming events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Requests handed to the service through [`Transport::next`].
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

/// What to do with one event.
enum Verdict {
    Deliver {
        key: EventId,
        author: PublicKey,
        scheme: Scheme,
        request: Request,
        permit: OwnedSemaphorePermit,
    },
    Reject {
        key: EventId,
        author: PublicKey,
        scheme: Scheme,
        code: ErrorCode,
        message: String,
    },
    Duplicate,
    Ignore(&'static str),
    /// Dropped by a rate limit before decryption.
    Limited(&'static str),
}

impl NostrTransport {
    /// Connects to the configured relays (waiting at most `connect_timeout`; unreachable
    /// relays are retried in the background with backoff), subscribes to requests and
    /// starts the offer republisher. Logs `Service public key: npub1…`.
    #[instrument(skip_all)]
    pub async fn start(config: NostrConfig) -> Result<Self, NostrError> {
        info!("Service public key: {}", npub(&config.keys));
        let window_minutes = config.backlog.as_secs().div_ceil(60);
        let admitted = config.limits.max_admitted(window_minutes);
        if admitted > config.dedup_capacity as u64 {
            warn!(
                dedup_capacity = config.dedup_capacity,
                admitted,
                "the global rate limit admits more requests per backlog window than the dedup \
                 window holds; raise dedup_capacity or lower limits.global"
            );
        }
        let dedup = Dedup::open(&config.data_dir.join(HANDLED_FILE), config.dedup_capacity)?;
        let client = Client::builder().signer(config.keys.clone()).build();
        // Requests are read on the service's relays and its NIP-17 inbox relays.
        let inbox = config.inbox();
        let mut read: Vec<RelayUrl> = config.relays.clone();
        for url in &inbox {
            if !read.contains(url) {
                read.push(url.clone());
            }
        }
        for url in &read {
            client.add_relay(url.clone()).await?;
        }
        // Index relays only get what the service announces (and answer lookups).
        for url in &config.index_relays {
            client.add_write_relay(url.clone()).await?;
            client.add_discovery_relay(url.clone()).await?;
        }
        let notifications = client.notifications();
        client.connect().await;
        if !read.is_empty() || !config.index_relays.is_empty() {
            client.wait_for_connection(config.connect_timeout).await;
        }
        let mut publish_to = read.clone();
        for url in &config.index_relays {
            if !publish_to.contains(url) {
                publish_to.push(url.clone());
            }
        }
        let directory = Arc::new(RelayDirectory::new(
            client.clone(),
            publish_to.clone(),
            config.relay_lookup_timeout,
            config.relay_cache_capacity,
        ));
        let ttl = config.offer_ttl.max(2 * config.offer_interval);
        if ttl > config.offer_ttl {
            warn!(
                offer_ttl = ?config.offer_ttl,
                offer_interval = ?config.offer_interval,
                "offer_ttl is under twice offer_interval; offers expire after {ttl:?} instead"
            );
        }
        let announce = Announce {
            publish_to,
            relays: config.relays.clone(),
            inbox,
            identifier: config.offer_identifier,
            ttl,
            legacy: config.legacy_offer,
            location: config.offer_location,
            payment_request: config.offer_payment_request,
            host_key_fingerprint: config.host_key_fingerprint,
        };
        let me = config.keys.public_key();
        let now = Timestamp::now();
        let direct = Filter::new()
            .kinds([
                RequestKind::Spawn.kind(),
                RequestKind::TopUp.kind(),
                RequestKind::Status.kind(),
                RequestKind::Release.kind(),
            ])
            .since(now - config.backlog);
        let wraps = Filter::new()
            .kind(Kind::GiftWrap)
            .pubkey(me)
            .since(now - (config.backlog + GIFT_WRAP_SKEW));
        for filter in [direct, wraps] {
            if let Err(e) = client.subscribe(filter, None).await {
                warn!(error = %e, "could not subscribe yet; relays will be resubscribed on connect");
            }
        }
        let shared = Arc::new(Shared {
            client,
            keys: config.keys,
            relays: config.relays,
            dedup: Mutex::new(dedup),
            backlog: config.backlog,
            offer: Mutex::new(None),
            offer_retry: tokio::sync::Notify::new(),
            counters: Counters::default(),
            limiter: Limiter::new(&config.limits),
            announce,
            directory,
        });
        // Never full: a request is only sent with one of `max_in_flight` permits.
        let (tx, rx) = mpsc::channel(config.limits.max_in_flight.max(1));
        let reader = tokio::spawn(read_loop(shared.clone(), notifications, tx));
        let republisher = tokio::spawn(republish_loop(shared.clone(), config.offer_interval));
        Ok(Self {
            shared,
            rx: tokio::sync::Mutex::new(rx),
            tasks: Mutex::new(vec![reader, republisher]),
        })
    }

    /// The service's public key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.keys.public_key()
    }

    /// A [`paygress_core::Notifier`] that sends replies settled later (refunds and
    /// change issued once the mint is back) through this transport's relay connections.
    pub fn notifier(&self) -> NostrNotifier {
        NostrNotifier::new(
            self.shared.client.clone(),
            self.shared.keys.clone(),
            self.shared.relays.clone(),
            Some(self.shared.directory.clone()),
        )
    }

    /// What the transport did so far.
    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        TransportStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
        }
    }

    /// How many of the configured relays are connected now.
    pub async fn relays_connected(&self) -> usize {
        self.shared
            .client
            .relays()
            .await
            .values()
            .filter(|r| r.status() == nostr_sdk::RelayStatus::Connected)
            .count()
    }

    /// Stops reading new requests and republishing the offer, but stays connected, so
    /// that requests already taken can still be answered; [`Transport::next`] returns
    /// `None` once queued requests are taken. Call [`NostrTransport::shutdown`] after
    /// they are answered.
    pub fn stop_reading(&self) {
        for t in std::mem::take(&mut *lock(&self.tasks)) {
            t.abort();
        }
    }

    /// Stops reading and publishing and disconnects; [`Transport::next`] then returns
    /// `None` once queued requests are taken.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        self.shared.client.shutdown().await;
    }
}

impl Drop for NostrTransport {
    fn drop(&mut self) {
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
    }
}

#[async_trait]
impl Transport for NostrTransport {
    fn name(&self) -> &'static str {
        "nostr"
    }

    async fn next(&self) -> Option<Incoming> {
        self.rx.lock().await.recv().await
    }

    /// Publishes to the relays connected now and fails fast when none is; the
    /// republisher retries every minute until a relay accepts it, then hourly.
    async fn publish_offer(&self, offer: &Offer) -> Result<(), TransportError> {
        *lock(&self.shared.offer) = Some(offer.clone());
        let result = self.shared.publish_offer(offer, true).await;
        if result.is_err() {
            self.shared.offer_retry.notify_one();
        }
        result.map_err(Into::into)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn read_loop(
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

async fn republish_loop(shared: Arc<Shared>, interval: Duration) {
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
    async fn on_event(
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

    fn responder(
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

    /// Claims `key` for handling: `false` when it was handled before.
    fn claim(&self, key: EventId) -> bool {
        lock(&self.dedup).claim(key)
    }

    /// Cheap checks first (kind, addressing, age, dedup, signature, size, rate limits),
    /// decryption only then; see [`crate::limits`].
    async fn classify(&self, event: &Event) -> Verdict {
        if event.kind == Kind::GiftWrap {
            return self.classify_gift_wrap(event).await;
        }
        let Some(kind) = RequestKind::from_kind(event.kind) else {
            return Verdict::Ignore("not a request kind");
        };
        let me = self.keys.public_key();
        // Untagged requests (the seed's nak commands) are tried; tagged ones must name us.
        let tagged = event.tags.public_keys().next().is_some();
        let addressed = event.tags.public_keys().any(|p| *p == me);
        if tagged && !addressed {
            return Verdict::Ignore("addressed to another service");
        }
        if event.created_at < Timestamp::now() - self.backlog {
            return Verdict::Ignore("stale request");
        }
        if lock(&self.dedup).contains(&event.id) || self.limiter.was_rejected(&event.id) {
            return Verdict::Duplicate;
        }
        if event.verify().is_err() {
            return Verdict::Ignore("bad id or signature");
        }
        let scheme = Scheme::of_direct_content(&event.content);
        let reject = |message: String| Verdict::Reject {
            key: event.id,
            author: event.pubkey,
            scheme,
            code: ErrorCode::InvalidRequest,
            message,
        };
        if event.content.len() > MAX_CONTENT_BYTES {
            if addressed {
                return reject(format!(
                    "request content is larger than {MAX_CONTENT_BYTES} bytes"
                ));
            }
            return Verdict::Ignore("oversized");
        }
        if !addressed && !self.limiter.untagged() {
            return Verdict::Limited("untagged budget spent");
        }
        if !self.limiter.sender(&event.pubkey) {
            return Verdict::Limited("sender over its rate limit");
        }
        let plain = match wire::decrypt(self.keys.secret_key(), &event.pubkey, &event.content) {
            Ok((_, plain)) => plain,
            Err(_) if addressed => {
                return reject("the content could not be decrypted with the service key (NIP-44 v2 or NIP-04 expected)".into());
            }
            Err(_) => return Verdict::Ignore("not encrypted to us"),
        };
        match wire::parse_request(kind, &plain) {
            Ok(request) => self.admit(event.id, event.pubkey, scheme, request),
            Err(e) => reject(format!("invalid request: {e}")),
        }
    }

    /// An authenticated, decrypted, well-formed request: within the global limit and
    /// the in-flight cap it enters the dedup window and is delivered.
    fn admit(&self, key: EventId, author: PublicKey, scheme: Scheme, request: Request) -> Verdict {
        let refuse = |code, message: &str| Verdict::Reject {
            key,
            author,
            scheme,
            code,
            message: message.to_owned(),
        };
        if !self.limiter.global() {
            return refuse(
                ErrorCode::RateLimited,
                "the service is receiving too many requests; your token was not redeemed: \
                 send the request again in a minute",
            );
        }
        let Some(permit) = self.limiter.in_flight() else {
            return refuse(
                ErrorCode::Unavailable,
                "the service is busy; your token was not redeemed: send the request again \
                 shortly",
            );
        };
        if !self.claim(key) {
            return Verdict::Duplicate;
        }
        Verdict::Deliver {
            key,
            author,
            scheme,
            request,
            permit,
        }
    }

    async fn classify_gift_wrap(&self, event: &Event) -> Verdict {
        if event.content.len() > MAX_CONTENT_BYTES {
            return Verdict::Ignore("oversized gift wrap");
        }
        let me = self.keys.public_key();
        if !event.tags.public_keys().any(|p| *p == me) {
            return Verdict::Ignore("gift wrap not addressed to us");
        }
        let Ok(UnwrappedGift { sender, rumor }) =
            UnwrappedGift::from_gift_wrap(&self.keys, event).await
        else {
            return Verdict::Ignore("gift wrap not for us");
        };
        // The seal's signature authenticates its signer; the rumor inside is unsigned,
        // so its author must be that signer and its id is computed here, never taken
        // from the `id` field its sender wrote (which could name another request).
        if rumor.pubkey != sender {
            return Verdict::Ignore("rumor author differs from seal signer");
        }
        let key = rumor_id(&rumor);
        if rumor.id.is_some_and(|stated| stated != key) {
            return Verdict::Ignore("rumor id does not match its content");
        }
        if rumor.kind != Kind::PrivateDirectMessage {
            return Verdict::Ignore("rumor is not a kind 14 message");
        }
        if rumor.created_at < Timestamp::now() - self.backlog {
            return Verdict::Ignore("stale rumor");
        }
        if lock(&self.dedup).contains(&key) || self.limiter.was_rejected(&key) {
            return Verdict::Duplicate;
        }
        if !self.limiter.sender(&sender) {
            return Verdict::Limited("sender over its rate limit");
        }
        match wire::parse_rumor_request(&rumor) {
            Ok(request) => self.admit(key, sender, Scheme::Nip17, request),
            Err(e) => Verdict::Reject {
                key,
                author: sender,
                scheme: Scheme::Nip17,
                code: ErrorCode::InvalidRequest,
                message: format!("invalid request: {e}"),
            },
        }
    }

    /// Publishes the relay lists (NIP-65, NIP-17) and the offer events (NIP-89, NIP-99,
    /// and the legacy kind when configured), each with a fresh NIP-40 expiration.
    async fn publish_offer(&self, offer: &Offer, connected_only: bool) -> Result<(), NostrError> {
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

    async fn send(&self, relays: &[RelayUrl], event: &Event) -> Result<(), NostrError> {
        send_to(&self.client, relays, event).await
    }
}

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
struct NostrResponder {
    shared: Arc<Shared>,
    request_id: EventId,
    requester: PublicKey,
    scheme: Scheme,
    relays: Vec<RelayUrl>,
    /// Whether to add the requester's relay lists to `relays` (delivered requests).
    look_up: bool,
    /// The in-flight slot of a delivered request, freed once it is answered (or
    /// dropped); `None` for the transport's own error replies, which are not recorded.
    permit: Option<OwnedSemaphorePermit>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use nostr_sdk::TagKind;

    fn shared(dir: &std::path::Path, keys: &Keys) -> Shared {
        shared_with(dir, keys, 100)
    }

    fn shared_with(dir: &std::path::Path, keys: &Keys, dedup_capacity: usize) -> Shared {
        Shared {
            client: Client::default(),
            keys: keys.clone(),
            relays: vec![],
            dedup: Mutex::new(Dedup::open(&dir.join(HANDLED_FILE), dedup_capacity).unwrap()),
            backlog: Duration::from_secs(3600),
            offer: Mutex::new(None),
            offer_retry: tokio::sync::Notify::new(),
            counters: Counters::default(),
            limiter: Limiter::new(&crate::NostrLimits::default()),
            announce: Announce::default(),
            directory: Arc::new(RelayDirectory::new(
                Client::default(),
                vec![],
                Duration::from_secs(1),
                10,
            )),
        }
    }

    #[tokio::test]
    async fn forged_foreign_and_duplicate_events_are_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let service = Keys::generate();
        let s = shared(dir.path(), &service);
        let buyer = Keys::generate();
        let json = r#"{"cashu_token":"fakecashu:1"}"#;
        let content = wire::encrypt(
            Scheme::Nip44,
            buyer.secret_key(),
            &service.public_key(),
            json,
        )
        .unwrap();
        let good = EventBuilder::new(RequestKind::Spawn.kind(), content.clone())
            .sign_with_keys(&buyer)
            .unwrap();
        // Same id and signature, different content: the signature no longer matches.
        let mut forged = good.clone();
        forged.content = wire::encrypt(
            Scheme::Nip44,
            buyer.secret_key(),
            &service.public_key(),
            r#"{"cashu_token":"fakecashu:2"}"#,
        )
        .unwrap();
        assert!(matches!(s.classify(&forged).await, Verdict::Ignore(_)));
        // p-tagged to someone else.
        let other = EventBuilder::new(RequestKind::Spawn.kind(), content)
            .tag(Tag::public_key(Keys::generate().public_key()))
            .sign_with_keys(&buyer)
            .unwrap();
        assert!(matches!(s.classify(&other).await, Verdict::Ignore(_)));
        // Delivered once, then a duplicate.
        assert!(matches!(
            s.classify(&good).await,
            Verdict::Deliver {
                scheme: Scheme::Nip44,
                ..
            }
        ));
        assert!(matches!(s.classify(&good).await, Verdict::Duplicate));
        // A gift wrap whose rumor claims another author than the seal signer is dropped.
        let mut rumor = EventBuilder::new(Kind::PrivateDirectMessage, json)
            .build(Keys::generate().public_key());
        rumor.ensure_id();
        let wrap = EventBuilder::gift_wrap(&buyer, &service.public_key(), rumor, [])
            .await
            .unwrap();
        assert!(matches!(s.classify(&wrap).await, Verdict::Ignore(_)));
    }

    #[tokio::test]
    async fn gift_wrap_key_is_the_computed_rumor_id_and_a_wrong_stated_id_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let service = Keys::generate();
        let s = shared(dir.path(), &service);
        let buyer = Keys::generate();
        let json = r#"{"pod_name":"pod-1"}"#;
        let rumor = || {
            EventBuilder::new(Kind::PrivateDirectMessage, json)
                .tag(Tag::custom(TagKind::k(), ["1003"]))
                .build(buyer.public_key())
        };
        let mut forged = rumor();
        forged.id = Some(EventId::from_byte_array([9; 32]));
        let wrap = EventBuilder::gift_wrap(&buyer, &service.public_key(), forged, [])
            .await
            .unwrap();
        assert!(matches!(
            s.classify(&wrap).await,
            Verdict::Ignore("rumor id does not match its content")
        ));
        let mut honest = rumor();
        let expected = honest.id();
        let wrap = EventBuilder::gift_wrap(&buyer, &service.public_key(), honest, [])
            .await
            .unwrap();
        match s.classify(&wrap).await {
            Verdict::Deliver { key, author, .. } => {
                assert_eq!((key, author), (expected, buyer.public_key()));
            }
            _ => panic!("honest rumor not delivered"),
        }
    }

    /// A p-tagged kind 1000 event from `keys` with `content` encrypted to `service`
    /// (or left as is when `plain`).
    fn request_event(keys: &Keys, service: &Keys, content: &str, encrypt: bool) -> Event {
        let content = if encrypt {
            wire::encrypt(
                Scheme::Nip44,
                keys.secret_key(),
                &service.public_key(),
                content,
            )
            .unwrap()
        } else {
            content.to_owned()
        };
        EventBuilder::new(RequestKind::Spawn.kind(), content)
            .tag(Tag::public_key(service.public_key()))
            .sign_with_keys(keys)
            .unwrap()
    }

    #[tokio::test]
    async fn junk_never_enters_the_dedup_window() {
        let dir = tempfile::tempdir().unwrap();
        let service = Keys::generate();
        // A window of 16 ids, then 10 000 junk events.
        let s = shared_with(dir.path(), &service, 16);
        let buyer = Keys::generate();
        let good = request_event(&buyer, &service, r#"{"cashu_token":"fakecashu:1"}"#, true);
        assert!(matches!(s.classify(&good).await, Verdict::Deliver { .. }));
        let pool: Vec<Keys> = (0..100).map(|_| Keys::generate()).collect();
        let mut outcomes = [0usize; 3];
        for n in 0..10_000usize {
            let keys = &pool[n % pool.len()];
            let junk = match n % 4 {
                // Addressed to us and undecryptable.
                0 | 1 => request_event(keys, &service, &format!("junk {n}"), false),
                // Decryptable, not a request.
                2 => request_event(keys, &service, &format!("junk {n}"), true),
                // Not even JSON of the right shape.
                _ => request_event(keys, &service, &format!("{{\"n\":{n}}}"), true),
            };
            match s.classify(&junk).await {
                Verdict::Reject { .. } => outcomes[0] += 1,
                Verdict::Limited(_) => outcomes[1] += 1,
                Verdict::Ignore(_) | Verdict::Duplicate => outcomes[2] += 1,
                Verdict::Deliver { .. } => panic!("junk delivered"),
            }
        }
        // Within the per-sender bursts (100 senders × 30) most junk is rejected after
        // decryption: the path that must not claim ids.
        assert!(outcomes[0] >= 1_000, "{outcomes:?}");
        assert!(
            matches!(s.classify(&good).await, Verdict::Duplicate),
            "junk pushed a handled request out of the dedup window"
        );
    }

    #[tokio::test]
    async fn reply_events_carry_e_and_p_tags_and_decrypt() {
        let service = Keys::generate();
        let buyer = Keys::generate();
        let request = EventId::from_byte_array([7; 32]);
        for scheme in [Scheme::Nip44, Scheme::Nip04] {
            let e = reply_event(&service, scheme, request, &buyer.public_key(), "{\"a\":1}")
                .await
                .unwrap();
            assert_eq!(e.kind, Kind::Custom(KIND_REPLY));
            assert_eq!(e.pubkey, service.public_key());
            assert_eq!(e.tags.event_ids().collect::<Vec<_>>(), vec![&request]);
            assert_eq!(
                e.tags.public_keys().collect::<Vec<_>>(),
                vec![&buyer.public_key()]
            );
            let (found, plain) =
                wire::decrypt(buyer.secret_key(), &service.public_key(), &e.content).unwrap();
            assert_eq!((found, plain.as_str()), (scheme, "{\"a\":1}"));
        }
        let wrap = reply_event(&service, Scheme::Nip17, request, &buyer.public_key(), "{}")
            .await
            .unwrap();
        let UnwrappedGift { sender, rumor } =
            UnwrappedGift::from_gift_wrap(&buyer, &wrap).await.unwrap();
        assert_eq!(sender, service.public_key());
        assert_eq!(rumor.tags.event_ids().collect::<Vec<_>>(), vec![&request]);
    }
}

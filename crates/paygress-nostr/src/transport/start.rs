//! Starting the transport and its public handle.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nostr_sdk::{Client, Filter, Kind, PublicKey, RelayUrl, Timestamp};
use paygress_core::{Incoming, Offer, Transport, TransportError};
use tokio::sync::mpsc;
use tracing::{info, instrument, warn};

use super::events::{read_loop, republish_loop};
use super::{Announce, Counters, GIFT_WRAP_SKEW, NostrTransport, Shared, TransportStats, lock};
use crate::config::{HANDLED_FILE, NostrConfig, npub};
use crate::dedup::Dedup;
use crate::directory::RelayDirectory;
use crate::error::NostrError;
use crate::limits::Limiter;
use crate::notify::NostrNotifier;
use crate::wire::RequestKind;

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

    /// Stops reading and publishing and disconnects from every relay.
    async fn shutdown(&self) {
        NostrTransport::shutdown(self).await;
    }
}

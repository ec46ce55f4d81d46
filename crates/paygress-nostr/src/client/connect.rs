//! Connecting to a service's relays and subscribing to its replies.

use std::sync::Arc;
use std::time::Duration;

use nostr_sdk::{
    Client, Filter, Keys, Kind, PublicKey, RelayPoolNotification, RelayUrl, Timestamp,
};
use tokio::sync::broadcast;

use super::inbox::{Inbox, listen};
use super::{BuyerClient, Inner};
use crate::error::NostrError;
use crate::transport::GIFT_WRAP_SKEW;
use crate::wire::KIND_REPLY;

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

    /// The service this client talks to.
    pub fn service(&self) -> PublicKey {
        self.inner.service
    }

    /// Where requests are published.
    pub fn write_relays(&self) -> &[RelayUrl] {
        &self.inner.write
    }

    /// Disconnects.
    pub async fn shutdown(&self) {
        self.inner.listener.abort();
        self.inner.client.shutdown().await;
    }
}

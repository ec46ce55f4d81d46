//! Sending one request to a service, over Nostr or HTTP.

use std::time::Duration;

use paygress_core::{Reply, Request};
use paygress_http::client::HttpClient;
use paygress_nostr::nostr_sdk::{Keys, RelayUrl};
use paygress_nostr::{NostrError, Scheme, SendOptions, ServiceRef, reach};

use crate::BuyerError;

/// How to reach the service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Route {
    /// An encrypted Nostr message through relays.
    Nostr {
        /// The buyer's keys (the lease's owner).
        keys: Keys,
        /// The service (key and relay hints).
        service: Box<ServiceRef>,
        /// Relays the buyer knows: the service's relay lists are looked up there and
        /// the request goes to the relays they name.
        relays: Vec<RelayUrl>,
        /// NIP-44 direct or NIP-17 gift-wrapped.
        scheme: Scheme,
    },
    /// The HTTP API at a base URL.
    Http {
        /// e.g. `http://127.0.0.1:8080`.
        base: String,
        /// For a release: the lease's owner key, the `Idempotency-Key` its spawn was
        /// sent with (see [`Sent::http_key`] and
        /// [`BuyerHome::save_lease_key`](crate::BuyerHome::save_lease_key)).
        lease_key: Option<String>,
    },
}

/// How long to wait.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// For the reply (and each HTTP attempt).
    pub reply: Duration,
    /// In all, when the reply says a refund or change is owed or the payment is being
    /// checked: the service sends the token as a new reply once the mint answers
    /// (Nostr only).
    pub follow_up: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            reply: Duration::from_secs(60),
            follow_up: Duration::from_secs(600),
        }
    }
}

/// What is happening, for a progress display.
#[derive(Debug)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// Waiting for the HTTP service at this base URL.
    Waiting {
        /// The base URL.
        base: &'a str,
    },
    /// A relay accepted the request; waiting for the reply.
    Sent {
        /// The request's id (hex), which the reply refers to.
        request_id: &'a str,
    },
    /// A reply announced a later one (a token is still owed); still waiting.
    FollowUp(&'a Reply),
}

/// A request's outcome.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The last reply received: if it still
    /// [`awaits_follow_up`](paygress_nostr::client::awaits_follow_up), the follow-up
    /// wait ran out first.
    pub reply: Reply,
    /// The Nostr request's id (hex), to refer to it later.
    pub request_id: Option<String>,
    /// The HTTP request's `Idempotency-Key`: for a spawn, what proves ownership of the
    /// lease later (keep it private, like a password).
    pub http_key: Option<String>,
}

/// Sends `request` over `route` and waits for its reply, reporting `progress`.
pub async fn send(
    route: &Route,
    request: Request,
    waits: Waits,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Sent, BuyerError> {
    let paid = !matches!(request, Request::Status(_));
    let (keys, service, relay_urls, scheme) = match route {
        Route::Http { base, lease_key } => {
            progress(Progress::Waiting { base });
            let key = paygress_http::client::idempotency_key();
            let reply = HttpClient::new(base, waits.reply)?
                .send_keyed(&request, &key, lease_key.as_deref())
                .await?;
            return Ok(Sent {
                reply,
                request_id: None,
                http_key: Some(key),
            });
        }
        Route::Nostr {
            keys,
            service,
            relays,
            scheme,
        } => (keys, service, relays, scheme),
    };
    let known = relay_urls
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let (client, route) = reach(keys.clone(), relay_urls, service, *scheme, waits.reply)
        .await
        .map_err(|source| BuyerError::Connect {
            relays: known,
            source,
        })?;
    let client = client.with_timeout(waits.reply);
    let tried = route
        .write
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let opts = SendOptions {
        scheme: *scheme,
        p_tag: true,
    };
    let prepared = match client.prepare(&request, opts).await {
        Ok(p) => p,
        Err(e) => {
            client.shutdown().await;
            return Err(e.into());
        }
    };
    if let Err(source) = client.publish(&prepared.event).await {
        client.shutdown().await;
        return Err(BuyerError::NotPublished {
            relays: tried,
            paid,
            source,
        });
    }
    let request_id = prepared.reply_key.to_hex();
    progress(Progress::Sent {
        request_id: &request_id,
    });
    let reply = client
        .wait_final(prepared.reply_key, waits.reply, waits.follow_up, |r| {
            progress(Progress::FollowUp(r))
        })
        .await;
    client.shutdown().await;
    match reply {
        Ok(reply) => Ok(Sent {
            reply,
            request_id: Some(request_id),
            http_key: None,
        }),
        Err(NostrError::Timeout(_)) => Err(BuyerError::NoReply {
            secs: waits.reply.as_secs(),
            relays: tried,
            request_id,
            paid,
        }),
        Err(e) => Err(e.into()),
    }
}

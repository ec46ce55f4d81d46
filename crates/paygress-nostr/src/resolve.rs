//! Finding and reaching a service: `--service` as npub, hex, nprofile (with relay hints)
//! or NIP-05 name; then its relay lists, looked up on any relay the buyer knows.

use std::time::Duration;

use nostr_sdk::nips::nip05::{Nip05Address, Nip05Profile};
use nostr_sdk::nips::nip19::{FromBech32, Nip19Profile};
use nostr_sdk::{Client, Keys, PublicKey, RelayUrl};
use tracing::debug;

use crate::client::BuyerClient;
use crate::directory::{RelayLists, fetch_from, relay_lists_filter};
use crate::error::NostrError;
use crate::wire::Scheme;

/// Longest wait for relays to connect, and for relay lists, in [`reach`].
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// A service to talk to: its key and where it said it can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// The service key.
    pub public_key: PublicKey,
    /// Relay hints (from an nprofile or the NIP-05 document).
    pub relays: Vec<RelayUrl>,
}

/// What `--service` named, before any network lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceName {
    /// An `npub1…`, `nprofile1…` or hex key (with the nprofile's relay hints).
    Key(ServiceRef),
    /// A NIP-05 identifier (`name@domain`, or just `domain` for `_@domain`).
    Nip05(Nip05Address),
}

impl ServiceName {
    /// Parses `npub1…`, `nprofile1…`, 64 hex digits or a NIP-05 identifier.
    pub fn parse(input: &str) -> Result<Self, NostrError> {
        let s = input.trim().trim_start_matches("nostr:");
        let bad = |why: String| NostrError::Config(format!("--service {s:?}: {why}"));
        if s.starts_with("nprofile1") {
            let p = Nip19Profile::from_bech32(s).map_err(|e| bad(e.to_string()))?;
            return Ok(Self::Key(ServiceRef {
                public_key: p.public_key,
                relays: p.relays,
            }));
        }
        if s.starts_with("npub1") {
            let pk = PublicKey::from_bech32(s).map_err(|e| bad(e.to_string()))?;
            return Ok(Self::Key(ServiceRef {
                public_key: pk,
                relays: vec![],
            }));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let pk = PublicKey::from_hex(s).map_err(|e| bad(e.to_string()))?;
            return Ok(Self::Key(ServiceRef {
                public_key: pk,
                relays: vec![],
            }));
        }
        if s.contains('.') || s.contains('@') {
            let address = Nip05Address::parse(s).map_err(|e| bad(e.to_string()))?;
            return Ok(Self::Nip05(address));
        }
        Err(bad(
            "expected npub1…, nprofile1…, 64 hex digits or a NIP-05 name".into(),
        ))
    }
}

/// The URL of a NIP-05 document: `https://<domain>/.well-known/nostr.json?name=<name>`,
/// or `http://` when the domain is a loopback address (`localhost`, `127.0.0.1`,
/// `[::1]`, with or without a port), for local setups and tests.
pub fn nip05_url(address: &Nip05Address) -> String {
    let mut url = address.url().clone();
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback {
        let _ = url.set_scheme("http");
    }
    url.to_string()
}

/// Resolves a NIP-05 identifier over HTTP(S) to its key and relay hints. Redirects are
/// not followed (NIP-05 forbids them).
pub async fn resolve_nip05(
    address: &Nip05Address,
    timeout: Duration,
) -> Result<ServiceRef, NostrError> {
    let url = nip05_url(address);
    let fail = |why: String| NostrError::Config(format!("NIP-05 lookup of {address}: {why}"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("{url} answered {}", response.status())));
    }
    let body = response.text().await.map_err(|e| fail(e.to_string()))?;
    let profile = Nip05Profile::from_raw_json(address, &body).map_err(|e| fail(e.to_string()))?;
    Ok(ServiceRef {
        public_key: profile.public_key,
        relays: profile.relays,
    })
}

/// Parses `input` (see [`ServiceName::parse`]) and resolves a NIP-05 name over HTTP.
pub async fn resolve_service(input: &str, timeout: Duration) -> Result<ServiceRef, NostrError> {
    match ServiceName::parse(input)? {
        ServiceName::Key(r) => Ok(r),
        ServiceName::Nip05(address) => resolve_nip05(&address, timeout).await,
    }
}

/// Where a buyer sends requests to a service and reads its replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// The service's relay lists, as found.
    pub service_lists: RelayLists,
    /// The buyer's own relay lists, as found.
    pub buyer_lists: RelayLists,
    /// Where the request is published: the service's NIP-17 inbox relays (NIP-17) or its
    /// NIP-65 read relays; its hints, then the known relays, when it published no list.
    pub write: Vec<RelayUrl>,
    /// Where replies are read: the relays written to, the known relays, and the buyer's
    /// own NIP-65 read and NIP-17 inbox relays.
    pub read: Vec<RelayUrl>,
}

fn union(lists: &[&[RelayUrl]]) -> Vec<RelayUrl> {
    let mut out: Vec<RelayUrl> = Vec::new();
    for list in lists {
        for url in *list {
            if !out.contains(url) {
                out.push(url.clone());
            }
        }
    }
    out
}

impl Route {
    /// The route from the lists found, the service's hints and the known relays.
    pub fn plan(
        scheme: Scheme,
        known: &[RelayUrl],
        hints: &[RelayUrl],
        service_lists: RelayLists,
        buyer_lists: RelayLists,
    ) -> Self {
        let listed = service_lists.delivery(scheme);
        let write = if !listed.is_empty() {
            listed.to_vec()
        } else if !hints.is_empty() {
            hints.to_vec()
        } else {
            known.to_vec()
        };
        let read = union(&[&write, known, &buyer_lists.read, &buyer_lists.inbox]);
        Self {
            service_lists,
            buyer_lists,
            write,
            read,
        }
    }
}

/// Looks up the relay lists of `service` and of the buyer `keys` on `known` relays and
/// the service's hints, then connects a [`BuyerClient`] reading on [`Route::read`] and
/// publishing to [`Route::write`]. Relays get at most 5 s (or `timeout`, if shorter) to
/// connect and to return the lists.
pub async fn reach(
    keys: Keys,
    known: &[RelayUrl],
    service: &ServiceRef,
    scheme: Scheme,
    timeout: Duration,
) -> Result<(BuyerClient, Route), NostrError> {
    let lookup = union(&[known, &service.relays]);
    if lookup.is_empty() {
        return Err(NostrError::Config(
            "no relay to look the service up on: give --relay or use an nprofile".into(),
        ));
    }
    // Waiting for relays (and for their lists) never takes the whole reply timeout: a
    // dead relay among the known ones must not stall the request.
    let connect = timeout.min(CONNECT_WAIT);
    let client = Client::builder().signer(keys.clone()).build();
    for url in &lookup {
        client.add_relay(url.clone()).await?;
    }
    let notifications = client.notifications();
    client.connect().await;
    client.wait_for_connection(connect).await;
    let me = keys.public_key();
    let events = fetch_from(
        &client,
        &lookup,
        vec![relay_lists_filter([service.public_key, me])],
        connect,
    )
    .await
    .unwrap_or_else(|e| {
        debug!(error = %e, "relay list lookup failed");
        vec![]
    });
    let route = Route::plan(
        scheme,
        known,
        &service.relays,
        RelayLists::from_events(&service.public_key, events.iter()),
        RelayLists::from_events(&me, events.iter()),
    );
    debug!(write = ?route.write, read = ?route.read, "route to the service");
    // Relays of the route that are not in the pool yet: write-only ones get no
    // subscription; read ones get the reply subscriptions in `start`.
    for url in &route.write {
        if !lookup.contains(url) {
            client.add_write_relay(url.clone()).await?;
        }
    }
    for url in &route.read {
        if !lookup.contains(url) {
            client.add_read_relay(url.clone()).await?;
        }
    }
    client.connect().await;
    client.wait_for_connection(connect).await;
    let buyer = BuyerClient::start(
        client,
        notifications,
        keys,
        &route.read,
        &route.write,
        service.public_key,
    )
    .await?;
    Ok((buyer, route))
}

#[cfg(test)]
mod tests {
    use nostr_sdk::ToBech32;

    use super::*;

    #[test]
    fn service_names_of_every_form() {
        let keys = Keys::generate();
        let pk = keys.public_key();
        let relay = RelayUrl::parse("ws://127.0.0.1:7777").unwrap();
        let plain = ServiceName::Key(ServiceRef {
            public_key: pk,
            relays: vec![],
        });
        assert_eq!(ServiceName::parse(&pk.to_bech32().unwrap()).unwrap(), plain);
        assert_eq!(ServiceName::parse(&pk.to_hex()).unwrap(), plain);
        let nprofile = Nip19Profile::new(pk, [relay.clone()]).to_bech32().unwrap();
        assert_eq!(
            ServiceName::parse(&format!("nostr:{nprofile}")).unwrap(),
            ServiceName::Key(ServiceRef {
                public_key: pk,
                relays: vec![relay],
            })
        );
        let ServiceName::Nip05(a) = ServiceName::parse("bob@127.0.0.1:8080").unwrap() else {
            panic!("not a NIP-05 name")
        };
        assert_eq!(
            nip05_url(&a),
            "http://127.0.0.1:8080/.well-known/nostr.json?name=bob"
        );
        let ServiceName::Nip05(a) = ServiceName::parse("example.com").unwrap() else {
            panic!("not a NIP-05 name")
        };
        assert_eq!(
            nip05_url(&a),
            "https://example.com/.well-known/nostr.json?name=_"
        );
        assert!(ServiceName::parse("npub1garbage").is_err());
        assert!(ServiceName::parse("hello").is_err());
    }

    #[test]
    fn route_prefers_lists_then_hints_then_known() {
        let u = |n: u16| RelayUrl::parse(&format!("ws://127.0.0.1:{n}")).unwrap();
        let known = [u(1)];
        let lists = RelayLists {
            read: vec![u(2)],
            write: vec![u(3)],
            inbox: vec![u(4)],
        };
        let buyer = RelayLists {
            read: vec![u(5)],
            write: vec![],
            inbox: vec![u(6)],
        };
        let r = Route::plan(Scheme::Nip44, &known, &[u(9)], lists.clone(), buyer.clone());
        assert_eq!(r.write, vec![u(2)]);
        assert_eq!(r.read, vec![u(2), u(1), u(5), u(6)]);
        let r = Route::plan(Scheme::Nip17, &known, &[], lists, RelayLists::default());
        assert_eq!(r.write, vec![u(4)]);
        let r = Route::plan(Scheme::Nip44, &known, &[u(9)], RelayLists::default(), buyer);
        assert_eq!(r.write, vec![u(9)]);
        let r = Route::plan(
            Scheme::Nip44,
            &known,
            &[],
            RelayLists::default(),
            RelayLists::default(),
        );
        assert_eq!(r.write, vec![u(1)]);
    }
}

//! Relay lists: where a key reads and writes (NIP-65, kind 10002) and where it takes
//! private messages (NIP-17, kind 10050). The service publishes both and sends each reply
//! to the buyer's lists as well as to the relay the request came from; buyers look up
//! the service's lists to know where to send requests.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nostr_sdk::nips::nip65::RelayMetadata;
use nostr_sdk::nips::{nip17, nip65};
use nostr_sdk::prelude::ReqExitPolicy;
use nostr_sdk::{Client, Event, EventBuilder, Filter, Kind, PublicKey, RelayUrl, Tag};
use tracing::debug;

use crate::error::NostrError;
use crate::wire::Scheme;

/// At most this many relays of one list are used (NIP-65 asks users to keep lists short;
/// a longer list must not make one reply fan out to hundreds of relays).
pub const MAX_RELAYS_PER_LIST: usize = 8;
/// How long a looked-up buyer's lists are trusted.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// At most this many relays are added to the service's pool for buyers' lists.
const MAX_EXTRA_RELAYS: usize = 256;

/// A key's relay lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayLists {
    /// NIP-65 relays marked `read` or unmarked: where the key reads mentions of itself
    /// (send events meant for it there).
    pub read: Vec<RelayUrl>,
    /// NIP-65 relays marked `write` or unmarked: where the key publishes.
    pub write: Vec<RelayUrl>,
    /// NIP-17 inbox relays (kind 10050): where to send it gift wraps.
    pub inbox: Vec<RelayUrl>,
}

impl RelayLists {
    /// The lists of `author` in `events`: the newest kind 10002 and kind 10050 event by
    /// `author` with a valid signature; others are ignored.
    pub fn from_events<'a>(
        author: &PublicKey,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Self {
        let mut newest: HashMap<Kind, &Event> = HashMap::new();
        for e in events {
            if e.pubkey != *author
                || !matches!(e.kind, Kind::RelayList | Kind::InboxRelays)
                || e.verify().is_err()
            {
                continue;
            }
            let slot = newest.entry(e.kind).or_insert(e);
            if e.created_at > slot.created_at {
                *slot = e;
            }
        }
        let mut lists = RelayLists::default();
        if let Some(e) = newest.get(&Kind::RelayList) {
            for (url, marker) in nip65::extract_relay_list(e) {
                if marker != &Some(RelayMetadata::Write) {
                    push_unique(&mut lists.read, url);
                }
                if marker != &Some(RelayMetadata::Read) {
                    push_unique(&mut lists.write, url);
                }
            }
        }
        if let Some(e) = newest.get(&Kind::InboxRelays) {
            for url in nip17::extract_relay_list(e) {
                push_unique(&mut lists.inbox, url);
            }
        }
        lists
    }

    /// Whether no list was found.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty() && self.inbox.is_empty()
    }

    /// Where to deliver a message in `scheme` to this key: for NIP-17 its inbox relays
    /// (its NIP-65 read relays when it published no inbox list); otherwise its NIP-65
    /// read relays.
    pub fn delivery(&self, scheme: Scheme) -> &[RelayUrl] {
        if scheme == Scheme::Nip17 && !self.inbox.is_empty() {
            &self.inbox
        } else {
            &self.read
        }
    }
}

fn push_unique(list: &mut Vec<RelayUrl>, url: &RelayUrl) {
    if list.len() < MAX_RELAYS_PER_LIST && !list.contains(url) {
        list.push(url.clone());
    }
}

/// A NIP-65 relay list (kind 10002) naming `relays` for both reading and writing.
pub fn relay_list_event(relays: &[RelayUrl]) -> EventBuilder {
    EventBuilder::relay_list(relays.iter().map(|u| (u.clone(), None)))
}

/// A NIP-17 inbox relay list (kind 10050).
pub fn inbox_relays_event(relays: &[RelayUrl]) -> EventBuilder {
    EventBuilder::new(Kind::InboxRelays, "").tags(relays.iter().cloned().map(Tag::relay))
}

/// The filter for the relay lists of `authors`.
pub fn relay_lists_filter(authors: impl IntoIterator<Item = PublicKey>) -> Filter {
    Filter::new()
        .kinds([Kind::RelayList, Kind::InboxRelays])
        .authors(authors)
}

/// Fetches `author`'s relay lists from `from` (relays already in `client`'s pool and
/// connected), waiting at most `timeout`.
pub async fn fetch_relay_lists(
    client: &Client,
    from: &[RelayUrl],
    author: PublicKey,
    timeout: Duration,
) -> Result<RelayLists, NostrError> {
    let events = fetch_from(client, from, vec![relay_lists_filter([author])], timeout).await?;
    Ok(RelayLists::from_events(&author, events.iter()))
}

/// Fetches events matching `filters` from `from` (closing the query on EOSE).
pub(crate) async fn fetch_from(
    client: &Client,
    from: &[RelayUrl],
    filters: Vec<Filter>,
    timeout: Duration,
) -> Result<Vec<Event>, NostrError> {
    if from.is_empty() {
        return Ok(vec![]);
    }
    let events = client
        .pool()
        .fetch_events_from(from, filters, timeout, ReqExitPolicy::ExitOnEOSE)
        .await
        .map_err(|e| NostrError::Client(e.into()))?;
    Ok(events.into_iter().collect())
}

/// Adds `urls` the pool lacks as write-only relays (they inherit no subscription) and
/// connects them, waiting at most `timeout` each; at most `budget` new relays are added.
/// Returns the relays usable now (in the pool).
pub(crate) async fn ensure_write_relays(
    client: &Client,
    urls: &[RelayUrl],
    timeout: Duration,
    budget: usize,
) -> Vec<RelayUrl> {
    let pool = client.relays().await;
    let mut usable = Vec::with_capacity(urls.len());
    let mut added = 0;
    for url in urls {
        if pool.contains_key(url) {
            usable.push(url.clone());
            continue;
        }
        if added >= budget {
            debug!(%url, "relay budget spent; not adding");
            continue;
        }
        if client.add_write_relay(url.clone()).await.is_err() {
            continue;
        }
        added += 1;
        if let Err(e) = client.try_connect_relay(url.clone(), timeout).await {
            debug!(%url, error = %e, "relay from a list did not connect in time");
        }
        usable.push(url.clone());
    }
    usable
}

/// The service's cache of buyers' relay lists (bounded, entries expire after an hour).
#[derive(Debug)]
pub(crate) struct RelayDirectory {
    client: Client,
    /// Where buyers' lists are looked up (the service's relays and index relays).
    lookup: Vec<RelayUrl>,
    timeout: Duration,
    capacity: usize,
    cache: Mutex<Cache>,
    /// Relays added to the pool for buyers so far.
    extra: Mutex<HashSet<RelayUrl>>,
    /// Whether buyers' lists may name local or private addresses (only when the
    /// service's own relays are such: a dev or test setup).
    allow_local: bool,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<PublicKey, (Instant, RelayLists)>,
    order: VecDeque<(PublicKey, Instant)>,
}

impl RelayDirectory {
    pub(crate) fn new(
        client: Client,
        lookup: Vec<RelayUrl>,
        timeout: Duration,
        capacity: usize,
    ) -> Self {
        let allow_local = lookup.iter().any(is_internal);
        Self {
            client,
            lookup,
            timeout,
            capacity: capacity.max(1),
            cache: Mutex::new(Cache::default()),
            extra: Mutex::new(HashSet::new()),
            allow_local,
        }
    }

    fn cached(&self, key: &PublicKey) -> Option<RelayLists> {
        let cache = lock(&self.cache);
        cache
            .entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, lists)| lists.clone())
    }

    fn remember(&self, key: PublicKey, lists: RelayLists) {
        let mut cache = lock(&self.cache);
        let now = Instant::now();
        cache.entries.insert(key, (now, lists));
        cache.order.push_back((key, now));
        while cache.entries.len() > self.capacity {
            let Some((old, at)) = cache.order.pop_front() else {
                break;
            };
            // Only the entry this queue slot stands for (not a later refresh).
            if cache.entries.get(&old).is_some_and(|(t, _)| *t == at) {
                cache.entries.remove(&old);
            }
        }
        // Queue slots of refreshed entries pile up; drop them once they dominate.
        if cache.order.len() > 2 * self.capacity {
            let Cache { entries, order } = &mut *cache;
            order.retain(|(k, t)| entries.get(k).is_some_and(|(at, _)| at == t));
        }
    }

    /// Number of cached buyers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.cache).entries.len()
    }

    /// `key`'s relay lists, looked up once per hour (a failed or empty lookup is cached
    /// too, so a buyer without lists costs one lookup per hour).
    pub(crate) async fn lists(&self, key: PublicKey) -> RelayLists {
        if let Some(lists) = self.cached(&key) {
            return lists;
        }
        let lists = match fetch_relay_lists(&self.client, &self.lookup, key, self.timeout).await {
            Ok(lists) => lists,
            Err(e) => {
                debug!(error = %e, "relay list lookup failed");
                RelayLists::default()
            }
        };
        self.remember(key, lists.clone());
        lists
    }

    /// `base` plus where `key` takes messages in `scheme`, connected as far as possible.
    pub(crate) async fn reply_targets(
        &self,
        key: PublicKey,
        scheme: Scheme,
        base: &[RelayUrl],
    ) -> Vec<RelayUrl> {
        let lists = self.lists(key).await;
        let mut targets: BTreeSet<RelayUrl> = base.iter().cloned().collect();
        let wanted: Vec<RelayUrl> = lists
            .delivery(scheme)
            .iter()
            .filter(|u| !targets.contains(*u))
            // A buyer must not make a public service dial its internal network.
            .filter(|u| self.allow_local || !is_internal(u))
            .cloned()
            .collect();
        if !wanted.is_empty() {
            let budget = MAX_EXTRA_RELAYS.saturating_sub(lock(&self.extra).len());
            let usable = ensure_write_relays(&self.client, &wanted, self.timeout, budget).await;
            let mut extra = lock(&self.extra);
            for url in usable {
                extra.insert(url.clone());
                targets.insert(url);
            }
        }
        targets.into_iter().collect()
    }
}

/// Whether `url` names this host or a private network: `localhost`, loopback, private,
/// link-local (cloud metadata), unspecified, or IPv6 unique-local addresses.
pub fn is_internal(url: &RelayUrl) -> bool {
    let Ok(parsed) = url::Url::parse(url.as_str()) else {
        return true;
    };
    match parsed.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        Some(url::Host::Ipv6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private() || v4.is_link_local())
        }
        None => true,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use nostr_sdk::Keys;

    use super::*;

    fn url(n: u16) -> RelayUrl {
        RelayUrl::parse(&format!("ws://127.0.0.1:{n}")).unwrap()
    }

    #[test]
    fn lists_read_markers_and_keep_the_newest() {
        let keys = Keys::generate();
        let old = relay_list_event(&[url(1)])
            .custom_created_at(nostr_sdk::Timestamp::from(1000))
            .sign_with_keys(&keys)
            .unwrap();
        let new = EventBuilder::relay_list([
            (url(2), Some(RelayMetadata::Read)),
            (url(3), Some(RelayMetadata::Write)),
            (url(4), None),
        ])
        .custom_created_at(nostr_sdk::Timestamp::from(2000))
        .sign_with_keys(&keys)
        .unwrap();
        let inbox = inbox_relays_event(&[url(5)]).sign_with_keys(&keys).unwrap();
        let stranger = inbox_relays_event(&[url(6)])
            .sign_with_keys(&Keys::generate())
            .unwrap();
        let lists = RelayLists::from_events(&keys.public_key(), [&new, &old, &inbox, &stranger]);
        assert_eq!(lists.read, vec![url(2), url(4)]);
        assert_eq!(lists.write, vec![url(3), url(4)]);
        assert_eq!(lists.inbox, vec![url(5)]);
        assert_eq!(lists.delivery(Scheme::Nip17), &[url(5)]);
        assert_eq!(lists.delivery(Scheme::Nip44), &[url(2), url(4)]);
        let long = relay_list_event(&(1..100).map(url).collect::<Vec<_>>())
            .sign_with_keys(&keys)
            .unwrap();
        let lists = RelayLists::from_events(&keys.public_key(), [&long]);
        assert_eq!(lists.read.len(), MAX_RELAYS_PER_LIST);
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "ws://127.0.0.1:7777",
            "ws://localhost",
            "wss://10.1.2.3",
            "ws://169.254.169.254",
            "ws://192.168.1.1",
            "ws://[::1]:80",
            "ws://[fd00::1]",
            "ws://[::ffff:127.0.0.1]",
        ] {
            assert!(
                is_internal(&RelayUrl::parse(internal).unwrap()),
                "{internal}"
            );
        }
        for public in ["wss://relay.example.com", "wss://93.184.216.34"] {
            assert!(!is_internal(&RelayUrl::parse(public).unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_public_service_never_dials_internal_relays_from_a_buyers_list() {
        let public = RelayUrl::parse("wss://relay.example.com").unwrap();
        let dir = RelayDirectory::new(
            Client::default(),
            vec![public.clone()],
            Duration::from_secs(1),
            3,
        );
        let buyer = Keys::generate().public_key();
        dir.remember(
            buyer,
            RelayLists {
                read: vec![url(1)],
                write: vec![],
                inbox: vec![url(2)],
            },
        );
        let targets = dir
            .reply_targets(buyer, Scheme::Nip17, std::slice::from_ref(&public))
            .await;
        assert_eq!(targets, vec![public]);
    }

    #[test]
    fn the_cache_is_bounded() {
        let dir = RelayDirectory::new(Client::default(), vec![], Duration::from_secs(1), 3);
        let keys: Vec<PublicKey> = (0..10).map(|_| Keys::generate().public_key()).collect();
        for k in &keys {
            dir.remember(*k, RelayLists::default());
            // Refreshing the first key keeps it while others come and go.
            dir.remember(keys[0], RelayLists::default());
        }
        assert_eq!(dir.len(), 3);
        assert!(dir.cached(&keys[0]).is_some());
        assert!(dir.cached(&keys[9]).is_some());
        assert!(dir.cached(&keys[1]).is_none());
        assert!(lock(&dir.cache).order.len() <= 6);
    }
}

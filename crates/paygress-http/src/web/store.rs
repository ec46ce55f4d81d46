//! Leases bought through the page, by the digest of their secret, in memory.
//!
//! Each entry starts as an order (tier, duration, price, payment request) and becomes a
//! lease once paid. Entries are looked up by the SHA-256 of the secret, so neither a
//! lookup's timing nor a memory dump reveals a working link.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use paygress_core::{AccessDetails, Amount, CashuToken};
use sha2::{Digest, Sha256};

/// Most entries remembered; past it the oldest unpaid orders, then the longest-expired
/// leases, are forgotten.
pub const MAX_LEASES_REMEMBERED: usize = 10_000;

/// A new random secret for a lease's link (256 bits, hex).
pub(crate) fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A new random payment id (128 bits, hex): public, it names a payment request.
pub(crate) fn new_pay_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The digest entries are stored by.
pub(crate) fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(
        [b"paygress-web/secret:".as_slice(), secret.as_bytes()].concat(),
    ))
}

/// A token the buyer must keep.
#[derive(Debug, Clone)]
pub(crate) struct SavedToken {
    /// `change` or `refund`.
    pub(crate) kind: &'static str,
    pub(crate) token: CashuToken,
}

/// A payment request waiting to be paid.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) pay_id: String,
    pub(crate) request: String,
    pub(crate) amount: Amount,
    pub(crate) minutes: u64,
}

/// What the page knows of one lease.
#[derive(Debug)]
pub(crate) struct Data {
    pub(crate) tier: String,
    pub(crate) minutes: u64,
    pub(crate) username: Option<String>,
    /// The spawn's payment request, until paid.
    pub(crate) order: Option<Pending>,
    /// The top-up's payment request, when one was asked for.
    pub(crate) top_up: Option<Pending>,
    pub(crate) access: Option<AccessDetails>,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) tokens: Vec<SavedToken>,
    pub(crate) error: Option<(paygress_core::ErrorCode, String)>,
    pub(crate) attempts: u32,
    pub(crate) created_at: Timestamp,
}

/// One entry: its data, and a lock held while a payment for it runs (one at a time).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) digest: String,
    pub(crate) paying: tokio::sync::Mutex<()>,
    data: Mutex<Data>,
}

impl Entry {
    pub(crate) fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a payment id pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayKind {
    Spawn,
    TopUp,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Arc<Entry>>,
    pay_ids: HashMap<String, (String, PayKind)>,
}

/// Every entry.
#[derive(Debug, Default)]
pub(crate) struct Store {
    inner: Mutex<Inner>,
}

impl Store {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an order under `secret`.
    pub(crate) fn insert(&self, secret: &str, data: Data, now: Timestamp) -> Arc<Entry> {
        let digest = digest(secret);
        let entry = Arc::new(Entry {
            digest: digest.clone(),
            paying: tokio::sync::Mutex::new(()),
            data: Mutex::new(data),
        });
        let mut inner = self.inner();
        if inner.entries.len() >= MAX_LEASES_REMEMBERED {
            evict(&mut inner, now);
        }
        if let Some(order) = &entry.data().order {
            inner
                .pay_ids
                .insert(order.pay_id.clone(), (digest.clone(), PayKind::Spawn));
        }
        inner.entries.insert(digest, entry.clone());
        entry
    }

    /// The entry of `secret`.
    pub(crate) fn get(&self, secret: &str) -> Option<Arc<Entry>> {
        self.inner().entries.get(&digest(secret)).cloned()
    }

    /// The entry a payment id pays for, and what it pays.
    pub(crate) fn by_pay_id(&self, pay_id: &str) -> Option<(Arc<Entry>, PayKind)> {
        let inner = self.inner();
        let (digest, kind) = inner.pay_ids.get(pay_id)?;
        Some((inner.entries.get(digest)?.clone(), *kind))
    }

    /// Registers a top-up payment id for `entry`.
    pub(crate) fn add_pay_id(&self, entry: &Entry, pay_id: &str, kind: PayKind) {
        self.inner()
            .pay_ids
            .insert(pay_id.to_owned(), (entry.digest.clone(), kind));
    }

    /// Forgets a payment id (paid, or replaced).
    pub(crate) fn remove_pay_id(&self, pay_id: &str) {
        self.inner().pay_ids.remove(pay_id);
    }
}

/// Makes room: drops unpaid orders older than an hour and leases expired over a day ago,
/// then, if still full, the oldest tenth.
fn evict(inner: &mut Inner, now: Timestamp) {
    let hour = jiff::SignedDuration::from_secs(3600);
    let day = jiff::SignedDuration::from_secs(24 * 3600);
    let stale = |e: &Entry| {
        let d = e.data();
        match d.expires_at {
            None => d.created_at + hour < now,
            Some(exp) => exp + day < now,
        }
    };
    inner.entries.retain(|_, e| !stale(e));
    if inner.entries.len() >= MAX_LEASES_REMEMBERED {
        let mut ages: Vec<(Timestamp, String)> = inner
            .entries
            .iter()
            .map(|(k, e)| (e.data().created_at, k.clone()))
            .collect();
        ages.sort();
        for (_, k) in ages.iter().take(MAX_LEASES_REMEMBERED / 10) {
            inner.entries.remove(k);
        }
    }
    let Inner { entries, pay_ids } = inner;
    pay_ids.retain(|_, (d, _)| entries.contains_key(d));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(now: Timestamp) -> Data {
        Data {
            tier: "standard".into(),
            minutes: 10,
            username: None,
            order: Some(Pending {
                pay_id: new_pay_id(),
                request: "creqA".into(),
                amount: Amount::sat(10),
                minutes: 10,
            }),
            top_up: None,
            access: None,
            expires_at: None,
            tokens: vec![],
            error: None,
            attempts: 0,
            created_at: now,
        }
    }

    #[test]
    fn entries_are_found_by_secret_and_pay_id_only() {
        let store = Store::default();
        let now = Timestamp::now();
        let secret = new_secret();
        let entry = store.insert(&secret, data(now), now);
        let pay_id = entry
            .data()
            .order
            .as_ref()
            .map(|o| o.pay_id.clone())
            .unwrap();
        assert!(store.get(&secret).is_some());
        assert!(store.get(&new_secret()).is_none());
        assert!(store.get(&entry.digest).is_none(), "the digest is no link");
        let (found, kind) = store.by_pay_id(&pay_id).unwrap();
        assert!(Arc::ptr_eq(&found, &entry));
        assert_eq!(kind, PayKind::Spawn);
        store.remove_pay_id(&pay_id);
        assert!(store.by_pay_id(&pay_id).is_none());
    }

    #[test]
    fn eviction_drops_stale_orders_first() {
        let store = Store::default();
        let now = Timestamp::now();
        let old = now - jiff::SignedDuration::from_secs(7200);
        let stale = new_secret();
        store.insert(&stale, data(old), old);
        let fresh = new_secret();
        store.insert(&fresh, data(now), now);
        evict(&mut store.inner(), now);
        assert!(store.get(&stale).is_none());
        assert!(store.get(&fresh).is_some());
        assert_eq!(store.inner().pay_ids.len(), 1);
    }
}

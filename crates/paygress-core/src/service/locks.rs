//! Async locks by key (one per request key, one per lease), removed from the map when
//! nobody holds or waits for them.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OwnedMutexGuard;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// A map of async mutexes created on demand.
pub(super) struct KeyedLocks<K> {
    map: Mutex<HashMap<K, Slot>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// Holds one key's lock; releases it (and forgets the key if unused) on drop.
pub(super) struct KeyedGuard<'a, K: Eq + Hash + Clone> {
    locks: &'a KeyedLocks<K>,
    key: K,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    fn map(&self) -> MutexGuard<'_, HashMap<K, Slot>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, key: &K) -> Slot {
        self.map().entry(key.clone()).or_default().clone()
    }

    /// Waits for `key`'s lock.
    pub(super) async fn lock(&self, key: &K) -> KeyedGuard<'_, K> {
        let slot = self.slot(key);
        let guard = slot.lock_owned().await;
        KeyedGuard {
            locks: self,
            key: key.clone(),
            guard: Some(guard),
        }
    }

    /// Takes `key`'s lock if nobody holds it.
    pub(super) fn try_lock(&self, key: &K) -> Option<KeyedGuard<'_, K>> {
        let slot = self.slot(key);
        match slot.try_lock_owned() {
            Ok(guard) => Some(KeyedGuard {
                locks: self,
                key: key.clone(),
                guard: Some(guard),
            }),
            Err(_) => {
                self.forget_if_unused(key);
                None
            }
        }
    }

    fn forget_if_unused(&self, key: &K) {
        let mut map = self.map();
        // Only the map's own reference left: nobody holds or waits for it.
        if map.get(key).is_some_and(|s| Arc::strong_count(s) == 1) {
            map.remove(key);
        }
    }

    /// How many keys have a lock (held or awaited).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map().len()
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyedGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks.forget_if_unused(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_forgotten_once_released_and_try_lock_sees_holders() {
        let locks = KeyedLocks::<u32>::default();
        let held = locks.lock(&1).await;
        assert!(locks.try_lock(&1).is_none());
        assert!(locks.try_lock(&2).is_some());
        assert_eq!(locks.len(), 1);
        drop(held);
        assert_eq!(locks.len(), 0);
        assert!(locks.try_lock(&1).is_some());
        assert_eq!(locks.len(), 0);
    }
}

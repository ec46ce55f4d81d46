//! [`MemoryJournal`]: the journal in a map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;

use super::lock;
use crate::ports::{Entry, Journal, JournalError, RequestKey, Stage};

/// A [`Journal`] in memory: idempotency within one process, lost on restart.
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal(Arc<Mutex<HashMap<RequestKey, Entry>>>);

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stage recorded for `key` (tests read it).
    pub fn stage(&self, key: &RequestKey) -> Option<Stage> {
        lock(&self.0).get(key).map(|e| e.stage.clone())
    }

    /// How many entries the journal holds.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    /// Whether the journal is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn get(&self, key: &RequestKey) -> Result<Option<Entry>, JournalError> {
        Ok(lock(&self.0).get(key).cloned())
    }

    async fn put(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        lock(&self.0).insert(key.clone(), entry.clone());
        Ok(())
    }

    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError> {
        Ok(lock(&self.0)
            .iter()
            .filter(|(_, e)| !matches!(e.stage, Stage::Done { .. }))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect())
    }

    async fn prune(&self, before: Timestamp) -> Result<usize, JournalError> {
        let mut map = lock(&self.0);
        let len = map.len();
        map.retain(|_, e| !(matches!(e.stage, Stage::Done { .. }) && e.updated_at < before));
        Ok(len - map.len())
    }
}

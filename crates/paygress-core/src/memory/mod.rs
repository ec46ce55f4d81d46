//! In-memory implementations of the ports: real code (not mocks) for tests, demos and
//! embedders' own test suites. Nothing here touches a network or a disk.
//!
//! One module per port: `backend` ([`MemoryBackend`]), `journal` ([`MemoryJournal`]),
//! `verifier` ([`MemoryVerifier`]); the clock is here.

mod backend;
mod journal;
mod verifier;

use std::sync::{Arc, Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};

use crate::ports::Clock;

pub use self::backend::{FailOn, MemoryBackend};
pub use self::journal::MemoryJournal;
pub use self::verifier::MemoryVerifier;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------- clock

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves time forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        let mut t = lock(&self.0);
        *t = t
            .saturating_add(SignedDuration::from_secs(seconds))
            .unwrap_or(*t);
    }

    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        *lock(&self.0) = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *lock(&self.0)
    }
}

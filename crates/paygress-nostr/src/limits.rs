//! Limits against abuse: token-bucket rate limits per sender and in total, a budget
//! for decrypting untagged events, a budget for the transport's own error replies, and
//! a cap on requests in flight.
//!
//! The order of checks in the transport keeps junk cheap: kind, size, addressing
//! (`p` tag), age and signature first; untagged events only within their budget; the
//! per-sender limit before any decryption of a direct event (its signature proves the
//! sender); only then decryption and parsing. Only authenticated, decrypted, well-formed
//! requests count against the global limit and enter the dedup window, so junk never
//! pushes a real request out of it.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use nostr_sdk::{EventId, PublicKey};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A token bucket: up to `burst` at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Largest burst (bucket size); at least 1.
    pub burst: u32,
    /// Sustained rate per minute; at least 1.
    pub per_minute: u32,
}

impl RateLimit {
    /// `burst` at once, `per_minute` sustained.
    pub const fn new(burst: u32, per_minute: u32) -> Self {
        Self { burst, per_minute }
    }

    fn quota(self) -> Quota {
        let nz = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::per_minute(nz(self.per_minute)).allow_burst(nz(self.burst))
    }
}

/// The transport's limits (part of [`crate::NostrConfig`]). The defaults are far above
/// what one honest buyer does (a request every few seconds at most) and keep the service
/// responsive under a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NostrLimits {
    /// Requests one sender (the event author, or the seal signer of a gift wrap) may send.
    /// Default: burst 30, 120 per minute. Events over it are dropped before decryption.
    pub per_sender: RateLimit,
    /// Well-formed requests from all senders together. Default: burst 200, 600 per minute.
    /// Requests over it are answered `rate_limited` (their token untouched).
    pub global: RateLimit,
    /// Untagged request events (the seed's `nak` commands, which name no service) that
    /// are tried for decryption. Default: burst 100, 600 per minute; `p`-tagged events
    /// addressed to the service do not count against it.
    pub untagged: RateLimit,
    /// Error replies the transport sends itself (invalid, busy, rate limited). Default:
    /// burst 50, 300 per minute; past it errors are dropped silently.
    pub error_replies: RateLimit,
    /// Requests delivered to the service and not yet answered. Default 256; past it new
    /// requests are answered `unavailable` (their token untouched).
    pub max_in_flight: usize,
}

impl Default for NostrLimits {
    fn default() -> Self {
        Self {
            per_sender: RateLimit::new(30, 120),
            global: RateLimit::new(200, 600),
            untagged: RateLimit::new(100, 600),
            error_replies: RateLimit::new(50, 300),
            max_in_flight: 256,
        }
    }
}

impl NostrLimits {
    /// The most requests the global limit lets into the dedup window over `minutes`.
    pub fn max_admitted(&self, minutes: u64) -> u64 {
        u64::from(self.global.burst.max(1))
            .saturating_add(u64::from(self.global.per_minute.max(1)).saturating_mul(minutes))
    }
}

/// Senders tracked before idle ones are forgotten.
const MAX_TRACKED_SENDERS: usize = 100_000;
/// Rejected event ids remembered, so a copy from another relay is not answered twice.
const REJECTED_REMEMBERED: usize = 10_000;

/// The running limits.
pub(crate) struct Limiter {
    per_sender: DefaultKeyedRateLimiter<PublicKey>,
    global: DefaultDirectRateLimiter,
    untagged: DefaultDirectRateLimiter,
    error_replies: DefaultDirectRateLimiter,
    in_flight: Arc<Semaphore>,
    rejected: std::sync::Mutex<(HashSet<EventId>, VecDeque<EventId>)>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Limiter {
    pub(crate) fn new(limits: &NostrLimits) -> Self {
        Self {
            per_sender: RateLimiter::keyed(limits.per_sender.quota()),
            global: RateLimiter::direct(limits.global.quota()),
            untagged: RateLimiter::direct(limits.untagged.quota()),
            error_replies: RateLimiter::direct(limits.error_replies.quota()),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            rejected: std::sync::Mutex::default(),
        }
    }

    /// Takes one request of `sender`; `false` when over its limit.
    pub(crate) fn sender(&self, sender: &PublicKey) -> bool {
        if self.per_sender.len() > MAX_TRACKED_SENDERS {
            self.per_sender.retain_recent();
            self.per_sender.shrink_to_fit();
        }
        self.per_sender.check_key(sender).is_ok()
    }

    /// Takes one well-formed request; `false` when over the global limit.
    pub(crate) fn global(&self) -> bool {
        self.global.check().is_ok()
    }

    /// Takes one untagged decryption; `false` when over budget.
    pub(crate) fn untagged(&self) -> bool {
        self.untagged.check().is_ok()
    }

    /// Takes one error reply; `false` when over budget.
    pub(crate) fn error_reply(&self) -> bool {
        self.error_replies.check().is_ok()
    }

    /// A slot for one request in flight, released when the permit drops.
    pub(crate) fn in_flight(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// Records `id` as rejected; `false` if it already was.
    pub(crate) fn reject_once(&self, id: EventId) -> bool {
        let mut guard = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if !set.insert(id) {
            return false;
        }
        order.push_back(id);
        while order.len() > REJECTED_REMEMBERED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    /// Whether `id` was rejected recently.
    pub(crate) fn was_rejected(&self, id: &EventId) -> bool {
        let guard = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr_sdk::Keys;

    #[test]
    fn buckets_allow_their_burst_then_refuse() {
        let l = Limiter::new(&NostrLimits {
            per_sender: RateLimit::new(2, 1),
            global: RateLimit::new(3, 1),
            untagged: RateLimit::new(1, 1),
            error_replies: RateLimit::new(1, 1),
            max_in_flight: 1,
        });
        let (a, b) = (Keys::generate().public_key(), Keys::generate().public_key());
        assert!(l.sender(&a) && l.sender(&a));
        assert!(!l.sender(&a), "a's burst is spent");
        assert!(l.sender(&b), "b has its own bucket");
        assert!(l.global() && l.global() && l.global() && !l.global());
        assert!(l.untagged() && !l.untagged());
        assert!(l.error_reply() && !l.error_reply());
        let permit = l.in_flight().unwrap();
        assert!(l.in_flight().is_none());
        drop(permit);
        assert!(l.in_flight().is_some());
    }

    #[test]
    fn rejected_ids_are_remembered_boundedly() {
        let l = Limiter::new(&NostrLimits::default());
        let id = |n: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&n.to_be_bytes());
            EventId::from_byte_array(b)
        };
        assert!(l.reject_once(id(0)));
        assert!(!l.reject_once(id(0)));
        for n in 1..=REJECTED_REMEMBERED as u32 {
            l.reject_once(id(n));
        }
        assert!(!l.was_rejected(&id(0)));
        assert!(l.was_rejected(&id(REJECTED_REMEMBERED as u32)));
    }

    #[test]
    fn default_global_limit_fits_the_default_dedup_window() {
        // An hour of backlog at the global limit stays within the default 50 000 ids.
        assert!(NostrLimits::default().max_admitted(60) <= 50_000);
    }
}

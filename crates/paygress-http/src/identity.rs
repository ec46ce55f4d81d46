//! Who a paid HTTP request comes from, and which earlier request it repeats.
//!
//! A paid request's answer holds secrets (login password, change or refund token), and
//! the service repeats the first answer to a repeat of the same request (core's journal
//! is idempotent per [`RequestKey`]). Over HTTP nothing but the request itself identifies
//! its sender, so:
//!
//! - **With an `Idempotency-Key` `K`** (a random value the client keeps, as the CLI
//!   sends): the request key comes from the endpoint and `K` only, and the requester is
//!   `http:key-<sha256 of K>`. Whoever presents `K` again gets the same answer; `K` reused
//!   for a different body or token answers `422`.
//! - **Without one** (the seed's `curl` examples): the request key comes from the endpoint
//!   and the token, so one token is never charged twice; the requester is random for
//!   every request. A repeat is answered `409` without any secret: knowing a spent token
//!   (as the mint, or a proxy that logged the body, does) never yields its answer.
//!
//! Core records the requester with each journal entry and refuses to replay an entry
//! to another requester; [`Admissions`] enforces the same at this edge (and the `422`
//! above), so that neither alone is trusted with it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use paygress_core::{CashuToken, ErrorCode, Request, RequestKey, Requester};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The optional header naming one logical request across retries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Shortest accepted `Idempotency-Key` (it guards the answer, so it must be hard to guess).
pub const IDEMPOTENCY_KEY_MIN: usize = 16;
/// Longest accepted `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_MAX: usize = 128;
/// The pattern an `Idempotency-Key` must match (as stated in the OpenAPI document).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[A-Za-z0-9._:+/=-]{16,128}$";

/// The identity of one paid request.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Core's idempotency key.
    pub(crate) key: RequestKey,
    /// Who asks (the journal entry and the lease are bound to it).
    pub(crate) sender: Requester,
    /// Whether the client named the request with an `Idempotency-Key`.
    pub(crate) keyed: bool,
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

fn valid_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._:+/=-".contains(&c)
}

/// The `Idempotency-Key` header, if present and well-formed.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&[u8]>, ApiError> {
    header_key(headers, IDEMPOTENCY_KEY, "Idempotency-Key")
}

/// The header carrying the `Idempotency-Key` of the request that created a lease, for
/// requests only its owner may make (a release).
pub const LEASE_KEY: &str = "x-lease-key";

/// A key-valued header (`Idempotency-Key`, `X-Lease-Key`), if present and well-formed.
fn header_key<'h>(
    headers: &'h HeaderMap,
    header: &str,
    name: &str,
) -> Result<Option<&'h [u8]>, ApiError> {
    let mut values = headers.get_all(header).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if values.next().is_some()
        || !(IDEMPOTENCY_KEY_MIN..=IDEMPOTENCY_KEY_MAX).contains(&bytes.len())
        || !bytes.iter().copied().all(valid_key_char)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "{name} must be one value of {IDEMPOTENCY_KEY_MIN} to \
                 {IDEMPOTENCY_KEY_MAX} characters from A-Z a-z 0-9 . _ : + / = - \
                 (a random value such as a UUID)"
            ),
        ));
    }
    Ok(Some(bytes))
}

impl Identity {
    /// The identity of a paid request to `endpoint` paying with `token`.
    pub(crate) fn of(
        endpoint: &str,
        headers: &HeaderMap,
        token: &CashuToken,
    ) -> Result<Self, ApiError> {
        Ok(match idempotency_key(headers)? {
            Some(k) => Self {
                key: RequestKey::new(
                    "http",
                    &digest(&[b"paygress-http/key", endpoint.as_bytes(), k]),
                ),
                sender: Requester::new(
                    "http",
                    &format!("key-{}", digest(&[b"paygress-http/requester", k])),
                ),
                keyed: true,
            },
            None => Self {
                key: RequestKey::new(
                    "http",
                    &digest(&[
                        b"paygress-http/token",
                        endpoint.as_bytes(),
                        token.expose().as_bytes(),
                    ]),
                ),
                sender: Requester::new(
                    "http",
                    &format!("anon-{}", hex::encode(rand::random::<[u8; 16]>())),
                ),
                keyed: false,
            },
        })
    }
}

impl Identity {
    /// The identity of a request only a lease's owner may make (a release). The
    /// `X-Lease-Key` header carries the `Idempotency-Key` of the request that created the
    /// lease: it proves ownership (the owner is `http:key-<sha256 of it>`). The request
    /// itself is named by its own `Idempotency-Key` (a retry with the same one gets the
    /// first answer); without one, every request is new. No `X-Lease-Key`: `401`.
    pub(crate) fn owner(endpoint: &str, headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(owner) = header_key(headers, LEASE_KEY, "X-Lease-Key")? else {
            return Err(ApiError::with_status(
                StatusCode::UNAUTHORIZED,
                ErrorCode::NotOwner,
                "only the lease's owner may do this: send the Idempotency-Key of the request \
                 that created the lease in the X-Lease-Key header",
            ));
        };
        let (name, keyed) = match idempotency_key(headers)? {
            Some(k) => (k.to_vec(), true),
            None => (rand::random::<[u8; 16]>().to_vec(), false),
        };
        Ok(Self {
            key: RequestKey::new(
                "http",
                &digest(&[b"paygress-http/owner", endpoint.as_bytes(), owner, &name]),
            ),
            sender: Requester::new(
                "http",
                &format!("key-{}", digest(&[b"paygress-http/requester", owner])),
            ),
            keyed,
        })
    }
}

/// A digest of everything a request asks, to tell a retry from a different request
/// reusing an `Idempotency-Key`.
pub(crate) fn fingerprint(request: &Request) -> [u8; 32] {
    let json = match request {
        Request::Spawn(r) => serde_json::to_vec(r),
        Request::TopUp(r) => serde_json::to_vec(r),
        Request::Status(r) => serde_json::to_vec(r),
        Request::Release(r) => serde_json::to_vec(r),
    }
    .unwrap_or_default();
    Sha256::digest(&json).into()
}

#[derive(Debug)]
struct Seen {
    seq: u64,
    sender: Requester,
    fingerprint: [u8; 32],
}

#[derive(Debug, Default)]
struct Table {
    seen: HashMap<RequestKey, Seen>,
    order: VecDeque<(u64, RequestKey)>,
    next: u64,
}

/// Paid requests this process has taken (the last `capacity`), by request key: who
/// sent each and what it asked.
#[derive(Debug)]
pub(crate) struct Admissions {
    capacity: usize,
    table: Mutex<Table>,
}

/// Why a request may not run.
fn repeat_without_key() -> ApiError {
    ApiError::with_status(
        StatusCode::CONFLICT,
        ErrorCode::TokenAlreadySpent,
        "this token already paid for an earlier request; its answer is only repeated to a \
         request carrying that request's Idempotency-Key",
    )
}

fn key_reused() -> ApiError {
    ApiError::with_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidRequest,
        "this Idempotency-Key was used for a different request; use a new key for a new \
         request",
    )
}

impl Admissions {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            table: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a request, or refuses a keyless repeat (`409`) or a key reused for another
    /// request (`422`). The returned guard forgets the admission when dropped unless
    /// [`Admission::keep`] is called (a request that never ran, or whose answer held no
    /// secret, leaves nothing to protect).
    pub(crate) fn admit(
        self: &Arc<Self>,
        id: &Identity,
        fingerprint: [u8; 32],
    ) -> Result<Admission, ApiError> {
        let mut t = self.lock();
        if let Some(seen) = t.seen.get(&id.key) {
            return if seen.sender != id.sender {
                Err(if id.keyed {
                    // Same key digest, other requester: cannot happen for one key.
                    key_reused()
                } else {
                    repeat_without_key()
                })
            } else if seen.fingerprint != fingerprint {
                Err(key_reused())
            } else {
                // A retry with the same key while (or after) the first runs.
                Ok(Admission {
                    admissions: self.clone(),
                    key: id.key.clone(),
                    seq: None,
                })
            };
        }
        t.next += 1;
        let seq = t.next;
        t.seen.insert(
            id.key.clone(),
            Seen {
                seq,
                sender: id.sender.clone(),
                fingerprint,
            },
        );
        t.order.push_back((seq, id.key.clone()));
        while t.seen.len() > self.capacity {
            let Some((old_seq, old)) = t.order.pop_front() else {
                break;
            };
            if t.seen.get(&old).is_some_and(|s| s.seq == old_seq) {
                t.seen.remove(&old);
            }
        }
        if t.order.len() > self.capacity.saturating_mul(2) {
            let Table { seen, order, .. } = &mut *t;
            order.retain(|(seq, key)| seen.get(key).is_some_and(|s| s.seq == *seq));
        }
        Ok(Admission {
            admissions: self.clone(),
            key: id.key.clone(),
            seq: Some(seq),
        })
    }

    fn forget(&self, key: &RequestKey, seq: u64) {
        let mut t = self.lock();
        if t.seen.get(key).is_some_and(|s| s.seq == seq) {
            t.seen.remove(key);
        }
    }
}

/// One admitted request; see [`Admissions::admit`].
#[derive(Debug)]
pub(crate) struct Admission {
    admissions: Arc<Admissions>,
    key: RequestKey,
    /// `Some` for the admission that recorded the entry (and may forget it).
    seq: Option<u64>,
}

impl Admission {
    /// Keeps the record: the answer holds a secret only this requester may see again.
    pub(crate) fn keep(mut self) {
        self.seq = None;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(seq) = self.seq {
            self.admissions.forget(&self.key, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(key: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = key {
            h.insert(IDEMPOTENCY_KEY, k.parse().unwrap());
        }
        h
    }

    #[test]
    fn keyed_identity_ignores_the_token_and_keyless_is_random_per_request() {
        let a = CashuToken::new("cashuBaaa");
        let b = CashuToken::new("cashuBbbb");
        let k = headers(Some("0123456789abcdef-key"));
        let (x, y) = (
            Identity::of("spawn", &k, &a).unwrap(),
            Identity::of("spawn", &k, &b).unwrap(),
        );
        assert_eq!((x.key.clone(), x.sender.clone()), (y.key, y.sender));
        assert_ne!(
            x.key,
            Identity::of("top_up", &k, &a).unwrap().key,
            "scoped by endpoint"
        );
        let (p, q) = (
            Identity::of("spawn", &headers(None), &a).unwrap(),
            Identity::of("spawn", &headers(None), &a).unwrap(),
        );
        assert_eq!(p.key, q.key);
        assert_ne!(p.sender, q.sender);
        assert_ne!(p.key, x.key);
        // Neither the key nor the token appears in an identity.
        assert!(!x.sender.as_str().contains("0123456789abcdef"));
        assert!(!x.key.as_str().contains("0123456789abcdef"));
        assert!(!p.key.as_str().contains("aaa"));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let t = CashuToken::new("cashuBaaa");
        for bad in ["short", "has space in it 123", &"x".repeat(129)] {
            assert!(
                Identity::of("spawn", &headers(Some(bad)), &t).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn admissions_refuse_keyless_repeats_and_reused_keys() {
        let adm = Admissions::new(10);
        let t = CashuToken::new("cashuBaaa");
        let first = Identity::of("spawn", &headers(None), &t).unwrap();
        let kept = adm.admit(&first, [1; 32]).unwrap();
        let repeat = Identity::of("spawn", &headers(None), &t).unwrap();
        assert_eq!(
            adm.admit(&repeat, [1; 32]).unwrap_err().status,
            StatusCode::CONFLICT
        );
        kept.keep();
        assert!(adm.admit(&repeat, [1; 32]).is_err());

        let k = Identity::of("spawn", &headers(Some("0123456789abcdef")), &t).unwrap();
        let a = adm.admit(&k, [2; 32]).unwrap();
        assert!(adm.admit(&k, [2; 32]).is_ok(), "a retry with the same key");
        assert_eq!(
            adm.admit(&k, [3; 32]).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Dropped without keep: forgotten (the request never ran or held no secret).
        drop(a);
        assert!(adm.admit(&k, [3; 32]).is_ok());
    }

    #[test]
    fn admissions_stay_bounded() {
        let adm = Admissions::new(3);
        let t = CashuToken::new("cashuBaaa");
        for n in 0..100 {
            let k = format!("key-{n:016}");
            let id = Identity::of("spawn", &headers(Some(&k)), &t).unwrap();
            adm.admit(&id, [0; 32]).unwrap().keep();
        }
        let table = adm.lock();
        assert_eq!(table.seen.len(), 3);
        assert!(table.order.len() <= 6);
    }
}

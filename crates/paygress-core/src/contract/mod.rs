//! The contract every [`PodBackend`] meets, as plain async functions.
//!
//! Each backend's test suite calls [`run_all`] (or the single checks) with a fresh
//! backend, so the Kubernetes backend, the local backend and [`MemoryBackend`] are held
//! to the same behaviour. The checks use leases a few minutes long and never wait for
//! expiry.
//!
//! [`MemoryBackend`]: crate::memory::MemoryBackend

pub mod journal;
pub mod verifier;

use jiff::{SignedDuration, Timestamp};

use crate::lease::{LeaseSpec, Requester};
use crate::money::MintUrl;
use crate::names::LeaseId;
use crate::ports::{BackendError, Extension, PodBackend};
use crate::pricing::Tier;
use crate::secret::Password;

/// A lease spec for contract checks: `minutes` long from now, owner `test:owner`.
pub fn sample_spec(minutes: i64) -> LeaseSpec {
    let now = Timestamp::now();
    LeaseSpec {
        id: LeaseId::generate(),
        owner: Requester::new("test", "owner"),
        username: "alice".parse().expect("valid username"),
        password: Password::generate(),
        ssh_public_key: None,
        password_login: true,
        image: crate::DEFAULT_IMAGE.to_owned(),
        tier: Tier::standard(),
        created_at: now,
        expires_at: now
            .checked_add(SignedDuration::from_mins(minutes))
            .expect("in range"),
        paid_msat: 60_000,
        mint: MintUrl::new("http://127.0.0.1:3338"),
    }
}

/// One `#[tokio::test]` per contract check, each on a fresh backend from `$make`: an
/// async function taking the check's number (0, 1, …: to give each its own ports or
/// directory) and returning `(backend, guard)`, the guard kept alive for the check (a
/// temporary directory, or `()`).
///
/// ```rust,ignore
/// async fn fresh(n: u16) -> (MemoryBackend, ()) {
///     (MemoryBackend::new(), ())
/// }
/// paygress_core::pod_backend_tests!(fresh);
/// ```
#[macro_export]
macro_rules! pod_backend_tests {
    ($make:path) => {
        $crate::pod_backend_tests!(@one $make, 0, contract_create_then_get_and_list, create_then_get_and_list);
        $crate::pod_backend_tests!(@one $make, 1, contract_create_twice_is_already_exists, create_twice_is_already_exists);
        $crate::pod_backend_tests!(@one $make, 2, contract_extend_moves_expiry, extend_moves_expiry);
        $crate::pod_backend_tests!(@one $make, 3, contract_extend_unknown_is_not_found, extend_unknown_is_not_found);
        $crate::pod_backend_tests!(@one $make, 4, contract_delete_removes_and_is_idempotent, delete_removes_and_is_idempotent);
    };
    (@one $make:path, $n:literal, $name:ident, $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (backend, _guard) = $make($n).await;
            $crate::contract::$check(&backend).await;
        }
    };
}

/// Runs every check in this module. Panics (with the check's name) on the first failure.
pub async fn run_all(backend: &dyn PodBackend) {
    create_then_get_and_list(backend).await;
    create_twice_is_already_exists(backend).await;
    extend_moves_expiry(backend).await;
    extend_unknown_is_not_found(backend).await;
    delete_removes_and_is_idempotent(backend).await;
}

/// A created lease is visible through `get` and `list` with its public data.
pub async fn create_then_get_and_list(backend: &dyn PodBackend) {
    let spec = sample_spec(5);
    let provisioned = backend.create(&spec).await.expect("create");
    assert!(provisioned.ssh_port > 0, "create: ssh_port");
    let record = backend
        .get(&spec.id)
        .await
        .expect("get")
        .expect("get: created lease is present");
    assert_eq!(record.id, spec.id, "get: id");
    assert_eq!(record.owner, spec.owner, "get: owner");
    assert_eq!(record.username, spec.username, "get: username");
    assert_eq!(record.tier, spec.tier.id, "get: tier");
    // A backend that starts the paid time when the pod is reachable reports the real
    // expiry; it is never earlier than paid.
    let expires_at = provisioned.expires_at.unwrap_or(spec.expires_at);
    assert!(
        expires_at >= spec.expires_at,
        "create: expires_at before paid"
    );
    assert_eq!(
        record.expires_at.as_second(),
        expires_at.as_second(),
        "get: expires_at"
    );
    assert_eq!(record.paid_msat, spec.paid_msat, "get: paid_msat");
    assert_eq!(record.node_port, provisioned.node_port, "get: node_port");
    let all = backend.list().await.expect("list");
    assert!(all.iter().any(|r| r.id == spec.id), "list: contains lease");
    backend.delete(&spec.id).await.expect("cleanup");
}

/// Creating an id that exists fails with `AlreadyExists` and leaves the first intact.
pub async fn create_twice_is_already_exists(backend: &dyn PodBackend) {
    let spec = sample_spec(5);
    backend.create(&spec).await.expect("create");
    match backend.create(&spec).await {
        Err(BackendError::AlreadyExists(id)) => assert_eq!(id, spec.id),
        other => panic!("create twice: expected AlreadyExists, got {other:?}"),
    }
    assert!(backend.get(&spec.id).await.expect("get").is_some());
    backend.delete(&spec.id).await.expect("cleanup");
}

/// `extend` moves the expiry later and records the new total paid.
pub async fn extend_moves_expiry(backend: &dyn PodBackend) {
    let spec = sample_spec(5);
    let provisioned = backend.create(&spec).await.expect("create");
    let later = provisioned
        .expires_at
        .unwrap_or(spec.expires_at)
        .checked_add(SignedDuration::from_mins(10))
        .expect("in range");
    backend
        .extend(
            &spec.id,
            &Extension {
                expires_at: later,
                paid_msat: spec.paid_msat + 10_000,
            },
        )
        .await
        .expect("extend");
    let record = backend.get(&spec.id).await.expect("get").expect("present");
    assert_eq!(
        record.expires_at.as_second(),
        later.as_second(),
        "extend: expiry"
    );
    assert_eq!(record.paid_msat, spec.paid_msat + 10_000, "extend: paid");
    backend.delete(&spec.id).await.expect("cleanup");
}

/// Extending a lease that does not exist is `NotFound`.
pub async fn extend_unknown_is_not_found(backend: &dyn PodBackend) {
    let id = LeaseId::generate();
    let ext = Extension {
        expires_at: Timestamp::now()
            .checked_add(SignedDuration::from_mins(10))
            .expect("in range"),
        paid_msat: 1,
    };
    match backend.extend(&id, &ext).await {
        Err(BackendError::NotFound(got)) => assert_eq!(got, id),
        other => panic!("extend unknown: expected NotFound, got {other:?}"),
    }
}

/// `delete` removes the lease; deleting again (or an unknown id) succeeds.
pub async fn delete_removes_and_is_idempotent(backend: &dyn PodBackend) {
    let spec = sample_spec(5);
    backend.create(&spec).await.expect("create");
    backend.delete(&spec.id).await.expect("delete");
    assert!(
        backend.get(&spec.id).await.expect("get").is_none(),
        "delete: lease gone"
    );
    assert!(
        !backend
            .list()
            .await
            .expect("list")
            .iter()
            .any(|r| r.id == spec.id),
        "delete: not listed"
    );
    backend.delete(&spec.id).await.expect("delete twice");
}

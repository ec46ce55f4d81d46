//! Pods: where leases run ([`PodBackend`]).

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use thiserror::Error;

use super::BoxError;
use crate::lease::{LeaseRecord, LeaseSpec, Provisioned};
use crate::names::LeaseId;

/// Why a backend operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackendError {
    /// No such lease.
    #[error("lease {0} not found")]
    NotFound(LeaseId),
    /// A lease with that id already exists.
    #[error("lease {0} already exists")]
    AlreadyExists(LeaseId),
    /// The backend refused the spec (bad image, quota, invalid field).
    #[error("rejected: {0}")]
    Rejected(String),
    /// A concurrent change won (e.g. HTTP 409); retrying may succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend cannot be reached or is overloaded.
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// Anything else.
    #[error("backend error: {0}")]
    Other(#[source] BoxError),
}

/// A new expiry for a lease, with the total paid so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The new end of the paid time (always later than the current one).
    pub expires_at: Timestamp,
    /// Total paid for the lease, msat.
    pub paid_msat: u64,
}

/// Runs leases' pods. A backend enforces expiry on its own (the Kubernetes Job deadline,
/// the local backend's timers); the service's reaper is a second line.
#[cfg_attr(any(test, feature = "mockall"), mockall::automock)]
#[async_trait]
pub trait PodBackend: Send + Sync {
    /// Short name (`kubernetes`, `local`, `memory`).
    fn name(&self) -> &'static str;

    /// Creates the lease's pod, reachable until `spec.expires_at`.
    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError>;

    /// Moves a live lease's expiry later.
    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError>;

    /// Removes the lease and everything it owns. Deleting a missing lease is not an error.
    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError>;

    /// Public data of one lease, if it exists.
    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError>;

    /// Public data of every lease the backend holds (including ones not yet removed
    /// after expiry).
    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError>;

    /// Whether one more lease can be created now (free ports, disk, quota). Asked
    /// before a token is redeemed, so a full service refuses it untouched. `Err` with
    /// the reason when it cannot. Default: always room.
    async fn check_capacity(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Removes what leases that no longer exist left behind (e.g. pods, Services and
    /// Secrets whose Job was deleted with orphaning); returns how many objects were
    /// removed. Called by the reaper. Default: nothing to sweep.
    async fn sweep(&self) -> Result<usize, BackendError> {
        Ok(0)
    }

    /// Finishes what the backend still owes leases it already answered for (e.g. writes
    /// a create left to complete after its reply), before the process stops. Called
    /// once by an orderly shutdown, within its grace period. Default: nothing owed.
    async fn shutdown(&self) {}
}

/// A shared pod backend.
pub type DynPodBackend = Arc<dyn PodBackend>;

//! [`MemoryBackend`]: leases in a map.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock;
use crate::lease::{LeaseRecord, LeaseSpec, Provisioned};
use crate::names::LeaseId;
use crate::ports::{BackendError, Extension, PodBackend};
use crate::protocol::HostKey;

/// A failure the memory backend should produce on its next call of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// Next `create`.
    Create,
    /// Next `extend`.
    Extend,
    /// Next `extend` is applied but its answer is lost (returns
    /// [`BackendError::Unavailable`] after moving the expiry).
    ExtendAnswerLost,
    /// Next `create` is applied but its answer is lost.
    CreateAnswerLost,
}

#[derive(Debug, Default)]
struct BackendState {
    leases: BTreeMap<LeaseId, (LeaseRecord, LeaseSpec)>,
    fail: HashMap<FailOn, usize>,
    next_port: u16,
    host_keys: Vec<HostKey>,
    sweeps_stall: bool,
    shutdowns: usize,
}

impl std::hash::Hash for FailOn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self as u8).hash(state);
    }
}

/// A [`PodBackend`] that keeps leases in a map. Ports are handed out from 30000 up.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    state: Arc<Mutex<BackendState>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next call of `kind` fail with [`BackendError::Unavailable`] (called
    /// twice, the next two calls).
    pub fn fail_next(&self, kind: FailOn) {
        *lock(&self.state).fail.entry(kind).or_default() += 1;
    }

    /// The spec a lease was created with (tests check credentials with it).
    pub fn spec(&self, id: &LeaseId) -> Option<LeaseSpec> {
        lock(&self.state).leases.get(id).map(|(_, s)| s.clone())
    }

    /// Makes new leases present these SSH host keys.
    pub fn set_host_keys(&self, keys: Vec<HostKey>) {
        lock(&self.state).host_keys = keys;
    }

    /// Makes every later `sweep` wait forever, as a sweep listing every object of a big
    /// cluster takes seconds (tests check that nothing else waits for it).
    pub fn stall_sweeps(&self) {
        lock(&self.state).sweeps_stall = true;
    }

    /// How many times `shutdown` was called.
    pub fn shutdowns(&self) -> usize {
        lock(&self.state).shutdowns
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        lock(&self.state).leases.len()
    }

    /// Whether no lease exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_failure(&self, kind: FailOn) -> Result<(), BackendError> {
        let mut st = lock(&self.state);
        let left = st.fail.get_mut(&kind).filter(|n| **n > 0);
        if let Some(n) = left {
            *n -= 1;
            Err(BackendError::Unavailable(
                format!("injected {kind:?} failure").into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl PodBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        self.take_failure(FailOn::Create)?;
        let lost = self.take_failure(FailOn::CreateAnswerLost);
        let mut st = lock(&self.state);
        if st.leases.contains_key(&spec.id) {
            return Err(BackendError::AlreadyExists(spec.id.clone()));
        }
        let port = 30000 + st.next_port;
        st.next_port = st.next_port.wrapping_add(1) % 2768;
        let record = LeaseRecord::new(spec, 2222, Some(port));
        st.leases.insert(spec.id.clone(), (record, spec.clone()));
        lost?;
        Ok(Provisioned {
            ssh_port: 2222,
            node_port: Some(port),
            ssh_host: None,
            instructions: vec![],
            expires_at: None,
            host_keys: st.host_keys.clone(),
        })
    }

    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        self.take_failure(FailOn::Extend)?;
        let lost = self.take_failure(FailOn::ExtendAnswerLost);
        let mut st = lock(&self.state);
        let (record, _) = st
            .leases
            .get_mut(id)
            .ok_or_else(|| BackendError::NotFound(id.clone()))?;
        if extension.expires_at <= record.expires_at {
            return Err(BackendError::Rejected(format!(
                "new expiry {} is not after the current {}",
                extension.expires_at, record.expires_at
            )));
        }
        record.expires_at = extension.expires_at;
        record.paid_msat = extension.paid_msat;
        lost
    }

    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        lock(&self.state).leases.remove(id);
        Ok(())
    }

    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        Ok(lock(&self.state).leases.get(id).map(|(r, _)| r.clone()))
    }

    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        Ok(lock(&self.state)
            .leases
            .values()
            .map(|(r, _)| r.clone())
            .collect())
    }

    async fn sweep(&self) -> Result<usize, BackendError> {
        let stall = lock(&self.state).sweeps_stall;
        if stall {
            std::future::pending::<()>().await;
        }
        Ok(0)
    }

    async fn shutdown(&self) {
        lock(&self.state).shutdowns += 1;
    }
}

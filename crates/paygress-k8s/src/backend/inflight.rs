//! What the backend has in flight for its leases, in this process: the creates under
//! way (the sweep leaves their fresh Secret and Service alone), the writes a create
//! left to finish after it returned (reads and writes of that lease wait for them), and
//! the addresses of the nodes it has looked up.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use jiff::Timestamp;
use paygress_core::{LeaseId, LeasePhase, LeaseRecord};
use tokio::time::Instant;

/// How long a node's address is used without reading the node again.
pub(super) const NODE_ADDRESS_TTL: Duration = Duration::from_secs(600);

/// How many node addresses are kept (beyond it, all are forgotten and read again).
const NODE_ADDRESSES: usize = 1024;

/// The writes a create left behind for one lease.
struct Settling {
    /// Which registration this is (an entry is removed by its own task only).
    serial: u64,
    /// Done when every write has landed or been given up.
    done: Shared<BoxFuture<'static, ()>>,
    /// The expiry the patch sets (the one the buyer was told).
    expires_at: Timestamp,
}

/// See the module docs.
#[derive(Default)]
pub(super) struct Inflight {
    creating: Mutex<HashSet<String>>,
    settling: Mutex<HashMap<String, Settling>>,
    serial: Mutex<u64>,
    nodes: Mutex<HashMap<String, (String, Instant)>>,
    node_reads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Marks a lease as being created while it lives.
pub(super) struct Creating<'a> {
    inflight: &'a Inflight,
    id: String,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        lock(&self.inflight.creating).remove(&self.id);
    }
}

impl Inflight {
    /// Marks `id` as being created until the guard is dropped.
    pub(super) fn creating(&self, id: &LeaseId) -> Creating<'_> {
        lock(&self.creating).insert(id.as_str().to_owned());
        Creating {
            inflight: self,
            id: id.as_str().to_owned(),
        }
    }

    /// Whether this process is creating lease `name` now.
    pub(super) fn is_creating(&self, name: &str) -> bool {
        lock(&self.creating).contains(name)
    }

    /// Whether this process is creating lease `name`, or still writing what its create
    /// left (the ownerReferences among them): its objects are this process's to finish.
    pub(super) fn is_ours_in_progress(&self, name: &str) -> bool {
        self.is_creating(name) || lock(&self.settling).contains_key(name)
    }

    /// Runs `writes` in a task of its own; until they end, [`settled`](Self::settled)
    /// waits for them and [`overlay`](Self::overlay) shows the lease as running until
    /// `expires_at`. Inside a tokio runtime.
    pub(super) fn settle(
        self: &std::sync::Arc<Self>,
        id: &LeaseId,
        expires_at: Timestamp,
        writes: impl Future<Output = ()> + Send + 'static,
    ) {
        let serial = {
            let mut serial = lock(&self.serial);
            *serial += 1;
            *serial
        };
        let name = id.as_str().to_owned();
        // The entry is in place before the task can remove it: the task takes the same
        // lock when it ends.
        let mut settling = lock(&self.settling);
        let inflight = self.clone();
        let key = name.clone();
        let task = tokio::spawn(async move {
            writes.await;
            let mut settling = lock(&inflight.settling);
            if settling.get(&key).is_some_and(|s| s.serial == serial) {
                settling.remove(&key);
            }
        });
        let done = async move {
            let _ = task.await;
        }
        .boxed()
        .shared();
        settling.insert(
            name,
            Settling {
                serial,
                done,
                expires_at,
            },
        );
    }

    /// Waits until the writes a create left for lease `id` have ended (at once when
    /// there are none).
    pub(super) async fn settled(&self, id: &LeaseId) {
        let done = lock(&self.settling)
            .get(id.as_str())
            .map(|s| s.done.clone());
        if let Some(done) = done {
            done.await;
        }
    }

    /// Waits until the writes every create left have ended.
    pub(super) async fn all_settled(&self) {
        let pending: Vec<_> = lock(&self.settling)
            .values()
            .map(|s| s.done.clone())
            .collect();
        futures::future::join_all(pending).await;
    }

    /// Leases whose started patch has not landed yet are shown as it will make them:
    /// running, until the expiry the buyer was told.
    pub(super) fn overlay(&self, records: &mut [LeaseRecord]) {
        let settling = lock(&self.settling);
        if settling.is_empty() {
            return;
        }
        for record in records {
            if record.phase == LeasePhase::Provisioning
                && let Some(s) = settling.get(record.id.as_str())
            {
                record.phase = LeasePhase::Running;
                record.expires_at = s.expires_at;
            }
        }
    }

    /// The address of node `name` if it was read less than [`NODE_ADDRESS_TTL`] ago.
    pub(super) fn node_address(&self, name: &str) -> Option<String> {
        let nodes = lock(&self.nodes);
        nodes
            .get(name)
            .filter(|(_, at)| at.elapsed() < NODE_ADDRESS_TTL)
            .map(|(address, _)| address.clone())
    }

    /// The gate of reads of node `name`: creates that find its address unknown queue on
    /// it, so the first reads the node and the others use what it found (64 creates at
    /// once on a fresh backend would otherwise read the same node dozens of times).
    pub(super) fn node_read(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut reads = lock(&self.node_reads);
        if reads.len() >= NODE_ADDRESSES && !reads.contains_key(name) {
            reads.clear();
        }
        reads.entry(name.to_owned()).or_default().clone()
    }

    /// Remembers the address of node `name`.
    pub(super) fn remember_node(&self, name: &str, address: &str) {
        let mut nodes = lock(&self.nodes);
        if nodes.len() >= NODE_ADDRESSES && !nodes.contains_key(name) {
            nodes.clear();
        }
        nodes.insert(name.to_owned(), (address.to_owned(), Instant::now()));
    }
}

//! Selling your own kind of machine: implement [`PodBackend`], check it against the
//! contract every backend meets, and hand it to the service.
//!
//! ```text
//! cargo run -p paygress-core --example own_backend
//! ```
//!
//! The backend here keeps its "machines" in a map (a real one would call a VM API or
//! start a container). Everything else is core's: pricing, the payment journal, refunds
//! when `create` fails, the reaper's calls to `delete` at expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use paygress_core::memory::MemoryVerifier;
use paygress_core::{
    Amount, BackendError, Extension, LeaseId, LeaseRecord, LeaseSpec, MintUrl, Paygress,
    PodBackend, Provisioned, Reply, Request, RequestKey, Requester, ServiceConfig, SpawnRequest,
};

/// One "machine" per lease, reachable on its own port.
#[derive(Default)]
struct MapBackend {
    machines: Mutex<HashMap<LeaseId, LeaseRecord>>,
}

impl MapBackend {
    fn machines(&self) -> std::sync::MutexGuard<'_, HashMap<LeaseId, LeaseRecord>> {
        self.machines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl PodBackend for MapBackend {
    fn name(&self) -> &'static str {
        "map"
    }

    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        let mut machines = self.machines();
        if machines.contains_key(&spec.id) {
            // The contract: a second create of one id fails and leaves the first alone.
            return Err(BackendError::AlreadyExists(spec.id.clone()));
        }
        let port = 40_000 + u16::try_from(machines.len()).unwrap_or(0);
        machines.insert(spec.id.clone(), LeaseRecord::new(spec, 22, Some(port)));
        Ok(Provisioned {
            ssh_port: 22,
            node_port: Some(port),
            ssh_host: None,
            instructions: vec![format!("your machine {} is up", spec.id)],
            expires_at: None,
            // A backend that knows its machines' SSH host keys lists them here, so the
            // buyer's first login is verified.
            host_keys: Vec::new(),
        })
    }

    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        let mut machines = self.machines();
        let record = machines
            .get_mut(id)
            .ok_or_else(|| BackendError::NotFound(id.clone()))?;
        record.expires_at = extension.expires_at;
        record.paid_msat = extension.paid_msat;
        Ok(())
    }

    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        self.machines().remove(id);
        Ok(())
    }

    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        Ok(self.machines().get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        Ok(self.machines().values().cloned().collect())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // 1. The contract every backend meets (each check panics with its name on failure).
    //    In a test suite, `paygress_core::pod_backend_tests!(fresh)` makes one test each.
    paygress_core::contract::run_all(&MapBackend::default()).await;
    println!("MapBackend meets the PodBackend contract");

    // 2. The service, with a payment verifier (core's in-memory one here; the
    //    `paygress-cashu` crate's `CashuVerifier` with real ecash).
    let mint = MintUrl::new("http://127.0.0.1:3338");
    let verifier = Arc::new(MemoryVerifier::new(vec![mint.clone()]));
    let backend = Arc::new(MapBackend::default());
    let service =
        Paygress::builder(ServiceConfig::default(), verifier.clone(), backend.clone()).build();

    // 3. A buyer pays 30 sat for 20 minutes (the default rate is 60 sat an hour).
    let token = verifier.mint_token(&mint, Amount::sat(30));
    let request = Request::Spawn(SpawnRequest::new(token).with_duration_minutes(20));
    let key = RequestKey::new("example", "first-request");
    match service
        .handle(&key, &Requester::new("example", "buyer"), request)
        .await
    {
        Reply::AccessDetails(access) => {
            println!(
                "leased {} until {} on port {:?}; change returned: {}",
                access.pod_name,
                access.expires_at,
                access.node_port,
                access.change_token.is_some()
            );
            assert_eq!(backend.machines().len(), 1);
        }
        other => panic!("unexpected reply: {other:?}"),
    }
}

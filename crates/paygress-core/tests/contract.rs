//! The backend contract against core's in-memory backend, one test per check.

use paygress_core::memory::MemoryBackend;

async fn fresh(_check: u16) -> (MemoryBackend, ()) {
    (MemoryBackend::new(), ())
}

paygress_core::pod_backend_tests!(fresh);

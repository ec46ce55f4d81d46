//! The backend and journal contracts against core's in-memory backend and journal,
//! one test per check.

use paygress_core::contract::verifier::VerifierFixture;
use paygress_core::memory::{MemoryBackend, MemoryJournal, MemoryVerifier};
use paygress_core::{Amount, CashuToken, MintUrl, PaymentVerifier};

async fn fresh(_check: u16) -> (MemoryBackend, ()) {
    (MemoryBackend::new(), ())
}

paygress_core::pod_backend_tests!(fresh);

async fn fresh_journal(_check: u16) -> (MemoryJournal, ()) {
    (MemoryJournal::new(), ())
}

paygress_core::journal_tests!(fresh_journal);

/// A buyer and the service sharing core's in-memory ledger.
struct MemoryFixture(MemoryVerifier);

#[async_trait::async_trait]
impl VerifierFixture for MemoryFixture {
    fn verifier(&self) -> &dyn PaymentVerifier {
        &self.0
    }
    fn mint(&self) -> MintUrl {
        MintUrl::new("http://127.0.0.1:3338")
    }
    async fn token(&self, sat: u64) -> CashuToken {
        self.0.mint_token(&self.mint(), Amount::sat(sat))
    }
    async fn cash(&self, token: &CashuToken) -> Option<u64> {
        self.0.spend(token).map(|a| a.value)
    }
}

async fn fresh_verifier(_check: u16) -> (MemoryFixture, ()) {
    let mint = MintUrl::new("http://127.0.0.1:3338");
    (MemoryFixture(MemoryVerifier::new(vec![mint])), ())
}

paygress_core::payment_verifier_tests!(fresh_verifier);

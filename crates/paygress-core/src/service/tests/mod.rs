//! Unit tests of the service: every branch of spawn, top-up, status, settle and reap,
//! with `mockall` mocks where a call must (not) happen and the in-memory fakes where a
//! flow is easier to follow with real state.

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use mockall::predicate::{always, eq};

use super::*;
use crate::lease::{LeaseRecord, LeaseSpec, LeaseState, Provisioned};
use crate::memory::{FailOn, ManualClock, MemoryBackend, MemoryJournal};
use crate::money::Amount;
use crate::money::{MintUrl, Unit};
use crate::ports::{
    BackendError, Entry, Extension, IssueId, Journal, JournalError, MockJournal,
    MockPaymentVerifier, MockPodBackend, PaymentError, PodBackend, Purpose, RedeemAttempt,
    Redeemed, TokenCheck, TokenInfo,
};
use crate::pricing::{DurationLimits, Rate};
use crate::protocol::{AccessDetails, ErrorReply};
use crate::protocol::{SpawnRequest, StatusRequest, TopUpRequest, TopUpResult};
use crate::secret::{CashuToken, Password};

// ---------------------------------------------------------------- fixtures

pub(super) const HOUR: u64 = 3600;
pub(super) const MAX_SECONDS: u64 = 24 * HOUR;

pub(super) fn mint() -> MintUrl {
    MintUrl::new("http://127.0.0.1:3338")
}

pub(super) fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("timestamp")
}

pub(super) fn at(seconds: u64) -> Timestamp {
    add_seconds(start(), seconds)
}

pub(super) fn big_tier() -> Tier {
    Tier {
        id: "big".to_owned(),
        cpu_millicores: 4000,
        memory_mib: 8192,
        rate: Rate::from_sats_per_hour(120),
    }
}

/// 60 sat/hour (1 sat a minute), leases of 1 minute to 24 hours, one extra image and a
/// "big" tier at 120 sat/hour.
pub(super) fn config() -> ServiceConfig {
    ServiceConfig {
        tiers: vec![Tier::standard(), big_tier()],
        limits: DurationLimits {
            min_seconds: 60,
            max_seconds: MAX_SECONDS,
        },
        allowed_images: vec!["ubuntu:24.04".to_owned()],
        ..ServiceConfig::default()
    }
}

pub(super) fn key(id: &str) -> RequestKey {
    RequestKey::new("test", id)
}

pub(super) fn buyer() -> Requester {
    Requester::new("test", "buyer")
}

/// The attempt a prepared redeem of a token worth `face` records.
pub(super) fn attempt(face: Amount) -> RedeemAttempt {
    RedeemAttempt {
        mint: mint(),
        face,
        fee: Amount::new(0, face.unit),
        receipt: "attempt-1".to_owned(),
    }
}

pub(super) fn token() -> CashuToken {
    CashuToken::new("cashuBpayment")
}

pub(super) fn spawn_req(minutes: Option<u64>) -> SpawnRequest {
    SpawnRequest {
        cashu_token: token(),
        ssh_username: Some("alice".to_owned()),
        pod_image: None,
        duration_minutes: minutes,
        tier: None,
        ssh_public_key: None,
        password_login: None,
    }
}

pub(super) fn top_up_req(pod: &LeaseId) -> Request {
    Request::TopUp(TopUpRequest {
        pod_name: pod.to_string(),
        cashu_token: token(),
    })
}

pub(super) struct Ports {
    verifier: MockPaymentVerifier,
    backend: Option<MockPodBackend>,
    memory: MemoryBackend,
    journal: Option<MockJournal>,
    memory_journal: MemoryJournal,
    clock: ManualClock,
    config: ServiceConfig,
}

impl Ports {
    /// Mock verifier (with no expectations), in-memory backend, journal and clock.
    pub(super) fn new() -> Self {
        let mut verifier = MockPaymentVerifier::new();
        // Tokens the service issues (change, refunds) are read back for their value:
        // worth what was asked (no mint fee) unless a test says otherwise.
        verifier
            .expect_inspect()
            .withf(|t| *t != token())
            .returning(|_| Err(PaymentError::InvalidToken("a test token".into())));
        Self {
            verifier,
            backend: None,
            memory: MemoryBackend::new(),
            journal: None,
            memory_journal: MemoryJournal::new(),
            clock: ManualClock::new(start()),
            config: config(),
        }
    }

    /// The verifier reads any token as worth `face` at [`mint`], with no mint fee.
    pub(super) fn token_worth(mut self, face: Amount) -> Self {
        self.verifier
            .expect_inspect()
            .withf(|t| *t == token())
            .returning(move |_| {
                Ok(TokenInfo {
                    mint: mint(),
                    amount: face,
                    fee: Amount::new(0, face.unit),
                })
            });
        self.verifier
            .expect_prepare()
            .returning(move |_| Ok(attempt(face)));
        self
    }

    /// Redeeming credits `credited` (exactly once).
    pub(super) fn redeems(mut self, credited: Amount) -> Self {
        self.verifier
            .expect_redeem()
            .withf(|t, _| *t == token())
            .times(1)
            .returning(move |_, _| {
                Ok(Redeemed {
                    mint: mint(),
                    amount: credited,
                })
            });
        self
    }

    /// Redeem must not be called.
    pub(super) fn never_redeems(mut self) -> Self {
        self.verifier.expect_redeem().never();
        self.verifier.expect_resolve().never();
        self
    }

    /// `issue` is called exactly once, with exactly `amount` at [`mint`].
    pub(super) fn issues(mut self, amount: Amount, text: &'static str) -> Self {
        self.verifier
            .expect_issue_once()
            .with(always(), eq(mint()), eq(amount))
            .times(1)
            .returning(move |_, _, _| Ok(CashuToken::new(text)));
        self
    }

    /// `issue` must not be called.
    pub(super) fn never_issues(mut self) -> Self {
        self.verifier.expect_issue_once().never();
        self
    }

    pub(super) fn build(self) -> (Paygress, MemoryBackend, MemoryJournal, ManualClock) {
        let backend: DynPodBackend = match self.backend {
            Some(b) => Arc::new(b),
            None => Arc::new(self.memory.clone()),
        };
        let journal: DynJournal = match self.journal {
            Some(j) => Arc::new(j),
            None => Arc::new(self.memory_journal.clone()),
        };
        let service = Paygress::builder(self.config, Arc::new(self.verifier), backend)
            .journal(journal)
            .clock(Arc::new(self.clock.clone()))
            .build();
        (service, self.memory, self.memory_journal, self.clock)
    }
}

pub(super) fn expect_access(reply: Reply) -> AccessDetails {
    match reply {
        Reply::AccessDetails(a) => a,
        other => panic!("expected access details, got {other:?}"),
    }
}

pub(super) fn expect_top_up(reply: Reply) -> TopUpResult {
    match reply {
        Reply::TopUp(t) => t,
        other => panic!("expected a top-up result, got {other:?}"),
    }
}

pub(super) fn expect_error(reply: Reply) -> ErrorReply {
    match reply {
        Reply::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub(super) async fn spawn(service: &Paygress, id: &str, req: SpawnRequest) -> Reply {
    service
        .handle(&key(id), &buyer(), Request::Spawn(req))
        .await
}

/// A live lease owned by [`buyer`] in `backend`, expiring at `expires_at`.
pub(super) async fn seed_lease(
    backend: &MemoryBackend,
    tier: Tier,
    expires_at: Timestamp,
) -> LeaseId {
    let id = LeaseId::generate();
    let spec = LeaseSpec {
        id: id.clone(),
        owner: buyer(),
        username: "alice".parse().expect("username"),
        password: Password::generate(),
        ssh_public_key: None,
        password_login: true,
        image: "linuxserver/openssh-server:latest".to_owned(),
        tier,
        created_at: start(),
        expires_at,
        paid_msat: 60_000,
        mint: mint(),
    };
    backend.create(&spec).await.expect("seed lease");
    id
}

pub(super) fn record(id: &LeaseId, expires_at: Timestamp) -> LeaseRecord {
    LeaseRecord {
        id: id.clone(),
        owner: buyer(),
        username: "alice".parse().expect("username"),
        tier: "standard".to_owned(),
        image: "linuxserver/openssh-server:latest".to_owned(),
        created_at: start(),
        expires_at,
        paid_msat: 60_000,
        ssh_port: 2222,
        node_port: Some(30000),
        phase: Default::default(),
        mint: Some(mint()),
    }
}

mod capacity;
mod grace;
mod idempotency;
mod notices;
mod quotes;
mod release;
mod settle;
mod spawn;
mod spawn_checks;
mod spawn_failures;
mod top_up;

/// A mock backend with room for new leases.
pub(super) fn mock_backend() -> MockPodBackend {
    let mut b = MockPodBackend::new();
    b.expect_check_capacity().returning(|| Ok(()));
    b.expect_sweep().returning(|| Ok(0));
    b
}

//! Unit tests of the service: every branch of spawn, top-up, status, settle and reap,
//! with `mockall` mocks where a call must (not) happen and the in-memory fakes where a
//! flow is easier to follow with real state.

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use mockall::predicate::eq;

use super::*;
use crate::memory::{ManualClock, MemoryBackend, MemoryJournal};
use crate::money::Unit;
use crate::ports::{
    Journal, JournalError, MockJournal, MockPaymentVerifier, MockPodBackend, PodBackend, TokenCheck,
};

// ---------------------------------------------------------------- fixtures

const HOUR: u64 = 3600;
const MAX_SECONDS: u64 = 24 * HOUR;

fn mint() -> MintUrl {
    MintUrl::new("http://127.0.0.1:3338")
}

fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("timestamp")
}

fn at(seconds: u64) -> Timestamp {
    add_seconds(start(), seconds)
}

fn big_tier() -> Tier {
    Tier {
        id: "big".to_owned(),
        cpu_millicores: 4000,
        memory_mib: 8192,
        rate: Rate::from_sats_per_hour(120),
    }
}

/// 60 sat/hour (1 sat a minute), leases of 1 minute to 24 hours, one extra image and a
/// "big" tier at 120 sat/hour.
fn config() -> ServiceConfig {
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

fn key(id: &str) -> RequestKey {
    RequestKey::new("test", id)
}

fn buyer() -> Requester {
    Requester::new("test", "buyer")
}

fn token() -> CashuToken {
    CashuToken::new("cashuBpayment")
}

fn spawn_req(minutes: Option<u64>) -> SpawnRequest {
    SpawnRequest {
        cashu_token: token(),
        ssh_username: Some("alice".to_owned()),
        pod_image: None,
        duration_minutes: minutes,
        tier: None,
        ssh_public_key: None,
    }
}

fn top_up_req(pod: &LeaseId) -> Request {
    Request::TopUp(TopUpRequest {
        pod_name: pod.to_string(),
        cashu_token: token(),
    })
}

struct Ports {
    verifier: MockPaymentVerifier,
    backend: Option<MockPodBackend>,
    memory: MemoryBackend,
    journal: Option<MockJournal>,
    memory_journal: MemoryJournal,
    clock: ManualClock,
}

impl Ports {
    /// Mock verifier (with no expectations), in-memory backend, journal and clock.
    fn new() -> Self {
        Self {
            verifier: MockPaymentVerifier::new(),
            backend: None,
            memory: MemoryBackend::new(),
            journal: None,
            memory_journal: MemoryJournal::new(),
            clock: ManualClock::new(start()),
        }
    }

    /// The verifier reads any token as worth `face` at [`mint`].
    fn token_worth(mut self, face: Amount) -> Self {
        self.verifier.expect_inspect().returning(move |_| {
            Ok(TokenInfo {
                mint: mint(),
                amount: face,
            })
        });
        self
    }

    /// Redeeming credits `credited` (exactly once).
    fn redeems(mut self, credited: Amount) -> Self {
        self.verifier
            .expect_redeem()
            .with(eq(token()))
            .times(1)
            .returning(move |_| {
                Ok(Redeemed {
                    mint: mint(),
                    amount: credited,
                })
            });
        self
    }

    /// Redeem must not be called.
    fn never_redeems(mut self) -> Self {
        self.verifier.expect_redeem().never();
        self
    }

    /// `issue` is called exactly once, with exactly `amount` at [`mint`].
    fn issues(mut self, amount: Amount, text: &'static str) -> Self {
        self.verifier
            .expect_issue()
            .with(eq(mint()), eq(amount))
            .times(1)
            .returning(move |_, _| Ok(CashuToken::new(text)));
        self
    }

    /// `issue` must not be called.
    fn never_issues(mut self) -> Self {
        self.verifier.expect_issue().never();
        self
    }

    fn build(self) -> (Paygress, MemoryBackend, MemoryJournal, ManualClock) {
        let backend: DynPodBackend = match self.backend {
            Some(b) => Arc::new(b),
            None => Arc::new(self.memory.clone()),
        };
        let journal: DynJournal = match self.journal {
            Some(j) => Arc::new(j),
            None => Arc::new(self.memory_journal.clone()),
        };
        let service = Paygress::builder(config(), Arc::new(self.verifier), backend)
            .journal(journal)
            .clock(Arc::new(self.clock.clone()))
            .build();
        (service, self.memory, self.memory_journal, self.clock)
    }
}

fn expect_access(reply: Reply) -> AccessDetails {
    match reply {
        Reply::AccessDetails(a) => a,
        other => panic!("expected access details, got {other:?}"),
    }
}

fn expect_top_up(reply: Reply) -> TopUpResult {
    match reply {
        Reply::TopUp(t) => t,
        other => panic!("expected a top-up result, got {other:?}"),
    }
}

fn expect_error(reply: Reply) -> ErrorReply {
    match reply {
        Reply::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn spawn(service: &Paygress, id: &str, req: SpawnRequest) -> Reply {
    service
        .handle(&key(id), &buyer(), Request::Spawn(req))
        .await
}

/// A live lease owned by [`buyer`] in `backend`, expiring at `expires_at`.
async fn seed_lease(backend: &MemoryBackend, tier: Tier, expires_at: Timestamp) -> LeaseId {
    let id = LeaseId::generate();
    let spec = LeaseSpec {
        id: id.clone(),
        owner: buyer(),
        username: "alice".parse().expect("username"),
        password: Password::generate(),
        ssh_public_key: None,
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

fn record(id: &LeaseId, expires_at: Timestamp) -> LeaseRecord {
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
    }
}

// ---------------------------------------------------------------- spawn: money

#[tokio::test]
async fn spawn_with_duration_charges_exact_price_and_issues_exact_change() {
    let (service, backend, journal, _) = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(40), "cashuBchange")
        .build();

    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);

    assert_eq!(access.duration_seconds, HOUR);
    assert_eq!(access.expires_at, at(HOUR));
    assert_eq!(access.ssh_username, "alice");
    assert_eq!(access.tier, "standard");
    assert_eq!(
        access.change_token.as_ref().map(CashuToken::expose),
        Some("cashuBchange")
    );
    let spec = backend.spec(&access.pod_name).expect("lease created");
    assert_eq!(spec.paid_msat, 60_000);
    assert_eq!(spec.expires_at, at(HOUR));
    assert_eq!(spec.owner, buyer());
    assert_eq!(spec.password, access.ssh_password);
    assert_eq!(spec.image, "linuxserver/openssh-server:latest");
    assert_eq!(spec.mint, mint());
    match journal.get(&key("1")).await.expect("journal") {
        Some(Stage::Done { reply }) => assert_eq!(reply, Reply::AccessDetails(access)),
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn spawn_in_msat_returns_change_to_the_msat() {
    let (service, _, _, _) = Ports::new()
        .token_worth(Amount::msat(100_500))
        .redeems(Amount::msat(100_500))
        .issues(Amount::msat(40_500), "cashuBchange")
        .build();
    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(access.duration_seconds, HOUR);
}

#[tokio::test]
async fn spawn_paying_the_exact_price_issues_no_change() {
    let (service, _, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .never_issues()
        .build();
    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(access.duration_seconds, HOUR);
    assert!(access.change_token.is_none());
}

#[tokio::test]
async fn spawn_without_duration_buys_all_the_time_the_token_pays_for() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(90))
        .redeems(Amount::sat(90))
        .never_issues()
        .build();
    let access = expect_access(spawn(&service, "1", spawn_req(None)).await);
    assert_eq!(access.duration_seconds, 90 * 60);
    assert_eq!(access.expires_at, at(90 * 60));
    assert!(access.change_token.is_none());
    let spec = backend.spec(&access.pod_name).expect("lease created");
    assert_eq!(spec.paid_msat, 90_000);
}

#[tokio::test]
async fn spawn_without_duration_is_capped_at_the_maximum_with_change() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(2000))
        .redeems(Amount::sat(2000))
        .issues(Amount::sat(560), "cashuBchange")
        .build();
    let access = expect_access(spawn(&service, "1", spawn_req(None)).await);
    assert_eq!(access.duration_seconds, MAX_SECONDS);
    assert!(access.change_token.is_some());
    assert_eq!(
        backend.spec(&access.pod_name).expect("lease").paid_msat,
        1_440_000
    );
}

#[tokio::test]
async fn spawn_uses_the_requested_tiers_rate() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(150))
        .redeems(Amount::sat(150))
        .issues(Amount::sat(30), "cashuBchange")
        .build();
    let mut req = spawn_req(Some(60));
    req.tier = Some("big".to_owned());
    let access = expect_access(spawn(&service, "1", req).await);
    assert_eq!(access.tier, "big");
    assert_eq!(access.duration_seconds, HOUR);
    let spec = backend.spec(&access.pod_name).expect("lease");
    assert_eq!(spec.tier, big_tier());
    assert_eq!(spec.paid_msat, 120_000);
}

#[tokio::test]
async fn mint_fee_leaving_too_little_after_redeem_refunds_what_was_received() {
    // The face value covers the price, the amount credited after the mint's fee does not.
    let mut backend = MockPodBackend::new();
    backend.expect_create().never();
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(59))
        .issues(Amount::sat(59), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
    assert_eq!(
        err.refund_token.as_ref().map(CashuToken::expose),
        Some("cashuBrefund")
    );
}

// ---------------------------------------------------------------- spawn: refused before payment

/// A service whose verifier, backend and journal fail the test if the payment is
/// touched or a pod is created.
fn untouchable(face: Option<Amount>) -> Paygress {
    let mut ports = Ports::new().never_redeems().never_issues();
    match face {
        Some(face) => ports = ports.token_worth(face),
        None => {
            ports.verifier.expect_inspect().never();
        }
    }
    ports
        .verifier
        .expect_accepted_mints()
        .returning(|| vec![mint()]);
    ports
        .verifier
        .expect_accepted_units()
        .returning(|| vec![Unit::Sat]);
    let mut backend = MockPodBackend::new();
    backend.expect_name().return_const("mock");
    backend.expect_create().never();
    backend.expect_extend().never();
    backend.expect_delete().never();
    ports.backend = Some(backend);
    let mut journal = MockJournal::new();
    journal.expect_get().returning(|_| Ok(None));
    journal.expect_put().never();
    ports.journal = Some(journal);
    ports.build().0
}

#[tokio::test]
async fn insufficient_token_for_the_duration_is_refused_without_redeeming() {
    let service = untouchable(Some(Amount::sat(59)));
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
    assert!(err.refund_token.is_none());
    assert!(err.message.contains("not redeemed"), "{}", err.message);
}

#[tokio::test]
async fn one_msat_cannot_buy_an_hour() {
    let service = untouchable(Some(Amount::msat(1)));
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
}

#[tokio::test]
async fn token_below_the_minimum_lease_without_duration_is_refused_without_redeeming() {
    // 999 msat buys 59.94 s at 60 sat/hour; the minimum lease is 60 s.
    let service = untouchable(Some(Amount::msat(999)));
    let err = expect_error(spawn(&service, "1", spawn_req(None)).await);
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
    assert!(err.refund_token.is_none());
}

#[tokio::test]
async fn duration_out_of_range_is_refused_before_the_token_is_read() {
    for minutes in [0, MAX_SECONDS / 60 + 1, u64::MAX / 60 + 1, u64::MAX] {
        let service = untouchable(None);
        let err = expect_error(spawn(&service, "1", spawn_req(Some(minutes))).await);
        assert_eq!(err.code, ErrorCode::DurationOutOfRange, "{minutes} minutes");
    }
}

#[tokio::test]
async fn duration_at_the_bounds_is_accepted() {
    for (minutes, face) in [(1, 1), (MAX_SECONDS / 60, 1440)] {
        let (service, _, _, _) = Ports::new()
            .token_worth(Amount::sat(face))
            .redeems(Amount::sat(face))
            .never_issues()
            .build();
        let access = expect_access(spawn(&service, "1", spawn_req(Some(minutes))).await);
        assert_eq!(access.duration_seconds, minutes * 60);
    }
}

#[tokio::test]
async fn bad_and_reserved_usernames_are_refused_before_the_token_is_read() {
    for name in [
        "",
        "root",
        "Root",
        "abc",
        "1abc",
        "-x",
        "a b",
        "a;rm -rf /",
        "../etc",
        "ali.ce",
        "élise",
        "x\n",
    ] {
        let service = untouchable(None);
        let mut req = spawn_req(Some(60));
        req.ssh_username = Some(name.to_owned());
        let err = expect_error(spawn(&service, "1", req).await);
        assert_eq!(err.code, ErrorCode::InvalidUsername, "{name:?}");
    }
    let long = "a".repeat(33);
    let service = untouchable(None);
    let mut req = spawn_req(Some(60));
    req.ssh_username = Some(long);
    assert_eq!(
        expect_error(spawn(&service, "1", req).await).code,
        ErrorCode::InvalidUsername
    );
}

#[tokio::test]
async fn missing_username_defaults_to_user() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    let mut req = spawn_req(Some(60));
    req.ssh_username = None;
    let access = expect_access(spawn(&service, "1", req).await);
    assert_eq!(access.ssh_username, "user");
    assert_eq!(
        backend
            .spec(&access.pod_name)
            .expect("lease")
            .username
            .as_str(),
        "user"
    );
}

#[tokio::test]
async fn image_not_on_the_allow_list_is_refused_before_the_token_is_read() {
    for image in [
        "evil/miner:latest",
        "ubuntu:24.04 ",
        "",
        "linuxserver/openssh-server",
    ] {
        let service = untouchable(None);
        let mut req = spawn_req(Some(60));
        req.pod_image = Some(image.to_owned());
        let err = expect_error(spawn(&service, "1", req).await);
        assert_eq!(err.code, ErrorCode::ImageNotAllowed, "{image:?}");
        assert!(err.message.contains("ubuntu:24.04"), "{}", err.message);
    }
}

#[tokio::test]
async fn default_and_allowed_images_are_used() {
    for (asked, used) in [
        (None, "linuxserver/openssh-server:latest"),
        (
            Some("linuxserver/openssh-server:latest"),
            "linuxserver/openssh-server:latest",
        ),
        (Some("ubuntu:24.04"), "ubuntu:24.04"),
    ] {
        let (service, backend, _, _) = Ports::new()
            .token_worth(Amount::sat(60))
            .redeems(Amount::sat(60))
            .build();
        let mut req = spawn_req(Some(60));
        req.pod_image = asked.map(str::to_owned);
        let access = expect_access(spawn(&service, "1", req).await);
        assert_eq!(backend.spec(&access.pod_name).expect("lease").image, used);
    }
}

#[tokio::test]
async fn unknown_tier_is_refused_before_the_token_is_read() {
    let service = untouchable(None);
    let mut req = spawn_req(Some(60));
    req.tier = Some("huge".to_owned());
    let err = expect_error(spawn(&service, "1", req).await);
    assert_eq!(err.code, ErrorCode::UnknownTier);
    assert!(err.message.contains("standard, big"), "{}", err.message);
}

#[tokio::test]
async fn bad_ssh_public_keys_are_refused_before_the_token_is_read() {
    for key_line in [
        "",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 AAAA",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI$(rm -rf)",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB",
        "command=\"sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG",
    ] {
        let service = untouchable(None);
        let mut req = spawn_req(Some(60));
        req.ssh_public_key = Some(key_line.to_owned());
        let err = expect_error(spawn(&service, "1", req).await);
        assert_eq!(err.code, ErrorCode::InvalidPublicKey, "{key_line:?}");
    }
}

#[tokio::test]
async fn a_valid_ssh_public_key_reaches_the_backend() {
    let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ alice@laptop";
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    let mut req = spawn_req(Some(60));
    req.ssh_public_key = Some(format!("  {line}\n"));
    let access = expect_access(spawn(&service, "1", req).await);
    assert_eq!(
        backend
            .spec(&access.pod_name)
            .expect("lease")
            .ssh_public_key
            .as_deref(),
        Some(line)
    );
}

#[tokio::test]
async fn offline_token_errors_are_refused_without_redeeming() {
    let cases: Vec<(fn() -> PaymentError, ErrorCode)> = vec![
        (
            || PaymentError::MintNotAccepted("https://evil.example".into()),
            ErrorCode::MintNotAccepted,
        ),
        (
            || PaymentError::UnsupportedUnit("usd".into()),
            ErrorCode::UnsupportedUnit,
        ),
        (
            || PaymentError::InvalidToken("garbage".into()),
            ErrorCode::InvalidToken,
        ),
        (|| PaymentError::AlreadySpent, ErrorCode::TokenAlreadySpent),
    ];
    for (error, code) in cases {
        let mut ports = Ports::new().never_redeems().never_issues();
        ports
            .verifier
            .expect_inspect()
            .times(1)
            .returning(move |_| Err(error()));
        let mut journal = MockJournal::new();
        journal.expect_get().returning(|_| Ok(None));
        journal.expect_put().never();
        ports.journal = Some(journal);
        let (service, backend, _, _) = ports.build();
        let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
        assert_eq!(err.code, code);
        assert!(err.refund_token.is_none());
        assert!(backend.is_empty());
    }
}

#[tokio::test]
async fn zero_value_token_is_refused_without_redeeming() {
    let service = untouchable(Some(Amount::sat(0)));
    assert_eq!(
        expect_error(spawn(&service, "1", spawn_req(None)).await).code,
        ErrorCode::InvalidToken
    );
}

// ---------------------------------------------------------------- spawn: redeem failures

#[tokio::test]
async fn redeem_failures_create_nothing_and_issue_nothing() {
    let cases: Vec<(fn() -> PaymentError, ErrorCode)> = vec![
        (|| PaymentError::AlreadySpent, ErrorCode::TokenAlreadySpent),
        (
            || PaymentError::MintUnavailable("connection refused".into()),
            ErrorCode::MintUnavailable,
        ),
        (|| PaymentError::Other("weird".into()), ErrorCode::Internal),
    ];
    for (error, code) in cases {
        let mut ports = Ports::new().token_worth(Amount::sat(60)).never_issues();
        ports
            .verifier
            .expect_redeem()
            .times(1)
            .returning(move |_| Err(error()));
        let mut backend = MockPodBackend::new();
        backend.expect_create().never();
        ports.backend = Some(backend);
        let (service, _, journal, _) = ports.build();
        let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
        assert_eq!(err.code, code);
        assert!(err.refund_token.is_none());
        assert!(journal.unfinished().await.expect("journal").is_empty());
    }
}

#[tokio::test]
async fn journal_write_failure_refuses_payment_without_redeeming() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .never_redeems()
        .never_issues();
    let mut journal = MockJournal::new();
    journal.expect_get().returning(|_| Ok(None));
    journal
        .expect_put()
        .returning(|_, _| Err(JournalError::Io("disk full".into())));
    ports.journal = Some(journal);
    let (service, backend, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("not redeemed"), "{}", err.message);
    assert!(backend.is_empty());
}

#[tokio::test]
async fn journal_read_failure_refuses_before_the_token_is_read() {
    let mut ports = Ports::new().never_redeems().never_issues();
    ports.verifier.expect_inspect().never();
    let mut journal = MockJournal::new();
    journal
        .expect_get()
        .returning(|_| Err(JournalError::Corrupt("bad record".into())));
    journal.expect_put().never();
    ports.journal = Some(journal);
    let (service, _, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::Unavailable);
}

#[tokio::test]
async fn journal_records_the_redeem_window_then_the_payment_then_the_reply() {
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60));
    let mut journal = MockJournal::new();
    journal.expect_get().returning(|_| Ok(None));
    let log = seen.clone();
    journal.expect_put().returning(move |k, stage| {
        assert_eq!(*k, key("1"));
        let name = match stage {
            Stage::Redeeming {
                purpose,
                token,
                face,
                ..
            } => {
                assert_eq!(*purpose, Purpose::Spawn);
                assert_eq!(*token, self::token());
                assert_eq!(*face, Amount::sat(60));
                "redeeming"
            }
            Stage::Paid { payment, .. } => {
                assert_eq!(payment.amount, Amount::sat(60));
                "paid"
            }
            Stage::Owed { .. } => "owed",
            Stage::Done { .. } => "done",
        };
        log.lock().expect("lock").push(name);
        Ok(())
    });
    ports.journal = Some(journal);
    let (service, _, _, _) = ports.build();
    expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(*seen.lock().expect("lock"), ["redeeming", "paid", "done"]);
}

// ---------------------------------------------------------------- spawn: provisioning failures

#[tokio::test]
async fn failed_create_deletes_the_lease_and_refunds_in_full() {
    let created: Arc<Mutex<Option<LeaseId>>> = Arc::default();
    let mut backend = MockPodBackend::new();
    let c = created.clone();
    backend.expect_create().times(1).returning(move |spec| {
        *c.lock().expect("lock") = Some(spec.id.clone());
        Err(BackendError::Unavailable("api server down".into()))
    });
    let c = created.clone();
    backend
        .expect_delete()
        .times(1)
        .withf(move |id| c.lock().expect("lock").as_ref() == Some(id))
        .returning(|_| Ok(()));
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(100), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();

    let reply = spawn(&service, "1", spawn_req(Some(60))).await;
    let err = expect_error(reply.clone());
    assert_eq!(err.code, ErrorCode::ProvisioningFailed);
    assert_eq!(
        err.refund_token.as_ref().map(CashuToken::expose),
        Some("cashuBrefund")
    );
    assert!(err.message.contains("refunded"), "{}", err.message);
    assert_eq!(
        journal.get(&key("1")).await.expect("journal"),
        Some(Stage::Done { reply })
    );
}

#[tokio::test]
async fn create_already_exists_refunds_without_deleting_the_other_lease() {
    let mut backend = MockPodBackend::new();
    backend
        .expect_create()
        .times(1)
        .returning(|spec| Err(BackendError::AlreadyExists(spec.id.clone())));
    backend.expect_delete().never();
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(100), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::ProvisioningFailed);
    assert!(err.refund_token.is_some());
}

#[tokio::test]
async fn failed_create_and_failed_cleanup_still_refund() {
    let mut backend = MockPodBackend::new();
    backend
        .expect_create()
        .returning(|_| Err(BackendError::Rejected("quota".into())));
    backend
        .expect_delete()
        .times(1)
        .returning(|_| Err(BackendError::Unavailable("down".into())));
    let mut ports = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .issues(Amount::sat(60), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::ProvisioningFailed);
    assert!(err.refund_token.is_some());
}

#[tokio::test]
async fn failed_change_still_grants_the_lease_and_records_the_debt() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100));
    ports
        .verifier
        .expect_issue()
        .with(eq(mint()), eq(Amount::sat(40)))
        .times(1)
        .returning(|_, _| Err(PaymentError::Issue("mint down".into())));
    let (service, backend, journal, _) = ports.build();

    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert!(access.change_token.is_none());
    assert!(
        access.instructions.iter().any(|i| i.contains("40 sat")),
        "{:?}",
        access.instructions
    );
    assert!(backend.spec(&access.pod_name).is_some());
    match journal.get(&key("1")).await.expect("journal") {
        Some(Stage::Owed {
            reply,
            mint: m,
            amount,
        }) => {
            assert_eq!(m, mint());
            assert_eq!(amount, Amount::sat(40));
            assert_eq!(expect_access(reply).pod_name, access.pod_name);
        }
        other => panic!("expected Owed, got {other:?}"),
    }
}

#[tokio::test]
async fn failed_refund_is_reported_as_pending_and_recorded() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100));
    ports
        .verifier
        .expect_issue()
        .with(eq(mint()), eq(Amount::sat(100)))
        .times(1)
        .returning(|_, _| Err(PaymentError::Issue("mint down".into())));
    let mut backend = MockPodBackend::new();
    backend
        .expect_create()
        .returning(|_| Err(BackendError::Unavailable("down".into())));
    backend.expect_delete().returning(|_| Ok(()));
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();

    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::RefundPending);
    assert!(err.refund_token.is_none());
    assert!(err.message.contains("100 sat"), "{}", err.message);
    assert!(matches!(
        journal.get(&key("1")).await.expect("journal"),
        Some(Stage::Owed { amount, .. }) if amount == Amount::sat(100)
    ));
}

// ---------------------------------------------------------------- idempotency

#[tokio::test]
async fn duplicate_request_replays_the_first_reply_without_charging_again() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(40), "cashuBchange")
        .build();
    let first = spawn(&service, "1", spawn_req(Some(60))).await;
    let second = spawn(&service, "1", spawn_req(Some(60))).await;
    // Even a different body under the same key is answered with the first reply.
    let third = spawn(&service, "1", spawn_req(Some(5))).await;
    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(backend.len(), 1);
}

#[tokio::test]
async fn in_flight_entries_are_removed_once_answered() {
    let (service, _, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert!(service.inflight.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn request_left_mid_payment_by_a_crash_is_not_run_again() {
    let mut ports = Ports::new().never_redeems().never_issues();
    ports.verifier.expect_inspect().never();
    let (service, _, journal, _) = ports.build();
    journal
        .put(
            &key("1"),
            &Stage::Paid {
                purpose: Purpose::Spawn,
                lease: LeaseId::generate(),
                payment: Redeemed {
                    mint: mint(),
                    amount: Amount::sat(60),
                },
            },
        )
        .await
        .expect("journal");
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::Unavailable);
}

#[tokio::test]
async fn duplicate_of_a_request_with_a_pending_refund_still_says_it_is_pending() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100));
    ports
        .verifier
        .expect_issue()
        .returning(|_, _| Err(PaymentError::Issue("mint down".into())));
    let mut backend = MockPodBackend::new();
    backend
        .expect_create()
        .returning(|_| Err(BackendError::Unavailable("down".into())));
    backend.expect_delete().returning(|_| Ok(()));
    ports.backend = Some(backend);
    let (service, _, _, _) = ports.build();

    let first = spawn(&service, "1", spawn_req(Some(60))).await;
    let again = spawn(&service, "1", spawn_req(Some(60))).await;
    assert_eq!(expect_error(first).code, ErrorCode::RefundPending);
    // Not "provisioning failed, your payment is refunded" without a refund token.
    assert_eq!(expect_error(again).code, ErrorCode::RefundPending);
}

#[tokio::test]
async fn mint_unavailable_reply_is_not_replayed_to_a_retry_of_the_same_request() {
    let mut ports = Ports::new().token_worth(Amount::sat(60));
    let mut calls = 0;
    ports.verifier.expect_redeem().times(2).returning(move |_| {
        calls += 1;
        if calls == 1 {
            Err(PaymentError::MintUnavailable("down".into()))
        } else {
            Ok(Redeemed {
                mint: mint(),
                amount: Amount::sat(60),
            })
        }
    });
    let (service, backend, _, _) = ports.build();
    let first = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(first.code, ErrorCode::MintUnavailable);
    assert!(first.code.is_retryable());
    let retry = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert!(backend.spec(&retry.pod_name).is_some());
    // ... and that success is now final.
    let again = spawn(&service, "1", spawn_req(Some(60))).await;
    assert_eq!(again, Reply::AccessDetails(retry));
}

// ---------------------------------------------------------------- top-up

#[tokio::test]
async fn top_up_extends_from_the_current_expiry_not_from_now() {
    let mut backend = MockPodBackend::new();
    let lease = LeaseId::generate();
    let current = record(&lease, at(HOUR));
    backend
        .expect_get()
        .with(eq(lease.clone()))
        .returning(move |_| Ok(Some(current.clone())));
    backend
        .expect_extend()
        .with(
            eq(lease.clone()),
            eq(Extension {
                expires_at: at(HOUR + 1800),
                paid_msat: 60_000 + 30_000,
            }),
        )
        .times(1)
        .returning(|_, _| Ok(()));
    let mut ports = Ports::new()
        .token_worth(Amount::sat(30))
        .redeems(Amount::sat(30))
        .never_issues();
    ports.backend = Some(backend);
    let (service, _, _, clock) = ports.build();
    clock.advance(600);

    let result = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(result.pod_name, lease);
    assert_eq!(result.added_seconds, 1800);
    assert_eq!(result.expires_at, at(HOUR + 1800));
    assert!(result.change_token.is_none());
}

#[tokio::test]
async fn top_up_past_the_maximum_is_capped_with_exact_change() {
    let (service, backend, _, clock) = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100))
        .issues(Amount::sat(90), "cashuBchange")
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(MAX_SECONDS)).await;
    clock.advance(600);
    let result = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(result.added_seconds, 600);
    assert_eq!(result.expires_at, at(MAX_SECONDS + 600));
    assert!(result.change_token.is_some());
    let record = backend.get(&lease).await.expect("get").expect("lease");
    assert_eq!(record.paid_msat, 60_000 + 10_000);
}

#[tokio::test]
async fn top_up_uses_the_leases_tier_rate() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    let lease = seed_lease(&backend, big_tier(), at(HOUR)).await;
    let result = expect_top_up(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(result.added_seconds, 1800);
}

#[tokio::test]
async fn top_up_of_an_unknown_expired_or_misnamed_pod_leaves_the_token_untouched() {
    let (service, backend, _, clock) = Ports::new().never_redeems().never_issues().build();
    let expired = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(i64::try_from(HOUR).expect("fits"));

    let unknown = LeaseId::generate();
    let err = expect_error(
        service
            .handle(&key("a"), &buyer(), top_up_req(&unknown))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PodNotFound);

    let err = expect_error(
        service
            .handle(&key("b"), &buyer(), top_up_req(&expired))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);

    let bad = Request::TopUp(TopUpRequest {
        pod_name: "ssh-pod-../../x".to_owned(),
        cashu_token: token(),
    });
    let err = expect_error(service.handle(&key("c"), &buyer(), bad).await);
    assert_eq!(err.code, ErrorCode::InvalidPodName);
    assert!(err.refund_token.is_none());
}

#[tokio::test]
async fn top_up_of_a_lease_at_the_maximum_leaves_the_token_untouched() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(10))
        .never_redeems()
        .never_issues()
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(MAX_SECONDS)).await;
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseAtMaximum);
}

#[tokio::test]
async fn top_up_too_small_to_buy_a_second_leaves_the_token_untouched() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::msat(16))
        .never_redeems()
        .never_issues()
        .build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
}

#[tokio::test]
async fn top_up_of_a_lease_that_expires_during_redeem_is_refunded() {
    let clock = ManualClock::new(start());
    let mut ports = Ports::new()
        .token_worth(Amount::sat(30))
        .issues(Amount::sat(30), "cashuBrefund");
    ports.clock = clock.clone();
    ports.verifier.expect_redeem().times(1).returning(move |_| {
        // The lease's time runs out while the mint is swapping the proofs.
        clock.advance(3600);
        Ok(Redeemed {
            mint: mint(),
            amount: Amount::sat(30),
        })
    });
    let (service, backend, _, _) = ports.build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);
    assert!(err.refund_token.is_some());
    let record = backend.get(&lease).await.expect("get").expect("lease");
    assert_eq!(record.expires_at, at(HOUR));
}

#[tokio::test]
async fn top_up_whose_extend_fails_is_refunded_in_full() {
    for (error, code) in [
        (
            BackendError::Unavailable("api down".into()),
            ErrorCode::ProvisioningFailed,
        ),
        (
            BackendError::NotFound(LeaseId::generate()),
            ErrorCode::PodNotFound,
        ),
    ] {
        let lease = LeaseId::generate();
        let current = record(&lease, at(HOUR));
        let mut backend = MockPodBackend::new();
        backend
            .expect_get()
            .returning(move |_| Ok(Some(current.clone())));
        let error = Mutex::new(Some(error));
        backend
            .expect_extend()
            .times(1)
            .returning(move |_, _| Err(error.lock().expect("lock").take().expect("called once")));
        backend.expect_delete().never();
        let mut ports = Ports::new()
            .token_worth(Amount::sat(30))
            .redeems(Amount::sat(30))
            .issues(Amount::sat(30), "cashuBrefund");
        ports.backend = Some(backend);
        let (service, _, _, _) = ports.build();
        let err = expect_error(
            service
                .handle(&key("t"), &buyer(), top_up_req(&lease))
                .await,
        );
        assert_eq!(err.code, code);
        assert_eq!(
            err.refund_token.as_ref().map(CashuToken::expose),
            Some("cashuBrefund")
        );
        assert!(service.lease_locks.lock().expect("lock").is_empty());
    }
}

#[tokio::test]
async fn lease_locks_are_released_after_refused_top_ups_and_reaping() {
    let clock = ManualClock::new(start());
    let mut ports = Ports::new()
        .token_worth(Amount::sat(30))
        .issues(Amount::sat(30), "cashuBrefund");
    ports.clock = clock.clone();
    let c = clock.clone();
    ports.verifier.expect_redeem().times(1).returning(move |_| {
        c.advance(3600);
        Ok(Redeemed {
            mint: mint(),
            amount: Amount::sat(30),
        })
    });
    let (service, backend, _, _) = ports.build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    let err = expect_error(
        service
            .handle(&key("t"), &buyer(), top_up_req(&lease))
            .await,
    );
    assert_eq!(err.code, ErrorCode::LeaseExpired);
    assert!(service.lease_locks.lock().expect("lock").is_empty());

    assert_eq!(service.reap_expired().await.expect("reap"), 1);
    assert!(service.lease_locks.lock().expect("lock").is_empty());
}

// ---------------------------------------------------------------- status

#[tokio::test]
async fn status_answers_the_owner_only() {
    let (service, backend, _, clock) = Ports::new().never_redeems().build();
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    clock.advance(600);
    let ask = |pod: &str| {
        Request::Status(StatusRequest {
            pod_name: pod.to_owned(),
        })
    };

    match service
        .handle(&key("s1"), &buyer(), ask(lease.as_str()))
        .await
    {
        Reply::Status(s) => {
            assert_eq!(s.pod_name, lease);
            assert_eq!(s.state, LeaseState::Active);
            assert_eq!(s.remaining_seconds, HOUR - 600);
            assert_eq!(s.expires_at, at(HOUR));
            assert_eq!(s.tier, "standard");
        }
        other => panic!("expected status, got {other:?}"),
    }
    let stranger = Requester::new("test", "stranger");
    let err = expect_error(
        service
            .handle(&key("s2"), &stranger, ask(lease.as_str()))
            .await,
    );
    assert_eq!(err.code, ErrorCode::NotOwner);
    let err = expect_error(
        service
            .handle(&key("s3"), &buyer(), ask(LeaseId::generate().as_str()))
            .await,
    );
    assert_eq!(err.code, ErrorCode::PodNotFound);
    let err = expect_error(
        service
            .handle(&key("s4"), &buyer(), ask("pod; rm -rf"))
            .await,
    );
    assert_eq!(err.code, ErrorCode::InvalidPodName);

    clock.advance(i64::try_from(HOUR).expect("fits"));
    match service
        .handle(&key("s1"), &buyer(), ask(lease.as_str()))
        .await
    {
        Reply::Status(s) => {
            assert_eq!(s.state, LeaseState::Expired);
            assert_eq!(s.remaining_seconds, 0);
        }
        other => panic!("expected status, got {other:?}"),
    }
}

// ---------------------------------------------------------------- expiry

#[tokio::test]
async fn reap_expired_removes_only_expired_leases() {
    let (service, backend, _, clock) = Ports::new().build();
    let short = seed_lease(&backend, Tier::standard(), at(600)).await;
    let exact = seed_lease(&backend, Tier::standard(), at(1200)).await;
    let long = seed_lease(&backend, Tier::standard(), at(HOUR)).await;
    assert_eq!(service.reap_expired().await.expect("reap"), 0);
    clock.advance(1200);
    assert_eq!(service.reap_expired().await.expect("reap"), 2);
    assert!(backend.get(&short).await.expect("get").is_none());
    assert!(backend.get(&exact).await.expect("get").is_none());
    assert!(backend.get(&long).await.expect("get").is_some());
    assert_eq!(service.reap_expired().await.expect("reap"), 0);
}

#[tokio::test]
async fn reap_expired_skips_a_lease_extended_meanwhile() {
    let lease = LeaseId::generate();
    let old = record(&lease, at(600));
    let extended = record(&lease, at(HOUR));
    let mut backend = MockPodBackend::new();
    backend
        .expect_list()
        .returning(move || Ok(vec![old.clone()]));
    backend
        .expect_get()
        .returning(move |_| Ok(Some(extended.clone())));
    backend.expect_delete().never();
    let mut ports = Ports::new();
    ports.backend = Some(backend);
    let (service, _, _, clock) = ports.build();
    clock.advance(600);
    assert_eq!(service.reap_expired().await.expect("reap"), 0);
}

// ---------------------------------------------------------------- settle

fn paid(purpose: Purpose, lease: &LeaseId, amount: Amount) -> Stage {
    Stage::Paid {
        purpose,
        lease: lease.clone(),
        payment: Redeemed {
            mint: mint(),
            amount,
        },
    }
}

#[tokio::test]
async fn settle_of_a_crashed_spawn_deletes_the_pod_and_refunds() {
    let lease = LeaseId::generate();
    let mut backend = MockPodBackend::new();
    backend
        .expect_delete()
        .with(eq(lease.clone()))
        .times(1)
        .returning(|_| Ok(()));
    let mut ports = Ports::new().issues(Amount::sat(100), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &paid(Purpose::Spawn, &lease, Amount::sat(100)))
        .await
        .expect("journal");

    assert_eq!(service.settle().await, 1);
    let reply = match journal.get(&key("1")).await.expect("journal") {
        Some(Stage::Done { reply }) => reply,
        other => panic!("expected Done, got {other:?}"),
    };
    let err = expect_error(reply.clone());
    assert_eq!(err.code, ErrorCode::ProvisioningFailed);
    assert_eq!(
        err.refund_token.as_ref().map(CashuToken::expose),
        Some("cashuBrefund")
    );
    // The buyer's retry gets the refund.
    assert_eq!(spawn(&service, "1", spawn_req(Some(60))).await, reply);
    assert_eq!(service.settle().await, 0);
}

#[tokio::test]
async fn settle_of_a_crashed_top_up_refunds_without_deleting_the_lease() {
    let lease = LeaseId::generate();
    let mut backend = MockPodBackend::new();
    backend.expect_delete().never();
    let mut ports = Ports::new().issues(Amount::sat(30), "cashuBrefund");
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &paid(Purpose::TopUp, &lease, Amount::sat(30)))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 1);
    assert!(journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn settle_waits_while_the_pod_cannot_be_deleted() {
    let lease = LeaseId::generate();
    let mut backend = MockPodBackend::new();
    backend
        .expect_delete()
        .times(1)
        .returning(|_| Err(BackendError::Unavailable("down".into())));
    let mut ports = Ports::new().never_issues();
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &paid(Purpose::Spawn, &lease, Amount::sat(60)))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 0);
    assert!(matches!(
        journal.get(&key("1")).await.expect("journal"),
        Some(Stage::Paid { .. })
    ));
}

fn redeeming(lease: &LeaseId) -> Stage {
    Stage::Redeeming {
        purpose: Purpose::Spawn,
        lease: lease.clone(),
        token: token(),
        mint: mint(),
        face: Amount::sat(60),
    }
}

#[tokio::test]
async fn settle_of_redeeming_with_an_unspent_token_refunds_nothing() {
    let lease = LeaseId::generate();
    let mut ports = Ports::new().never_issues();
    ports
        .verifier
        .expect_check()
        .with(eq(token()))
        .times(1)
        .returning(|_| {
            Ok(TokenCheck {
                mint: mint(),
                amount: Amount::sat(60),
                spendable: true,
            })
        });
    let mut backend = MockPodBackend::new();
    backend.expect_delete().never();
    ports.backend = Some(backend);
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &redeeming(&lease))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 1);
    match journal.get(&key("1")).await.expect("journal") {
        Some(Stage::Done { reply }) => {
            let err = expect_error(reply);
            assert_eq!(err.code, ErrorCode::Unavailable);
            assert!(err.refund_token.is_none());
        }
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn settle_of_redeeming_with_a_spent_token_refunds_its_face_value() {
    for spent in [
        Ok(TokenCheck {
            mint: mint(),
            amount: Amount::sat(60),
            spendable: false,
        }),
        Err(PaymentError::AlreadySpent),
    ] {
        let lease = LeaseId::generate();
        let mut ports = Ports::new().issues(Amount::sat(60), "cashuBrefund");
        let spent = Mutex::new(Some(spent));
        ports
            .verifier
            .expect_check()
            .times(1)
            .returning(move |_| spent.lock().expect("lock").take().expect("once"));
        let mut backend = MockPodBackend::new();
        backend
            .expect_delete()
            .with(eq(lease.clone()))
            .times(1)
            .returning(|_| Ok(()));
        ports.backend = Some(backend);
        let (service, _, journal, _) = ports.build();
        journal
            .put(&key("1"), &redeeming(&lease))
            .await
            .expect("journal");
        assert_eq!(service.settle().await, 1);
        assert!(journal.unfinished().await.expect("journal").is_empty());
    }
}

#[tokio::test]
async fn settle_of_redeeming_waits_while_the_mint_is_unreachable() {
    let mut ports = Ports::new().never_issues();
    ports
        .verifier
        .expect_check()
        .returning(|_| Err(PaymentError::MintUnavailable("down".into())));
    let (service, _, journal, _) = ports.build();
    journal
        .put(&key("1"), &redeeming(&LeaseId::generate()))
        .await
        .expect("journal");
    assert_eq!(service.settle().await, 0);
    assert_eq!(journal.unfinished().await.expect("journal").len(), 1);
}

#[tokio::test]
async fn settle_issues_owed_change_once_the_mint_is_back() {
    let mut ports = Ports::new()
        .token_worth(Amount::sat(100))
        .redeems(Amount::sat(100));
    let mut attempts = 0;
    ports
        .verifier
        .expect_issue()
        .with(eq(mint()), eq(Amount::sat(40)))
        .times(3)
        .returning(move |_, _| {
            attempts += 1;
            if attempts < 3 {
                Err(PaymentError::Issue("mint down".into()))
            } else {
                Ok(CashuToken::new("cashuBchange"))
            }
        });
    let (service, _, journal, _) = ports.build();
    let first = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert!(first.change_token.is_none());
    assert_eq!(service.settle().await, 0);
    assert_eq!(service.settle().await, 1);
    assert!(journal.unfinished().await.expect("journal").is_empty());
    let again = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(again.pod_name, first.pod_name);
    assert_eq!(again.ssh_password, first.ssh_password);
    assert_eq!(
        again.change_token.as_ref().map(CashuToken::expose),
        Some("cashuBchange")
    );
    assert_eq!(service.settle().await, 0);
}

#[tokio::test]
async fn settle_skips_a_request_in_flight() {
    let (service, _, journal, _) = Ports::new().never_issues().build();
    journal
        .put(
            &key("1"),
            &paid(Purpose::Spawn, &LeaseId::generate(), Amount::sat(60)),
        )
        .await
        .expect("journal");
    service
        .inflight
        .lock()
        .expect("lock")
        .insert(key("1"), Arc::default());
    assert_eq!(service.settle().await, 0);
}

#[tokio::test]
async fn settle_with_an_unreadable_journal_settles_nothing() {
    let mut ports = Ports::new().never_issues();
    let mut journal = MockJournal::new();
    journal
        .expect_unfinished()
        .returning(|| Err(JournalError::Io("disk".into())));
    ports.journal = Some(journal);
    let (service, _, _, _) = ports.build();
    assert_eq!(service.settle().await, 0);
}

// ---------------------------------------------------------------- offer, price, quote

#[tokio::test]
async fn offer_price_and_quote_follow_the_config() {
    let mut ports = Ports::new();
    ports
        .verifier
        .expect_accepted_mints()
        .returning(|| vec![mint()]);
    ports
        .verifier
        .expect_accepted_units()
        .returning(|| vec![Unit::Sat]);
    ports.verifier.expect_check().returning(|_| {
        Ok(TokenCheck {
            mint: mint(),
            amount: Amount::sat(90),
            spendable: true,
        })
    });
    let (service, _, _, _) = ports.build();

    let offer = service.offer();
    assert_eq!(offer.rate_sats_per_hour, 60);
    assert_eq!(offer.min_duration_minutes, 1);
    assert_eq!(offer.max_duration_minutes, 24 * 60);
    assert_eq!(offer.mints, vec![mint()]);
    assert_eq!(offer.backend, "memory");
    assert_eq!(
        offer.images,
        ["linuxserver/openssh-server:latest", "ubuntu:24.04"]
    );
    assert_eq!(offer.tiers[1].rate_msat_per_hour, 120_000);

    assert_eq!(
        service.price(60, None, Unit::Sat).expect("price"),
        Amount::sat(60)
    );
    assert_eq!(
        service.price(60, Some("big"), Unit::Msat).expect("price"),
        Amount::msat(120_000)
    );
    assert_eq!(
        service
            .price(0, None, Unit::Sat)
            .expect_err("too short")
            .code,
        ErrorCode::DurationOutOfRange
    );
    assert_eq!(
        service
            .price(60, Some("nope"), Unit::Sat)
            .expect_err("tier")
            .code,
        ErrorCode::UnknownTier
    );

    let quote = service
        .quote_token(&token(), Some(60))
        .await
        .expect("quote");
    assert_eq!(quote.minutes, 90);
    assert_eq!(quote.covers_requested, Some(true));
    let quote = service
        .quote_token(&token(), Some(91))
        .await
        .expect("quote");
    assert_eq!(quote.covers_requested, Some(false));
}

// ---------------------------------------------------------------- top-up quotes

#[tokio::test]
async fn top_up_price_uses_the_leases_tier_and_falls_back_to_the_base_rate() {
    let (service, memory, _, _) = Ports::new().build();
    let big = seed_lease(&memory, big_tier(), at(HOUR)).await;
    assert_eq!(
        service.top_up_price(big.as_str(), 60, Unit::Sat).await,
        Ok((HOUR, Amount::sat(120)))
    );
    // A tier the operator has since removed is priced at the base rate, as the top-up
    // itself would be.
    let gone = Tier {
        id: "retired".to_owned(),
        ..big_tier()
    };
    let old = seed_lease(&memory, gone, at(HOUR)).await;
    assert_eq!(
        service.top_up_price(old.as_str(), 60, Unit::Sat).await,
        Ok((HOUR, Amount::sat(60)))
    );
}

#[tokio::test]
async fn top_up_price_is_capped_by_headroom_and_refuses_like_a_top_up() {
    let (service, memory, _, clock) = Ports::new().build();
    // 30 s below the maximum: the quote is for those 30 s, below the spawn minimum.
    let near_max = seed_lease(&memory, Tier::standard(), at(MAX_SECONDS - 30)).await;
    assert_eq!(
        service
            .top_up_price(near_max.as_str(), 60, Unit::Msat)
            .await,
        Ok((30, Amount::msat(500)))
    );
    let full = seed_lease(&memory, Tier::standard(), at(MAX_SECONDS)).await;
    let e = service.top_up_price(full.as_str(), 60, Unit::Sat).await;
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::LeaseAtMaximum));
    let e = service
        .top_up_price("ssh-pod-zzzzzzzz", 60, Unit::Sat)
        .await;
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::PodNotFound));
    let e = service.top_up_price("nope", 60, Unit::Sat).await;
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::InvalidPodName));
    clock.advance(i64::try_from(MAX_SECONDS).expect("fits"));
    let e = service.top_up_price(full.as_str(), 60, Unit::Sat).await;
    assert_eq!(e.map_err(|e| e.code), Err(ErrorCode::LeaseExpired));
}

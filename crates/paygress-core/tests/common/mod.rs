//! Shared fixtures for core's integration tests: the in-memory ports, a verifier with
//! hooks (count redeems, pause a redeem, make `issue` fail) and a channel transport.

#![allow(dead_code)] // each test binary uses a different part

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use paygress_core::memory::{ManualClock, MemoryBackend, MemoryJournal, MemoryVerifier};
use paygress_core::{
    AccessDetails, Amount, BackendError, CashuToken, DurationLimits, ErrorReply, Extension,
    Incoming, LeaseId, LeaseRecord, LeaseSpec, MintUrl, Offer, Paygress, PaymentError,
    PaymentVerifier, PodBackend, Provisioned, RedeemAttempt, Redeemed, Reply, Request, RequestKey,
    Requester, Responder, ServiceConfig, SpawnRequest, TokenCheck, TokenInfo, TopUpRequest,
    TopUpResult, Transport, TransportError, Unit,
};
use tokio::sync::{mpsc, oneshot};

pub const HOUR: u64 = 3600;
pub const MAX_SECONDS: u64 = 24 * HOUR;

pub fn mint() -> MintUrl {
    MintUrl::new("http://127.0.0.1:3338")
}

pub fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("timestamp")
}

/// `seconds` after [`start`].
pub fn at(seconds: u64) -> Timestamp {
    start()
        .checked_add(SignedDuration::from_secs(
            i64::try_from(seconds).expect("fits"),
        ))
        .expect("in range")
}

pub fn key(id: &str) -> RequestKey {
    RequestKey::new("test", id)
}

pub fn buyer() -> Requester {
    Requester::new("test", "buyer")
}

pub fn spawn_req(token: &CashuToken, minutes: Option<u64>) -> Request {
    let mut spawn = SpawnRequest::new(token.clone()).with_ssh_username("alice");
    spawn.duration_minutes = minutes;
    Request::Spawn(spawn)
}

pub fn top_up_req(pod: &LeaseId, token: &CashuToken) -> Request {
    Request::TopUp(TopUpRequest {
        pod_name: pod.to_string(),
        cashu_token: token.clone(),
    })
}

pub fn access(reply: Reply) -> AccessDetails {
    match reply {
        Reply::AccessDetails(a) => a,
        other => panic!("expected access details, got {other:?}"),
    }
}

pub fn topped_up(reply: Reply) -> TopUpResult {
    match reply {
        Reply::TopUp(t) => t,
        other => panic!("expected a top-up result, got {other:?}"),
    }
}

pub fn error(reply: Reply) -> ErrorReply {
    match reply {
        Reply::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

type RedeemHook = Arc<dyn Fn(CashuToken) -> BoxFuture<'static, ()> + Send + Sync>;

/// A [`MemoryVerifier`] with test hooks.
#[derive(Clone)]
pub struct HookedVerifier {
    /// The ledger underneath (the buyer's wallet and the service's).
    pub inner: MemoryVerifier,
    redeems: Arc<AtomicUsize>,
    issue_down: Arc<AtomicBool>,
    before_redeem: Arc<Mutex<Option<RedeemHook>>>,
}

impl HookedVerifier {
    pub fn new() -> Self {
        Self {
            inner: MemoryVerifier::new(vec![mint()]),
            redeems: Arc::default(),
            issue_down: Arc::default(),
            before_redeem: Arc::default(),
        }
    }

    /// A buyer's token worth `sats`.
    pub fn token(&self, sats: u64) -> CashuToken {
        self.inner.mint_token(&mint(), Amount::sat(sats))
    }

    /// How many times `redeem` was called.
    pub fn redeems(&self) -> usize {
        self.redeems.load(Ordering::SeqCst)
    }

    /// Makes `issue` fail (the mint cannot be reached for change and refunds).
    pub fn set_issue_down(&self, down: bool) {
        self.issue_down.store(down, Ordering::SeqCst);
    }

    /// Runs `hook` (and waits for it) at the start of every `redeem`.
    pub fn before_redeem(
        &self,
        hook: impl Fn(CashuToken) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) {
        *self.before_redeem.lock().expect("lock") = Some(Arc::new(hook));
    }

    /// What the service's wallet holds, in sat.
    pub fn balance(&self) -> u64 {
        self.inner.balance(&mint(), Unit::Sat)
    }

    /// Spends a token handed back to the buyer; its value in sat.
    pub fn spend(&self, token: Option<&CashuToken>) -> u64 {
        let token = token.expect("a token was returned");
        let amount = self
            .inner
            .spend(token)
            .expect("the returned token is spendable");
        assert_eq!(amount.unit, Unit::Sat);
        amount.value
    }
}

#[async_trait]
impl PaymentVerifier for HookedVerifier {
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError> {
        self.inner.inspect(token)
    }

    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError> {
        self.inner.prepare(token).await
    }

    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError> {
        self.redeems.fetch_add(1, Ordering::SeqCst);
        let hook = self.before_redeem.lock().expect("lock").clone();
        if let Some(hook) = hook {
            hook(token.clone()).await;
        }
        self.inner.redeem(token, attempt).await
    }

    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError> {
        self.inner.resolve(token, attempt).await
    }

    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError> {
        self.inner.check(token).await
    }

    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError> {
        if self.issue_down.load(Ordering::SeqCst) {
            return Err(PaymentError::Issue("mint unreachable".into()));
        }
        self.inner.issue(mint, amount).await
    }

    fn accepted_mints(&self) -> Vec<MintUrl> {
        self.inner.accepted_mints()
    }
}

/// 60 sat/hour, leases of 1 minute to 24 hours.
pub fn config() -> ServiceConfig {
    ServiceConfig::default().with_limits(DurationLimits {
        min_seconds: 60,
        max_seconds: MAX_SECONDS,
    })
}

/// A service over in-memory ports, with handles on each of them.
pub struct Fixture {
    pub wallet: HookedVerifier,
    pub backend: MemoryBackend,
    pub journal: MemoryJournal,
    pub clock: ManualClock,
    pub service: Arc<Paygress>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_journal(MemoryJournal::new())
    }

    pub fn with_journal(journal: MemoryJournal) -> Self {
        Self::build(journal, false)
    }

    /// A fixture whose backend yields to other tasks inside `get` and `extend`, so
    /// that concurrent requests interleave between reading and writing a lease.
    pub fn yielding() -> Self {
        Self::build(MemoryJournal::new(), true)
    }

    fn build(journal: MemoryJournal, yielding: bool) -> Self {
        let wallet = HookedVerifier::new();
        let backend = MemoryBackend::new();
        let clock = ManualClock::new(start());
        let pods: Arc<dyn PodBackend> = if yielding {
            Arc::new(YieldingBackend(backend.clone()))
        } else {
            Arc::new(backend.clone())
        };
        let service = Paygress::builder(config(), Arc::new(wallet.clone()), pods)
            .journal(Arc::new(journal.clone()))
            .clock(Arc::new(clock.clone()))
            .build();
        Self {
            wallet,
            backend,
            journal,
            clock,
            service: Arc::new(service),
        }
    }

    pub async fn handle(&self, id: &str, request: Request) -> Reply {
        self.service.handle(&key(id), &buyer(), request).await
    }
}

/// A [`MemoryBackend`] that yields to the scheduler before reading or extending.
pub struct YieldingBackend(pub MemoryBackend);

#[async_trait]
impl PodBackend for YieldingBackend {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        self.0.create(spec).await
    }

    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        tokio::task::yield_now().await;
        self.0.extend(id, extension).await
    }

    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        self.0.delete(id).await
    }

    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        tokio::task::yield_now().await;
        self.0.get(id).await
    }

    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        self.0.list().await
    }
}

// ---------------------------------------------------------------- transport

/// A [`Transport`] fed from a channel; replies come back on one-shot channels.
pub struct ChannelTransport {
    rx: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
    offers: Mutex<Vec<Offer>>,
}

/// The buyer's side of a [`ChannelTransport`].
pub struct Client {
    tx: mpsc::Sender<Incoming>,
}

impl ChannelTransport {
    pub fn new() -> (Arc<Self>, Client) {
        let (tx, rx) = mpsc::channel(16);
        let transport = Arc::new(Self {
            rx: tokio::sync::Mutex::new(rx),
            offers: Mutex::default(),
        });
        (transport, Client { tx })
    }

    /// Offers published so far.
    pub fn offers(&self) -> Vec<Offer> {
        self.offers.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Transport for ChannelTransport {
    fn name(&self) -> &'static str {
        "channel"
    }

    async fn next(&self) -> Option<Incoming> {
        self.rx.lock().await.recv().await
    }

    async fn publish_offer(&self, offer: &Offer) -> Result<(), TransportError> {
        self.offers.lock().expect("lock").push(offer.clone());
        Ok(())
    }
}

struct OneshotResponder(oneshot::Sender<Reply>);

#[async_trait]
impl Responder for OneshotResponder {
    async fn respond(self: Box<Self>, reply: &Reply) -> Result<(), TransportError> {
        self.0
            .send(reply.clone())
            .map_err(|_| TransportError::Closed)
    }
}

impl Client {
    /// Sends `request` as message `id`; the receiver yields the reply.
    pub async fn send(&self, id: &str, request: Request) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let incoming = Incoming {
            key: key(id),
            sender: buyer(),
            request,
            responder: Box::new(OneshotResponder(tx)),
        };
        self.tx.send(incoming).await.expect("transport open");
        rx
    }
}

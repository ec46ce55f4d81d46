//! The service's own timings: decorators on its ports (mint, backend, journal, reply)
//! and a tracing layer timing core's `request` span (the whole of `Paygress::handle`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use paygress_core::{
    Amount, BackendError, CashuToken, DynJournal, DynPaymentVerifier, DynPodBackend, DynTransport,
    Entry, Extension, Incoming, Journal, JournalError, LeaseId, LeaseRecord, LeaseSpec, MintUrl,
    PaymentError, PaymentVerifier, PodBackend, Provisioned, RedeemAttempt, Redeemed, Reply,
    RequestKey, Responder, TokenCheck, TokenInfo, Transport, TransportError, Unit,
};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Durations recorded per stage name.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<HashMap<&'static str, Vec<Duration>>>>);

impl Recorder {
    /// Adds one measurement.
    pub fn record(&self, stage: &'static str, d: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(stage)
            .or_default()
            .push(d);
    }

    /// Takes everything recorded so far.
    pub fn take(&self) -> HashMap<&'static str, Vec<Duration>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn time<T>(&self, stage: &'static str, f: impl Future<Output = T>) -> T {
        let t = Instant::now();
        let out = f.await;
        self.record(stage, t.elapsed());
        out
    }
}

/// Times the mint calls (`redeem`, `resolve`, `issue`).
pub struct TimedVerifier(pub DynPaymentVerifier, pub Recorder);

#[async_trait]
impl PaymentVerifier for TimedVerifier {
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError> {
        self.0.inspect(token)
    }
    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError> {
        self.1.time("prepare", self.0.prepare(token)).await
    }
    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError> {
        self.1.time("mint", self.0.redeem(token, attempt)).await
    }
    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError> {
        self.1.time("mint", self.0.resolve(token, attempt)).await
    }
    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError> {
        self.1.time("mint", self.0.check(token)).await
    }
    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError> {
        self.1.time("mint-issue", self.0.issue(mint, amount)).await
    }
    fn accepted_mints(&self) -> Vec<MintUrl> {
        self.0.accepted_mints()
    }
    fn payment_request(&self, amount: Amount, description: &str) -> Result<String, PaymentError> {
        self.0.payment_request(amount, description)
    }
    fn accepted_units(&self) -> Vec<Unit> {
        self.0.accepted_units()
    }
}

/// Times backend calls; remembers when each lease was deleted (expiry lateness).
pub struct TimedBackend {
    inner: DynPodBackend,
    rec: Recorder,
    deleted: Mutex<Vec<(LeaseId, Timestamp)>>,
}

impl TimedBackend {
    /// Wraps `inner`.
    pub fn new(inner: DynPodBackend, rec: Recorder) -> Self {
        Self {
            inner,
            rec,
            deleted: Mutex::default(),
        }
    }

    /// Leases deleted so far, with when.
    pub fn deleted(&self) -> Vec<(LeaseId, Timestamp)> {
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl PodBackend for TimedBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        self.rec.time("backend", self.inner.create(spec)).await
    }
    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        self.rec
            .time("backend", self.inner.extend(id, extension))
            .await
    }
    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        let r = self.rec.time("backend-delete", self.inner.delete(id)).await;
        if r.is_ok() {
            self.deleted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((id.clone(), Timestamp::now()));
        }
        r
    }
    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        self.rec.time("backend-get", self.inner.get(id)).await
    }
    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        self.rec.time("backend-list", self.inner.list()).await
    }
    async fn check_capacity(&self) -> Result<(), BackendError> {
        self.inner.check_capacity().await
    }
    async fn sweep(&self) -> Result<usize, BackendError> {
        self.inner.sweep().await
    }
    async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}

/// Times journal writes and reads.
pub struct TimedJournal(pub DynJournal, pub Recorder);

#[async_trait]
impl Journal for TimedJournal {
    async fn get(&self, key: &RequestKey) -> Result<Option<Entry>, JournalError> {
        self.1.time("journal-get", self.0.get(key)).await
    }
    async fn put(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        self.1.time("journal", self.0.put(key, entry)).await
    }
    async fn put_lazy(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        self.1
            .time("journal-lazy", self.0.put_lazy(key, entry))
            .await
    }
    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError> {
        self.0.unfinished().await
    }
    async fn prune(&self, before: Timestamp) -> Result<usize, JournalError> {
        self.0.prune(before).await
    }
}

/// Times each reply's delivery (`Responder::respond`: for Nostr, encrypt and publish).
pub struct TimedTransport(pub DynTransport, pub Recorder);

struct TimedResponder(Box<dyn Responder>, Recorder);

#[async_trait]
impl Responder for TimedResponder {
    async fn respond(self: Box<Self>, reply: &Reply) -> Result<(), TransportError> {
        let t = Instant::now();
        let r = self.0.respond(reply).await;
        self.1.record("reply", t.elapsed());
        r
    }
}

#[async_trait]
impl Transport for TimedTransport {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    async fn next(&self) -> Option<Incoming> {
        let mut incoming = self.0.next().await?;
        incoming.responder = Box::new(TimedResponder(incoming.responder, self.1.clone()));
        Some(incoming)
    }
    async fn publish_offer(
        &self,
        offer: &paygress_core::protocol::Offer,
    ) -> Result<(), TransportError> {
        self.0.publish_offer(offer).await
    }
}

/// Records how long core's `request` span (all of `Paygress::handle`) lived, as
/// `service`.
pub struct RequestSpanTimer(pub Recorder);

struct Opened(Instant);

impl<S> Layer<S> for RequestSpanTimer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() == "request"
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(opened) = span.extensions().get::<Opened>()
        {
            self.0.record("service", opened.0.elapsed());
        }
    }
}

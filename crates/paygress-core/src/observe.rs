//! Operational metrics through the [`metrics`] facade.
//!
//! Core does no I/O: it only calls the facade, which is a no-op until the binary
//! installs a recorder (the Prometheus exporter of `paygress serve`). The names below
//! are the contract with the exporter, the Grafana dashboard and the tests.
//!
//! Mint and backend time are measured by decorators that [`crate::Paygress`] wraps
//! around its ports ([`MeteredPayments`], [`MeteredBackend`]); while a request is
//! handled their time adds up in a task-local [`Phases`] record, so that each request
//! reports how long it spent at the mint, at the backend and sending its reply.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::lease::{LeaseRecord, LeaseSpec, Provisioned};
use crate::money::{Amount, MintUrl, Unit};
use crate::names::LeaseId;
use crate::ports::{
    BackendError, DynPaymentVerifier, DynPodBackend, Extension, IssueId, PaymentError,
    PaymentVerifier, PodBackend, RedeemAttempt, Redeemed, TokenCheck, TokenInfo,
};
use crate::protocol::Reply;
use crate::secret::CashuToken;

/// Counter: requests handled, by `kind` (`spawn`, `top_up`, `status`) and `outcome`
/// (`ok` or the reply's error code).
pub const REQUESTS: &str = "paygress_requests_total";
/// Histogram (seconds): whole request time, by `kind` and `outcome`.
pub const REQUEST_SECONDS: &str = "paygress_request_duration_seconds";
/// Histogram (seconds): time one request spent in a `phase` (`mint`, `backend`,
/// `reply`), by `kind`.
pub const PHASE_SECONDS: &str = "paygress_request_phase_seconds";
/// Histogram (seconds): one call to a port, by `port` (`mint`, `backend`) and `op`.
pub const PORT_CALL_SECONDS: &str = "paygress_port_call_seconds";
/// Counter: failed mint operations, by `mint` and `error`.
pub const MINT_ERRORS: &str = "paygress_mint_errors_total";
/// Counter (msat): value received into the service wallet, by `mint`.
pub const RECEIVED_MSAT: &str = "paygress_received_msat_total";
/// Counter (msat): value handed back to payers, by `reason` (`change`, `refund`).
pub const PAID_BACK_MSAT: &str = "paygress_paid_back_msat_total";
/// Gauge (msat): refunds and change owed to payers, not yet issued (the binary samples
/// the journal).
pub const OWED_MSAT: &str = "paygress_owed_msat";
/// Gauge: live leases, by `tier` (the binary samples the backend).
pub const LEASES_ACTIVE: &str = "paygress_leases_active";
/// Gauge: relays connected (Nostr transport).
pub const RELAYS_CONNECTED: &str = "paygress_relays_connected";
/// Gauge (bytes): size of the request journal on disk.
pub const JOURNAL_BYTES: &str = "paygress_journal_bytes";
/// Gauge: unfinished journal entries (payments held, refunds owed).
pub const JOURNAL_UNFINISHED: &str = "paygress_journal_unfinished";

/// Where a request's time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Talking to the mint (redeem, resolve, check, issue).
    Mint,
    /// Talking to the pod backend.
    Backend,
    /// Sending the reply back through the transport.
    Reply,
}

impl Phase {
    /// The `phase` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Mint => "mint",
            Phase::Backend => "backend",
            Phase::Reply => "reply",
        }
    }
}

/// Time and money one request moved, filled by the port decorators while it runs.
#[derive(Debug, Default)]
pub struct Phases {
    inner: Mutex<PhasesInner>,
}

#[derive(Debug, Default)]
struct PhasesInner {
    mint: Duration,
    backend: Duration,
    issued_msat: u64,
}

impl Phases {
    fn add(&self, phase: Phase, elapsed: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match phase {
            Phase::Mint => inner.mint += elapsed,
            Phase::Backend => inner.backend += elapsed,
            Phase::Reply => {}
        }
    }

    fn issued(&self, msat: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.issued_msat += msat;
    }
}

tokio::task_local! {
    static CURRENT: Arc<Phases>;
}

/// Runs `fut` (the handling of one request of `kind`) and records its count, duration,
/// phase times and the value it handed back.
pub(crate) async fn request<F>(kind: &'static str, fut: F) -> Reply
where
    F: Future<Output = Reply>,
{
    let phases = Arc::new(Phases::default());
    let started = Instant::now();
    let reply = CURRENT.scope(phases.clone(), fut).await;
    let elapsed = started.elapsed();
    let outcome = outcome(&reply);
    // The one line per request outcome; the key and kind come from the request span.
    tracing::info!(
        outcome = %outcome,
        ms = elapsed.as_millis() as u64,
        "request done"
    );
    metrics::counter!(REQUESTS, "kind" => kind, "outcome" => outcome.clone()).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "kind" => kind, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    let inner = phases.inner.lock().unwrap_or_else(|p| p.into_inner());
    metrics::histogram!(PHASE_SECONDS, "kind" => kind, "phase" => Phase::Mint.as_str())
        .record(inner.mint.as_secs_f64());
    metrics::histogram!(PHASE_SECONDS, "kind" => kind, "phase" => Phase::Backend.as_str())
        .record(inner.backend.as_secs_f64());
    if inner.issued_msat > 0 {
        let reason = if matches!(reply, Reply::Error(_)) {
            "refund"
        } else {
            "change"
        };
        metrics::counter!(PAID_BACK_MSAT, "reason" => reason).increment(inner.issued_msat);
    }
    reply
}

/// Records the time a transport took to deliver the reply to a request of `kind`.
pub fn reply_sent(kind: &'static str, elapsed: Duration) {
    metrics::histogram!(PHASE_SECONDS, "kind" => kind, "phase" => Phase::Reply.as_str())
        .record(elapsed.as_secs_f64());
}

/// `ok`, or the reply's error code as it crosses the wire (`mint_unavailable`, …).
pub fn outcome(reply: &Reply) -> String {
    match reply.error_code() {
        None => "ok".to_owned(),
        Some(code) => serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "error".to_owned()),
    }
}

fn timed(port: &'static str, op: &'static str, phase: Phase, started: Instant) {
    let elapsed = started.elapsed();
    metrics::histogram!(PORT_CALL_SECONDS, "port" => port, "op" => op)
        .record(elapsed.as_secs_f64());
    let _ = CURRENT.try_with(|p| p.add(phase, elapsed));
}

/// The `error` label of a payment error that is the mint's (or the wallet's) fault,
/// `None` for errors about the token itself (spent, invalid, locked).
fn mint_error_label(e: &PaymentError) -> Option<&'static str> {
    match e {
        PaymentError::MintUnavailable(_) => Some("unavailable"),
        PaymentError::Ambiguous(_) => Some("ambiguous"),
        PaymentError::Issue(_) => Some("issue"),
        PaymentError::Other(_) => Some("other"),
        PaymentError::UnknownKeyset(_) => Some("unknown_keyset"),
        _ => None,
    }
}

fn mint_error(mint: &MintUrl, e: &PaymentError) {
    if let Some(label) = mint_error_label(e) {
        metrics::counter!(MINT_ERRORS, "mint" => mint.as_str().to_owned(), "error" => label)
            .increment(1);
    }
}

fn received(r: &Redeemed) {
    metrics::counter!(RECEIVED_MSAT, "mint" => r.mint.as_str().to_owned())
        .increment(r.amount.to_msat());
}

/// A [`PaymentVerifier`] that measures every mint call and counts money in and out.
pub struct MeteredPayments(pub DynPaymentVerifier);

#[async_trait]
impl PaymentVerifier for MeteredPayments {
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError> {
        self.0.inspect(token)
    }

    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError> {
        let started = Instant::now();
        let result = self.0.prepare(token).await;
        timed("mint", "prepare", Phase::Mint, started);
        result
    }

    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError> {
        let started = Instant::now();
        let result = self.0.redeem(token, attempt).await;
        timed("mint", "redeem", Phase::Mint, started);
        match &result {
            Ok(r) => received(r),
            Err(e) => mint_error(&attempt.mint, e),
        }
        result
    }

    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError> {
        let started = Instant::now();
        let result = self.0.resolve(token, attempt).await;
        timed("mint", "resolve", Phase::Mint, started);
        match &result {
            Ok(Some(r)) => received(r),
            Ok(None) => {}
            Err(e) => mint_error(&attempt.mint, e),
        }
        result
    }

    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError> {
        let started = Instant::now();
        let result = self.0.check(token).await;
        // Timed only: the token's mint is not known here without decoding it again.
        timed("mint", "check", Phase::Mint, started);
        result
    }

    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError> {
        let started = Instant::now();
        let result = self.0.issue(mint, amount).await;
        timed("mint", "issue", Phase::Mint, started);
        issued(mint, amount, &result);
        result
    }

    async fn issue_once(
        &self,
        id: &IssueId,
        mint: &MintUrl,
        amount: Amount,
    ) -> Result<CashuToken, PaymentError> {
        let started = Instant::now();
        let result = self.0.issue_once(id, mint, amount).await;
        timed("mint", "issue", Phase::Mint, started);
        issued(mint, amount, &result);
        result
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

    fn locking_key(&self) -> Option<String> {
        self.0.locking_key()
    }
}

/// Counts what an issue paid back, or the mint's error.
fn issued(mint: &MintUrl, amount: Amount, result: &Result<CashuToken, PaymentError>) {
    match result {
        Ok(_) => {
            let msat = amount.to_msat();
            // Outside a request (settlement), what is issued is an owed refund or
            // change; count it as a refund.
            if CURRENT.try_with(|p| p.issued(msat)).is_err() {
                metrics::counter!(PAID_BACK_MSAT, "reason" => "refund").increment(msat);
            }
        }
        Err(e) => mint_error(mint, e),
    }
}

/// A [`PodBackend`] that measures every call.
pub struct MeteredBackend(pub DynPodBackend);

#[async_trait]
impl PodBackend for MeteredBackend {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        let started = Instant::now();
        let result = self.0.create(spec).await;
        timed("backend", "create", Phase::Backend, started);
        result
    }

    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        let started = Instant::now();
        let result = self.0.extend(id, extension).await;
        timed("backend", "extend", Phase::Backend, started);
        result
    }

    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        let started = Instant::now();
        let result = self.0.delete(id).await;
        timed("backend", "delete", Phase::Backend, started);
        result
    }

    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        let started = Instant::now();
        let result = self.0.get(id).await;
        timed("backend", "get", Phase::Backend, started);
        result
    }

    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        let started = Instant::now();
        let result = self.0.list().await;
        timed("backend", "list", Phase::Backend, started);
        result
    }

    async fn check_capacity(&self) -> Result<(), BackendError> {
        let started = Instant::now();
        let result = self.0.check_capacity().await;
        timed("backend", "check_capacity", Phase::Backend, started);
        result
    }

    async fn sweep(&self) -> Result<usize, BackendError> {
        let started = Instant::now();
        let result = self.0.sweep().await;
        timed("backend", "sweep", Phase::Backend, started);
        result
    }

    async fn shutdown(&self) {
        self.0.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{MockPaymentVerifier, MockPodBackend};
    use crate::protocol::ErrorCode;

    /// The decorators forward the methods their ports give a default body: a missing
    /// forward silently runs the default (a second token instead of the journaled
    /// issue's, no orphan sweep).
    #[tokio::test]
    async fn decorators_forward_the_methods_with_default_bodies() {
        let id = IssueId::generate();
        let mut payments = MockPaymentVerifier::new();
        let want = id.clone();
        payments
            .expect_issue_once()
            .withf(move |i, _, _| *i == want)
            .times(1)
            .returning(|_, _, _| Ok(CashuToken::new("cashuBonce")));
        payments.expect_issue().times(0);
        payments
            .expect_locking_key()
            .times(1)
            .returning(|| Some("02aa".to_owned()));
        let metered = MeteredPayments(Arc::new(payments));
        // Without it the offer loses its NUT-11 key and locked payments are refused.
        assert_eq!(metered.locking_key().as_deref(), Some("02aa"));
        let token = metered
            .issue_once(&id, &MintUrl::new("http://127.0.0.1:3338"), Amount::sat(5))
            .await
            .expect("issued");
        assert_eq!(token.expose(), "cashuBonce");

        let mut backend = MockPodBackend::new();
        backend.expect_sweep().times(1).returning(|| Ok(4));
        backend
            .expect_check_capacity()
            .times(1)
            .returning(|| Ok(()));
        let metered = MeteredBackend(Arc::new(backend));
        assert_eq!(metered.sweep().await.expect("swept"), 4);
        metered.check_capacity().await.expect("room");
    }

    #[test]
    fn outcome_labels_are_wire_codes() {
        assert_eq!(
            outcome(&Reply::error(ErrorCode::MintUnavailable, "x")),
            "mint_unavailable"
        );
        assert_eq!(
            outcome(&Reply::error(ErrorCode::TokenAlreadySpent, "x")),
            "token_already_spent"
        );
    }

    #[test]
    fn only_mint_faults_count_as_mint_errors() {
        assert_eq!(
            mint_error_label(&PaymentError::MintUnavailable("down".into())),
            Some("unavailable")
        );
        assert_eq!(mint_error_label(&PaymentError::AlreadySpent), None);
        assert_eq!(
            mint_error_label(&PaymentError::InvalidToken("x".into())),
            None
        );
    }
}

//! The service: turns paid requests into leases, extends them, expires them, and makes
//! sure every redeemed payment ends as lease time or as a token returned to the payer.
//!
//! One file per flow: [`spawn`](self) (new leases), `top_up` (extensions), `payment`
//! (redeem and pay out, the money rule), `settle` (what crashes and lost answers left
//! open), `quotes` (offer, prices, status, reaping), `notices` (expiry notices to owners).

mod config;
mod gauges;
mod locks;
mod notices;
mod payment;
mod quotes;
mod release;
mod replies;
mod settle;
mod spawn;
mod top_up;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{OnceCell, Semaphore};
use tracing::{Instrument, debug, info_span, warn};

use crate::lease::{LeaseRecord, LeaseState, Requester};
use crate::memory::MemoryJournal;
use crate::names::LeaseId;
use crate::ports::{
    DynClock, DynJournal, DynNotifier, DynPaymentVerifier, DynPodBackend, DynTransport, Entry,
    RequestKey, Stage, SystemClock,
};
use crate::pricing::{Rate, Tier};
use crate::protocol::{ErrorCode, Reply, Request};

use self::locks::KeyedLocks;
use self::replies::{
    Failure, add_seconds, backend_failure, ceil_to_second, minutes_to_seconds, not_found,
    owed_reply, payment_failure, refused_without_payment, truncate, untouched,
};

pub use self::config::{
    DEFAULT_DATA_DIR, DEFAULT_EXPIRY_NOTICE, DEFAULT_IMAGE, DEFAULT_RELEASE_MINIMUM, ServiceConfig,
};
pub use self::quotes::{QuoteError, TokenQuote};

/// Builds a [`Paygress`]; journal and clock default to in-memory and system time.
pub struct PaygressBuilder {
    config: ServiceConfig,
    payments: DynPaymentVerifier,
    backend: DynPodBackend,
    journal: Option<DynJournal>,
    clock: Option<DynClock>,
    notifier: Option<DynNotifier>,
}

impl PaygressBuilder {
    /// Uses `journal` for idempotency and crash recovery (use a durable one in production).
    pub fn journal(mut self, journal: DynJournal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn clock(mut self, clock: DynClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Delivers replies that settlement decides later (refunds and change issued after
    /// the request's own answer) through `notifier`.
    pub fn notifier(mut self, notifier: DynNotifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Builds the service.
    pub fn build(self) -> Paygress {
        let mut config = self.config;
        if config.tiers.is_empty() {
            config.tiers.push(Tier::standard());
        }
        Paygress {
            config,
            // Every port call is measured (a no-op until the binary installs a recorder).
            payments: Arc::new(crate::observe::MeteredPayments(self.payments)),
            backend: Arc::new(crate::observe::MeteredBackend(self.backend)),
            journal: self
                .journal
                .unwrap_or_else(|| Arc::new(MemoryJournal::new())),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            notifier: self.notifier,
            inflight: Mutex::default(),
            request_locks: KeyedLocks::default(),
            lease_locks: KeyedLocks::default(),
            settle_lock: tokio::sync::Mutex::default(),
        }
    }
}

/// The paid-lease service. Cheap to share (`Arc<Paygress>`); every method takes `&self`
/// and requests run concurrently. Two locks only, neither across a mint call: one per
/// request key (a live request and settlement never act on the same request at once)
/// and one per lease during a top-up's read-modify-write of the expiry.
pub struct Paygress {
    config: ServiceConfig,
    payments: DynPaymentVerifier,
    backend: DynPodBackend,
    journal: DynJournal,
    clock: DynClock,
    notifier: Option<DynNotifier>,
    /// Concurrent duplicates (same key, same sender) share one answer.
    inflight: Mutex<HashMap<(RequestKey, Requester), SharedReply>>,
    request_locks: KeyedLocks<RequestKey>,
    lease_locks: KeyedLocks<LeaseId>,
    settle_lock: tokio::sync::Mutex<()>,
}

/// One answer shared by concurrent duplicates.
type SharedReply = Arc<OnceCell<Reply>>;

/// The request being handled: its key and who sent it (every journal entry records it).
#[derive(Clone, Copy)]
struct Ctx<'a> {
    key: &'a RequestKey,
    requester: &'a Requester,
}

impl Paygress {
    /// Starts building a service with the operator's `config` and its two main ports.
    pub fn builder(
        config: ServiceConfig,
        payments: DynPaymentVerifier,
        backend: DynPodBackend,
    ) -> PaygressBuilder {
        PaygressBuilder {
            config,
            payments,
            backend,
            journal: None,
            clock: None,
            notifier: None,
        }
    }

    /// The operator's terms. Start from [`ServiceConfig::default`] and set what differs
    /// (the fields, or the `with_…` methods): new terms may be added.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The pod backend (for read-only views such as `GET /pods`).
    pub fn backend(&self) -> &DynPodBackend {
        &self.backend
    }

    /// The current time by the service's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Handles one request and returns its reply. Idempotent per `key`: a duplicate from
    /// the same `sender`, concurrent or later, gets the first reply (or, if the first
    /// was left open by a crash or a lost mint answer, the lease or a refund) and is
    /// never charged again. A duplicate from anyone else gets nothing of that reply.
    pub async fn handle(&self, key: &RequestKey, sender: &Requester, request: Request) -> Reply {
        let kind = request.kind();
        let span = info_span!("request", key = %key.as_str(), kind);
        let work = async move {
            if let Request::Status(status) = &request {
                return self.status(sender, status).await;
            }
            let slot = (key.clone(), sender.clone());
            let cell = {
                let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                inflight.entry(slot.clone()).or_default().clone()
            };
            let reply = cell
                .get_or_init(|| self.process_once(key, sender, request))
                .await
                .clone();
            {
                let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                // Remove only our own entry: a newer request with this key may have
                // replaced it after ours finished.
                if inflight.get(&slot).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                    inflight.remove(&slot);
                }
            }
            reply
        };
        crate::observe::request(kind, work).instrument(span).await
    }

    /// Runs a paid request, or resumes it from the journal, holding the request's lock
    /// (so settlement never acts on it at the same time).
    async fn process_once(&self, key: &RequestKey, sender: &Requester, request: Request) -> Reply {
        let _request = self.request_locks.lock(key).await;
        let ctx = Ctx {
            key,
            requester: sender,
        };
        let entry = match self.journal.get(key).await {
            Ok(entry) => entry,
            Err(e) => {
                warn!(error = %e, "journal unavailable; refusing payment");
                return Reply::error(
                    ErrorCode::Unavailable,
                    "the service cannot record payments right now; your token was not redeemed",
                );
            }
        };
        if let Some(entry) = entry {
            if entry.requester != *sender {
                warn!("request id reused by another sender; nothing replayed");
                return Reply::error(
                    ErrorCode::RequestIdInUse,
                    "this request id was already used by another sender",
                );
            }
            match entry.stage {
                Stage::Done { reply } if !refused_without_payment(&reply) => {
                    debug!("duplicate request, replaying the first reply");
                    return self.replay(sender, reply).await;
                }
                Stage::Done { .. } => {
                    debug!("retrying a request that was refused before its token was received");
                }
                stage => return self.resume(ctx, stage, Some(request)).await,
            }
        }
        match request {
            Request::Spawn(r) => self.spawn(ctx, r).await,
            Request::TopUp(r) => self.top_up(ctx, r).await,
            Request::Status(r) => self.status(sender, &r).await,
            Request::Release(r) => self.release(ctx, r).await,
        }
    }

    /// Runs `settle` and [`notify_expiring`](Self::notify_expiring) every `interval`,
    /// the reaper at each lease's paid second (at least every `interval`), and the
    /// backend's sweep every `interval`, until the task is dropped. The three run side
    /// by side: a sweep listing a big cluster's objects (seconds, at 10,000 leases)
    /// never delays an expiry.
    pub async fn run_maintenance(self: Arc<Self>, interval: Duration) {
        let settler = async {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                self.settle().await;
                self.notify_expiring().await;
            }
        };
        let sweeper = async {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = self.sweep().await {
                    warn!(error = %e, "could not remove the objects of leases that no longer exist");
                }
            }
        };
        tokio::join!(settler, self.run_reaper(interval), sweeper);
    }

    /// Reaps expired leases, then sleeps until the next expiry it saw (or `interval`,
    /// whichever is sooner: a lease created meanwhile is reaped at most `interval` late).
    async fn run_reaper(&self, interval: Duration) {
        /// Past the paid second, so that the lease is due by the clock's reading.
        const MARGIN: Duration = Duration::from_millis(2);
        loop {
            let wait = match self.reap().await {
                Ok((_, Some(next))) => {
                    let ahead = next.duration_since(self.clock.now());
                    Duration::try_from(ahead)
                        .map_or(Duration::ZERO, |d| d + MARGIN)
                        .min(interval)
                }
                Ok((_, None)) => interval,
                Err(e) => {
                    warn!(error = %e, "reaper could not remove expired leases");
                    interval
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Serves `transport` until it closes: publishes the offer, then handles each
    /// request in its own task (at most `max_concurrent_requests` at once) and sends
    /// the reply back through the request's responder.
    pub async fn serve(self: Arc<Self>, transport: DynTransport) {
        let name = transport.name();
        if let Err(e) = transport.publish_offer(&self.offer()).await {
            warn!(transport = name, error = %e, "could not publish the offer");
        }
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_requests.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(incoming) = transport.next().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let this = self.clone();
            tasks.spawn(async move {
                let kind = incoming.request.kind();
                let reply = this
                    .handle(&incoming.key, &incoming.sender, incoming.request)
                    .await;
                let sending = std::time::Instant::now();
                let sent = incoming.responder.respond(&reply).await;
                crate::observe::reply_sent(kind, sending.elapsed());
                if let Err(e) = sent {
                    warn!(transport = name, key = %incoming.key.as_str(), error = %e, "reply not delivered");
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    // ------------------------------------------------------------ journal

    /// Records `stage` for the request, bound to its requester.
    async fn put(&self, ctx: Ctx<'_>, stage: Stage) -> Result<(), crate::ports::JournalError> {
        let entry = Entry::new(ctx.requester.clone(), self.clock.now(), stage);
        self.journal.put(ctx.key, &entry).await
    }

    /// Records `stage` like [`put`](Self::put), without waiting for it to be durable
    /// (see [`crate::ports::Journal::put_lazy`]).
    async fn put_lazy(&self, ctx: Ctx<'_>, stage: Stage) -> Result<(), crate::ports::JournalError> {
        let entry = Entry::new(ctx.requester.clone(), self.clock.now(), stage);
        self.journal.put_lazy(ctx.key, &entry).await
    }

    async fn record_done(&self, ctx: Ctx<'_>, reply: &Reply) {
        let done = Stage::Done {
            reply: reply.clone(),
        };
        if let Err(e) = self.put(ctx, done).await {
            warn!(error = %e, "could not journal a reply; a duplicate may be answered differently");
        }
    }

    /// A stored reply, repeated to `sender` (who sent the request it answers). Login
    /// details are repeated only while the backend confirms the lease is `sender`'s: the
    /// journal entry's requester is already checked, this is the last guard before a
    /// password leaves again. A fresh reply never needs it (its lease was just created
    /// for its requester), so only repeats pay for the lookup.
    async fn replay(&self, sender: &Requester, reply: Reply) -> Reply {
        let Reply::AccessDetails(details) = &reply else {
            return reply;
        };
        match self.backend.get(&details.pod_name).await {
            Ok(Some(record)) if record.owner != *sender => {
                warn!(lease = %details.pod_name, "stored login details name another owner's lease; withheld");
                Reply::error(
                    ErrorCode::TokenAlreadySpent,
                    "this request's token already paid for a lease of another requester; \
                     its answer is only repeated to that requester",
                )
            }
            // Gone since (its details open nothing any more), or still the sender's.
            Ok(_) => reply,
            Err(e) => {
                warn!(error = %e, "cannot confirm the lease owner; withholding the login details");
                Reply::error(
                    ErrorCode::Unavailable,
                    "the backend is unavailable; send the same request again to get its answer",
                )
            }
        }
    }

    // ------------------------------------------------------------ helpers

    fn tier(&self, id: Option<&str>) -> Result<Tier, Failure> {
        match id {
            None => Ok(self.config.tiers[0].clone()),
            Some(id) => self
                .config
                .tiers
                .iter()
                .find(|t| t.id == id)
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        self.config.tiers.iter().map(|t| t.id.as_str()).collect();
                    Failure::new(
                        ErrorCode::UnknownTier,
                        format!(
                            "unknown tier {:?}; offered: {}",
                            truncate(id),
                            known.join(", ")
                        ),
                    )
                }),
        }
    }

    /// Where `record` stands at `now`, with the configured grace period.
    fn lease_state(&self, record: &LeaseRecord, now: Timestamp) -> LeaseState {
        record.state(now, self.config.grace)
    }

    fn rate_of(&self, tier: &Tier) -> Rate {
        tier.rate.unwrap_or(self.config.rate)
    }

    fn rate_of_tier_id(&self, id: &str) -> Rate {
        self.config
            .tiers
            .iter()
            .find(|t| t.id == id)
            .map_or(self.config.rate, |t| self.rate_of(t))
    }
}

#[cfg(test)]
mod tests;

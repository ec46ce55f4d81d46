//! The service: turns paid requests into leases, extends them, expires them, and makes
//! sure every redeemed payment ends as lease time or as a token returned to the payer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{OnceCell, Semaphore};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::lease::{LeaseEvent, LeaseRecord, LeaseSpec, LeaseState, Requester};
use crate::memory::MemoryJournal;
use crate::money::{Amount, MintUrl};
use crate::names::{LeaseId, NameError, Username};
use crate::ports::{
    BackendError, DynClock, DynJournal, DynPaymentVerifier, DynPodBackend, DynTransport, Extension,
    PaymentError, Purpose, Redeemed, RequestKey, Stage, SystemClock, TokenInfo,
};
use crate::pricing::{self, DurationLimits, PricingError, Rate, Tier};
use crate::protocol::{
    AccessDetails, ErrorCode, ErrorReply, LeaseStatus, Offer, Reply, Request, SpawnRequest,
    StatusRequest, TierOffer, TopUpRequest, TopUpResult,
};
use crate::secret::{CashuToken, Password};

/// The operator's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Name shown in the offer.
    pub name: String,
    /// Base price.
    pub rate: Rate,
    /// Tiers; the first is the default. Empty means one [`Tier::standard`].
    pub tiers: Vec<Tier>,
    /// Lease length bounds.
    pub limits: DurationLimits,
    /// Image used when a request names none (`SSH_BASE_IMAGE`).
    pub default_image: String,
    /// Other images buyers may ask for (`ALLOWED_POD_IMAGES`).
    pub allowed_images: Vec<String>,
    /// Host buyers connect to (`SSH_HOST`).
    pub ssh_host: String,
    /// Requests processed at once per transport; more wait (back-pressure).
    pub max_concurrent_requests: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            name: "paygress".to_owned(),
            rate: Rate::default(),
            tiers: vec![Tier::standard()],
            limits: DurationLimits::default(),
            default_image: "linuxserver/openssh-server:latest".to_owned(),
            allowed_images: vec![],
            ssh_host: "localhost".to_owned(),
            max_concurrent_requests: 64,
        }
    }
}

/// What a token would buy, checked without redeeming it (`GET /auth`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenQuote {
    /// The token's mint.
    pub mint: MintUrl,
    /// Face value.
    pub amount: Amount,
    /// Whether the mint reports it unspent.
    pub spendable: bool,
    /// Whole minutes it buys at the base rate (capped at the maximum lease).
    pub minutes: u64,
    /// Whether it covers the requested duration, when one was given.
    pub covers_requested: Option<bool>,
}

/// Builds a [`Paygress`]; journal and clock default to in-memory and system time.
pub struct PaygressBuilder {
    config: ServiceConfig,
    payments: DynPaymentVerifier,
    backend: DynPodBackend,
    journal: Option<DynJournal>,
    clock: Option<DynClock>,
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

    /// Builds the service.
    pub fn build(self) -> Paygress {
        let mut config = self.config;
        if config.tiers.is_empty() {
            config.tiers.push(Tier::standard());
        }
        Paygress {
            config,
            payments: self.payments,
            backend: self.backend,
            journal: self
                .journal
                .unwrap_or_else(|| Arc::new(MemoryJournal::new())),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            inflight: Mutex::default(),
            lease_locks: Mutex::default(),
            settle_lock: tokio::sync::Mutex::default(),
        }
    }
}

/// The paid-lease service. Cheap to share (`Arc<Paygress>`); every method takes `&self`
/// and requests run concurrently: no lock is held across a mint or backend call except
/// a per-lease lock during a top-up's read-modify-write of the expiry.
pub struct Paygress {
    config: ServiceConfig,
    payments: DynPaymentVerifier,
    backend: DynPodBackend,
    journal: DynJournal,
    clock: DynClock,
    inflight: Mutex<HashMap<RequestKey, Arc<OnceCell<Reply>>>>,
    lease_locks: Mutex<HashMap<LeaseId, Arc<tokio::sync::Mutex<()>>>>,
    settle_lock: tokio::sync::Mutex<()>,
}

/// A request that failed before or after payment; turned into an [`ErrorReply`].
struct Failure {
    code: ErrorCode,
    message: String,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn into_reply(self) -> Reply {
        Reply::error(self.code, self.message)
    }
}

impl From<NameError> for Failure {
    fn from(e: NameError) -> Self {
        let code = match e {
            NameError::LeaseId(_) => ErrorCode::InvalidPodName,
            NameError::Username(_) | NameError::ReservedUsername(_) => ErrorCode::InvalidUsername,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<PricingError> for Failure {
    fn from(e: PricingError) -> Self {
        let code = match e {
            PricingError::DurationOutOfRange { .. } => ErrorCode::DurationOutOfRange,
            PricingError::Insufficient { .. } => ErrorCode::InsufficientPayment,
            PricingError::AtMaximum { .. } => ErrorCode::LeaseAtMaximum,
        };
        Failure::new(code, e.to_string())
    }
}

/// Maps a payment error to a reply. None of these consumed the payer's token.
fn payment_failure(e: &PaymentError) -> Failure {
    let (code, hint) = match e {
        PaymentError::InvalidToken(_) => (ErrorCode::InvalidToken, ""),
        PaymentError::MintNotAccepted(_) => {
            (ErrorCode::MintNotAccepted, " Your token was not redeemed.")
        }
        PaymentError::UnsupportedUnit(_) => {
            (ErrorCode::UnsupportedUnit, " Your token was not redeemed.")
        }
        PaymentError::AlreadySpent => (ErrorCode::TokenAlreadySpent, ""),
        PaymentError::MintUnavailable(_) => (
            ErrorCode::MintUnavailable,
            " Your token was not redeemed; try again later.",
        ),
        PaymentError::Issue(_) | PaymentError::Other(_) => {
            (ErrorCode::Internal, " Your token was not redeemed.")
        }
    };
    Failure::new(code, format!("{e}.{hint}"))
}

/// A spawn request whose every field checked out, before the token is touched.
struct SpawnPlan {
    username: Username,
    image: String,
    tier: Tier,
    rate: Rate,
    requested_seconds: Option<u64>,
    ssh_public_key: Option<String>,
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
        }
    }

    /// The operator's terms.
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

    /// The offer transports publish.
    pub fn offer(&self) -> Offer {
        let c = &self.config;
        let mut images = vec![c.default_image.clone()];
        images.extend(
            c.allowed_images
                .iter()
                .filter(|i| **i != c.default_image)
                .cloned(),
        );
        Offer {
            name: c.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            rate_sats_per_hour: c.rate.msat_per_hour() / 1000,
            rate_msat_per_hour: c.rate.msat_per_hour(),
            tiers: c.tiers.iter().map(|t| TierOffer::new(t, c.rate)).collect(),
            min_duration_minutes: c.limits.min_seconds.div_ceil(60),
            max_duration_minutes: c.limits.max_seconds / 60,
            mints: self.payments.accepted_mints(),
            units: self.payments.accepted_units(),
            ssh_host: c.ssh_host.clone(),
            backend: self.backend.name().to_owned(),
            images,
        }
    }

    /// The price of `duration_minutes` at the base rate (or `tier`'s), in `unit`.
    pub fn price(
        &self,
        duration_minutes: u64,
        tier: Option<&str>,
        unit: crate::money::Unit,
    ) -> Result<Amount, ErrorReply> {
        let tier = self.tier(tier).map_err(|f| error_reply(f, None))?;
        let seconds = minutes_to_seconds(duration_minutes).map_err(|f| error_reply(f, None))?;
        pricing::check_requested(self.config.limits, seconds)
            .map_err(|e| error_reply(e.into(), None))?;
        Ok(Amount::new(
            self.rate_of(&tier).price_in(seconds, unit),
            unit,
        ))
    }

    /// What a top-up of `minutes` of `pod_name` costs in `unit` (for an HTTP 402 quote),
    /// capped so the lease never has more than the maximum left. Returns the seconds
    /// quoted and their price; refuses as the top-up itself would (bad name, unknown or
    /// expired lease, lease at maximum).
    pub async fn top_up_price(
        &self,
        pod_name: &str,
        minutes: u64,
        unit: crate::money::Unit,
    ) -> Result<(u64, Amount), ErrorReply> {
        let lease: LeaseId = pod_name
            .parse()
            .map_err(|e: NameError| error_reply(e.into(), None))?;
        let record = self
            .live_lease(&lease)
            .await
            .map_err(|f| error_reply(f, None))?;
        let headroom = self
            .config
            .limits
            .max_seconds
            .saturating_sub(record.remaining_seconds(self.clock.now()));
        let seconds = minutes_to_seconds(minutes)
            .map_err(|f| error_reply(f, None))?
            .min(headroom);
        if seconds == 0 {
            let e = PricingError::AtMaximum {
                max_seconds: self.config.limits.max_seconds,
            };
            return Err(error_reply(e.into(), None));
        }
        let rate = self.rate_of_tier_id(&record.tier);
        Ok((seconds, Amount::new(rate.price_in(seconds, unit), unit)))
    }

    /// Checks a token without redeeming it and says what it buys.
    pub async fn quote_token(
        &self,
        token: &CashuToken,
        duration_minutes: Option<u64>,
    ) -> Result<TokenQuote, ErrorReply> {
        let check = self
            .payments
            .check(token)
            .await
            .map_err(|e| error_reply(payment_failure(&e), None))?;
        let rate = self.config.rate;
        let seconds = rate
            .seconds_for_msat(check.amount.to_msat())
            .min(self.config.limits.max_seconds);
        let covers_requested = match duration_minutes {
            Some(m) => {
                let secs = minutes_to_seconds(m).map_err(|f| error_reply(f, None))?;
                Some(check.amount.value >= rate.price_in(secs, check.amount.unit))
            }
            None => None,
        };
        Ok(TokenQuote {
            mint: check.mint,
            amount: check.amount,
            spendable: check.spendable,
            minutes: seconds / 60,
            covers_requested,
        })
    }

    /// Handles one request and returns its reply. Idempotent per `key`: a duplicate,
    /// concurrent or later, gets the first reply and is never charged again.
    pub async fn handle(&self, key: &RequestKey, sender: &Requester, request: Request) -> Reply {
        let span = info_span!("request", key = %key.as_str(), kind = request.kind());
        async move {
            if let Request::Status(status) = &request {
                return self.status(sender, status).await;
            }
            let cell = {
                let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                inflight.entry(key.clone()).or_default().clone()
            };
            let reply = cell
                .get_or_init(|| self.process_once(key, sender, request))
                .await
                .clone();
            {
                let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                // Remove only our own entry: a newer request with this key may have
                // replaced it after ours finished.
                if inflight.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                    inflight.remove(key);
                }
            }
            reply
        }
        .instrument(span)
        .await
    }

    /// Runs a paid request unless the journal already has its outcome.
    async fn process_once(&self, key: &RequestKey, sender: &Requester, request: Request) -> Reply {
        match self.journal.get(key).await {
            Ok(None) => {}
            Ok(Some(Stage::Done { reply })) if !refused_without_payment(&reply) => {
                debug!("duplicate request, replaying the first reply");
                return reply;
            }
            Ok(Some(Stage::Done { .. })) => {
                debug!("retrying a request that was refused before its token was received");
            }
            Ok(Some(Stage::Owed { reply, amount, .. })) => {
                debug!("duplicate request, replaying the first reply (token still owed)");
                return owed_reply(reply, amount);
            }
            Ok(Some(Stage::Redeeming { .. } | Stage::Paid { .. })) => {
                return Reply::error(
                    ErrorCode::Unavailable,
                    "this request is still being settled after a restart; send it again in a minute",
                );
            }
            Err(e) => {
                warn!(error = %e, "journal unavailable; refusing payment");
                return Reply::error(
                    ErrorCode::Unavailable,
                    "the service cannot record payments right now; your token was not redeemed",
                );
            }
        }
        match request {
            Request::Spawn(r) => self.spawn(key, sender, r).await,
            Request::TopUp(r) => self.top_up(key, r).await,
            Request::Status(r) => self.status(sender, &r).await,
        }
    }

    async fn spawn(&self, key: &RequestKey, sender: &Requester, req: SpawnRequest) -> Reply {
        let plan = match self.plan_spawn(&req) {
            Ok(plan) => plan,
            Err(f) => return f.into_reply(),
        };
        let info = match self.inspect(&req.cashu_token) {
            Ok(info) => info,
            Err(f) => return f.into_reply(),
        };
        // What the face value buys, checked before redeeming: a token too small is
        // refused untouched (the quote is redone on the amount received, after fees).
        if let Err(e) = pricing::quote_spawn(
            plan.rate,
            self.config.limits,
            info.amount,
            plan.requested_seconds,
        ) {
            return untouched(e).into_reply();
        }
        let lease = LeaseId::generate();
        let payment = match self
            .redeem(key, Purpose::Spawn, &lease, &req.cashu_token, &info)
            .await
        {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let mut state = LeaseState::Requested.on(LeaseEvent::PaymentRedeemed);

        let purchase = match pricing::quote_spawn(
            plan.rate,
            self.config.limits,
            payment.amount,
            plan.requested_seconds,
        ) {
            Ok(p) => p,
            Err(e) => return self.refund(key, &payment, e.into()).await,
        };

        // Whole seconds, rounded up: the buyer never loses the fraction.
        let now = ceil_to_second(self.clock.now());
        let expires_at = add_seconds(now, purchase.seconds);
        let password = Password::generate();
        let spec = LeaseSpec {
            id: lease.clone(),
            owner: sender.clone(),
            username: plan.username.clone(),
            password: password.clone(),
            ssh_public_key: plan.ssh_public_key,
            image: plan.image,
            tier: plan.tier.clone(),
            created_at: now,
            expires_at,
            paid_msat: purchase.charged.to_msat(),
            mint: payment.mint.clone(),
        };
        state = state.and_then(|s| s.on(LeaseEvent::ProvisioningStarted));
        let provisioned = match self.backend.create(&spec).await {
            Ok(p) => p,
            Err(e) => {
                warn!(lease = %lease, error = %e, "provisioning failed; refunding");
                if !matches!(e, BackendError::AlreadyExists(_)) {
                    // A half-created lease must not run unpaid.
                    if let Err(e) = self.backend.delete(&lease).await {
                        warn!(lease = %lease, error = %e, "cleanup after failed create failed");
                    }
                }
                return self
                    .refund(key, &payment, backend_failure(&e, "create the pod"))
                    .await;
            }
        };
        state = state.and_then(|s| s.on(LeaseEvent::Provisioned));
        debug_assert_eq!(state, Ok(LeaseState::Active));
        info!(lease = %lease, seconds = purchase.seconds, charged = %purchase.charged, "lease active");

        let ssh_host = provisioned
            .ssh_host
            .clone()
            .unwrap_or_else(|| self.config.ssh_host.clone());
        let port = provisioned.node_port.unwrap_or(provisioned.ssh_port);
        let mut instructions = vec![
            format!(
                "ssh -o PreferredAuthentications=password -o PubkeyAuthentication=no -p {port} {}@{ssh_host}",
                plan.username
            ),
            format!("Password: the ssh_password field of this reply"),
        ];
        instructions.extend(provisioned.instructions);
        instructions.push(format!(
            "Paid until {expires_at}; extend with a top-up for pod_name {lease}"
        ));
        let reply = Reply::AccessDetails(AccessDetails {
            pod_name: lease,
            ssh_username: plan.username.to_string(),
            ssh_password: password,
            ssh_host,
            ssh_port: provisioned.ssh_port,
            node_port: provisioned.node_port,
            expires_at,
            duration_seconds: purchase.seconds,
            tier: plan.tier.id,
            instructions,
            change_token: None,
        });
        self.finish(key, reply, &payment.mint, purchase.change)
            .await
    }

    async fn top_up(&self, key: &RequestKey, req: TopUpRequest) -> Reply {
        let lease: LeaseId = match req.pod_name.parse() {
            Ok(id) => id,
            Err(e) => return Failure::from(e).into_reply(),
        };
        // Check the lease before touching the token: a top-up of a missing or expired
        // lease is refused with the token untouched.
        let record = match self.live_lease(&lease).await {
            Ok(r) => r,
            Err(f) => return f.into_reply(),
        };
        let rate = self.rate_of_tier_id(&record.tier);
        let info = match self.inspect(&req.cashu_token) {
            Ok(info) => info,
            Err(f) => return f.into_reply(),
        };
        if let Err(e) = pricing::quote_top_up(
            rate,
            self.config.limits,
            info.amount,
            record.remaining_seconds(self.clock.now()),
        ) {
            return untouched(e).into_reply();
        }
        let payment = match self
            .redeem(key, Purpose::TopUp, &lease, &req.cashu_token, &info)
            .await
        {
            Ok(p) => p,
            Err(reply) => return reply,
        };

        let lock = self.lease_lock(&lease);
        let guard = lock.lock().await;
        // Re-read under the lock: the lease may have expired or been extended since.
        let record = match self.live_lease(&lease).await {
            Ok(r) => r,
            Err(f) => {
                drop(guard);
                self.release_lease_lock(&lease, lock);
                return self.refund(key, &payment, f).await;
            }
        };
        let purchase = match pricing::quote_top_up(
            rate,
            self.config.limits,
            payment.amount,
            record.remaining_seconds(self.clock.now()),
        ) {
            Ok(p) => p,
            Err(e) => {
                drop(guard);
                self.release_lease_lock(&lease, lock);
                return self.refund(key, &payment, e.into()).await;
            }
        };
        let extension = Extension {
            expires_at: add_seconds(record.expires_at, purchase.seconds),
            paid_msat: record.paid_msat.saturating_add(purchase.charged.to_msat()),
        };
        let result = self.backend.extend(&lease, &extension).await;
        drop(guard);
        self.release_lease_lock(&lease, lock);
        if let Err(e) = result {
            warn!(lease = %lease, error = %e, "extend failed; refunding");
            let failure = match e {
                BackendError::NotFound(_) => Failure::new(
                    ErrorCode::PodNotFound,
                    format!("lease {lease} no longer exists"),
                ),
                e => backend_failure(&e, "extend the lease"),
            };
            return self.refund(key, &payment, failure).await;
        }
        info!(lease = %lease, added = purchase.seconds, expires_at = %extension.expires_at, "lease extended");
        let reply = Reply::TopUp(TopUpResult {
            pod_name: lease,
            expires_at: extension.expires_at,
            added_seconds: purchase.seconds,
            change_token: None,
        });
        self.finish(key, reply, &payment.mint, purchase.change)
            .await
    }

    async fn status(&self, sender: &Requester, req: &StatusRequest) -> Reply {
        let lease: LeaseId = match req.pod_name.parse() {
            Ok(id) => id,
            Err(e) => return Failure::from(e).into_reply(),
        };
        let record = match self.backend.get(&lease).await {
            Ok(Some(r)) => r,
            Ok(None) => return not_found(&lease).into_reply(),
            Err(e) => return backend_failure(&e, "read the lease").into_reply(),
        };
        if record.owner != *sender {
            return Reply::error(
                ErrorCode::NotOwner,
                "only the lease's owner may ask its status",
            );
        }
        let now = self.clock.now();
        Reply::Status(LeaseStatus {
            pod_name: lease,
            state: record.state_at(now),
            expires_at: record.expires_at,
            remaining_seconds: record.remaining_seconds(now),
            tier: record.tier,
            node_port: record.node_port,
        })
    }

    /// Public data of every lease (for `GET /pods`): no passwords, no keys.
    pub async fn leases(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        self.backend.list().await
    }

    /// Removes every lease whose time has passed; returns how many were removed.
    /// Backends expire leases themselves; this is the second line of defence.
    pub async fn reap_expired(&self) -> Result<usize, BackendError> {
        let now = self.clock.now();
        let mut removed = 0;
        for record in self.backend.list().await? {
            if record.expires_at <= now {
                let lock = self.lease_lock(&record.id);
                let guard = lock.lock().await;
                // A top-up may have extended it while we waited for the lock.
                let result = match self.backend.get(&record.id).await {
                    Ok(Some(r)) if r.expires_at <= now => {
                        self.backend.delete(&record.id).await.map(|()| true)
                    }
                    Ok(_) => Ok(false),
                    Err(e) => Err(e),
                };
                drop(guard);
                self.release_lease_lock(&record.id, lock);
                if result? {
                    info!(lease = %record.id, "lease expired and removed");
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Settles what a crash or a mint outage left open: payments redeemed but not
    /// answered are refunded (after removing any half-created pod), owed change and
    /// refunds are issued. Returns how many entries were settled; the rest stay for the
    /// next call. Run at start and periodically.
    pub async fn settle(&self) -> usize {
        // One settlement at a time: two would issue the same debt twice.
        let _one_at_a_time = self.settle_lock.lock().await;
        let entries = match self.journal.unfinished().await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "cannot read the journal to settle");
                return 0;
            }
        };
        let mut settled = 0;
        for (key, stage) in entries {
            if self.is_inflight(&key) {
                continue;
            }
            let done = match stage {
                Stage::Redeeming {
                    purpose,
                    lease,
                    token,
                    mint,
                    face,
                } => {
                    self.settle_redeeming(&key, purpose, &lease, &token, mint, face)
                        .await
                }
                Stage::Paid {
                    purpose,
                    lease,
                    payment,
                } => self.settle_paid(&key, purpose, &lease, &payment).await,
                Stage::Owed {
                    reply,
                    mint,
                    amount,
                } => self
                    .pay_out(&key, reply, &mint, amount)
                    .await
                    .returned_token()
                    .is_some(),
                Stage::Done { .. } => true,
            };
            settled += usize::from(done);
        }
        settled
    }

    /// Runs `settle` and `reap_expired` every `interval` until the task is dropped.
    pub async fn run_maintenance(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            self.settle().await;
            if let Err(e) = self.reap_expired().await {
                warn!(error = %e, "reaper could not list leases");
            }
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
                let reply = this
                    .handle(&incoming.key, &incoming.sender, incoming.request)
                    .await;
                if let Err(e) = incoming.responder.respond(&reply).await {
                    warn!(transport = name, key = %incoming.key.as_str(), error = %e, "reply not delivered");
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
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

    fn plan_spawn(&self, req: &SpawnRequest) -> Result<SpawnPlan, Failure> {
        let username = match &req.ssh_username {
            Some(name) => name.parse::<Username>()?,
            None => Username::default(),
        };
        let image = match &req.pod_image {
            None => self.config.default_image.clone(),
            Some(img)
                if *img == self.config.default_image
                    || self.config.allowed_images.contains(img) =>
            {
                img.clone()
            }
            Some(img) => {
                return Err(Failure::new(
                    ErrorCode::ImageNotAllowed,
                    format!(
                        "image {:?} is not allowed; allowed: {}",
                        truncate(img),
                        self.offer().images.join(", ")
                    ),
                ));
            }
        };
        let tier = self.tier(req.tier.as_deref())?;
        let rate = self.rate_of(&tier);
        let requested_seconds = match req.duration_minutes {
            Some(m) => {
                let secs = minutes_to_seconds(m)?;
                pricing::check_requested(self.config.limits, secs)?;
                Some(secs)
            }
            None => None,
        };
        let ssh_public_key = match &req.ssh_public_key {
            Some(k) => Some(validate_public_key(k)?),
            None => None,
        };
        Ok(SpawnPlan {
            username,
            image,
            tier,
            rate,
            requested_seconds,
            ssh_public_key,
        })
    }

    /// Decodes a token and checks mint, unit and value offline (no mint contacted).
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, Failure> {
        let info = self
            .payments
            .inspect(token)
            .map_err(|e| payment_failure(&e))?;
        if info.amount.is_zero() {
            return Err(Failure::new(
                ErrorCode::InvalidToken,
                "the token is worth nothing",
            ));
        }
        Ok(info)
    }

    /// Journals the redeem window, redeems, and journals the payment. On any error the
    /// returned reply is final (the token was not received) and already journaled.
    async fn redeem(
        &self,
        key: &RequestKey,
        purpose: Purpose,
        lease: &LeaseId,
        token: &CashuToken,
        info: &TokenInfo,
    ) -> Result<Redeemed, Reply> {
        let window = Stage::Redeeming {
            purpose,
            lease: lease.clone(),
            token: token.clone(),
            mint: info.mint.clone(),
            face: info.amount,
        };
        if let Err(e) = self.journal.put(key, &window).await {
            warn!(error = %e, "journal unavailable; refusing payment");
            return Err(Reply::error(
                ErrorCode::Unavailable,
                "the service cannot record payments right now; your token was not redeemed",
            ));
        }
        match self.payments.redeem(token).await {
            Ok(payment) => {
                let paid = Stage::Paid {
                    purpose,
                    lease: lease.clone(),
                    payment: payment.clone(),
                };
                if let Err(e) = self.journal.put(key, &paid).await {
                    // Keep going: the reply will still settle the money. Only crash
                    // recovery loses precision (it will check the token at the mint).
                    warn!(error = %e, "could not journal a received payment");
                }
                debug!(amount = %payment.amount, mint = %payment.mint, "payment received");
                Ok(payment)
            }
            Err(e) => {
                let reply = payment_failure(&e).into_reply();
                self.record_done(key, &reply).await;
                Err(reply)
            }
        }
    }

    /// Returns the whole payment to the payer with the failure's code and message.
    async fn refund(&self, key: &RequestKey, payment: &Redeemed, failure: Failure) -> Reply {
        let reply = Reply::Error(ErrorReply {
            code: failure.code,
            message: format!(
                "{}; your payment of {} is refunded",
                failure.message, payment.amount
            ),
            refund_token: None,
        });
        self.pay_out(key, reply, &payment.mint, payment.amount)
            .await
    }

    /// Completes a successful reply with its change (if any) and journals it.
    async fn finish(
        &self,
        key: &RequestKey,
        reply: Reply,
        mint: &MintUrl,
        change: Amount,
    ) -> Reply {
        if change.is_zero() {
            self.record_done(key, &reply).await;
            return reply;
        }
        self.pay_out(key, reply, mint, change).await
    }

    /// Issues `amount` at `mint` into `reply` (change or refund) and journals the
    /// outcome. If the mint cannot issue now, journals the debt (retried by `settle`)
    /// and says so in the reply.
    async fn pay_out(
        &self,
        key: &RequestKey,
        mut reply: Reply,
        mint: &MintUrl,
        amount: Amount,
    ) -> Reply {
        match self.payments.issue(mint, amount).await {
            Ok(token) => {
                match &mut reply {
                    Reply::AccessDetails(a) => a.change_token = Some(token),
                    Reply::TopUp(t) => t.change_token = Some(token),
                    Reply::Error(e) => e.refund_token = Some(token),
                    Reply::Status(_) => {}
                }
                self.record_done(key, &reply).await;
                reply
            }
            Err(e) => {
                warn!(error = %e, %amount, "could not issue a token to the payer; recording the debt");
                let owed = Stage::Owed {
                    reply: reply.clone(),
                    mint: mint.clone(),
                    amount,
                };
                if let Err(e) = self.journal.put(key, &owed).await {
                    warn!(error = %e, %amount, "could not journal a debt to the payer");
                }
                owed_reply(reply, amount)
            }
        }
    }

    async fn record_done(&self, key: &RequestKey, reply: &Reply) {
        let done = Stage::Done {
            reply: reply.clone(),
        };
        if let Err(e) = self.journal.put(key, &done).await {
            warn!(error = %e, "could not journal a reply; a duplicate may be answered differently");
        }
    }

    async fn settle_redeeming(
        &self,
        key: &RequestKey,
        purpose: Purpose,
        lease: &LeaseId,
        token: &CashuToken,
        mint: MintUrl,
        face: Amount,
    ) -> bool {
        match self.payments.check(token).await {
            Ok(check) if check.spendable => {
                let reply = Reply::error(
                    ErrorCode::Unavailable,
                    "the service restarted before redeeming your token; it was not spent, send the request again",
                );
                self.record_done(key, &reply).await;
                true
            }
            Ok(_) | Err(PaymentError::AlreadySpent) => {
                // Spent while in our hands: treat it as received at face value.
                let payment = Redeemed { mint, amount: face };
                self.settle_paid(key, purpose, lease, &payment).await
            }
            Err(e) => {
                debug!(error = %e, "cannot settle yet");
                false
            }
        }
    }

    async fn settle_paid(
        &self,
        key: &RequestKey,
        purpose: Purpose,
        lease: &LeaseId,
        payment: &Redeemed,
    ) -> bool {
        if purpose == Purpose::Spawn {
            // The buyer never received credentials: a pod that exists runs unpaid.
            if let Err(e) = self.backend.delete(lease).await {
                debug!(error = %e, "cannot settle yet");
                return false;
            }
        }
        let failure = Failure::new(
            ErrorCode::ProvisioningFailed,
            "the service restarted while handling this request",
        );
        let reply = self.refund(key, payment, failure).await;
        reply.returned_token().is_some()
    }

    async fn live_lease(&self, lease: &LeaseId) -> Result<LeaseRecord, Failure> {
        match self.backend.get(lease).await {
            Ok(Some(r)) if r.state_at(self.clock.now()) == LeaseState::Active => Ok(r),
            Ok(Some(_)) => Err(Failure::new(
                ErrorCode::LeaseExpired,
                format!("lease {lease} has expired"),
            )),
            Ok(None) => Err(not_found(lease)),
            Err(e) => Err(backend_failure(&e, "read the lease")),
        }
    }

    fn is_inflight(&self, key: &RequestKey) -> bool {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    fn lease_lock(&self, lease: &LeaseId) -> Arc<tokio::sync::Mutex<()>> {
        self.lease_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(lease.clone())
            .or_default()
            .clone()
    }

    fn release_lease_lock(&self, lease: &LeaseId, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.lease_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours. Anyone else waiting keeps it alive.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(lease);
        }
    }
}

/// Whether `reply` refused a request before its token was received, for a reason that
/// may pass (mint or service unavailable): a retry of the same request runs again
/// instead of replaying the refusal.
fn refused_without_payment(reply: &Reply) -> bool {
    reply.returned_token().is_none()
        && matches!(
            reply.error_code(),
            Some(ErrorCode::MintUnavailable | ErrorCode::Unavailable)
        )
}

/// The reply sent while `amount` is still owed to the payer: says so, in place of the
/// token it lacks.
fn owed_reply(mut reply: Reply, amount: Amount) -> Reply {
    match &mut reply {
        Reply::AccessDetails(AccessDetails { instructions, .. }) => instructions.push(format!(
            "Change of {amount} could not be issued yet; send this same request again later to receive it"
        )),
        Reply::TopUp(_) | Reply::Status(_) => {}
        Reply::Error(e) => {
            e.message = format!(
                "{}; the refund of {amount} could not be issued yet (mint unreachable): send this same request again later to receive it",
                e.message
            );
            e.code = ErrorCode::RefundPending;
        }
    }
    reply
}

fn error_reply(f: Failure, refund_token: Option<CashuToken>) -> ErrorReply {
    ErrorReply {
        code: f.code,
        message: f.message,
        refund_token,
    }
}

/// A pricing refusal before the token was touched.
fn untouched(e: PricingError) -> Failure {
    let mut failure = Failure::from(e);
    failure.message.push_str("; your token was not redeemed");
    failure
}

fn not_found(lease: &LeaseId) -> Failure {
    Failure::new(ErrorCode::PodNotFound, format!("no lease named {lease}"))
}

fn backend_failure(e: &BackendError, what: &str) -> Failure {
    let code = match e {
        BackendError::NotFound(_) => ErrorCode::PodNotFound,
        _ => ErrorCode::ProvisioningFailed,
    };
    Failure::new(code, format!("could not {what}: {e}"))
}

fn minutes_to_seconds(minutes: u64) -> Result<u64, Failure> {
    minutes.checked_mul(60).ok_or_else(|| {
        Failure::new(
            ErrorCode::DurationOutOfRange,
            format!("duration of {minutes} minutes is too long"),
        )
    })
}

fn ceil_to_second(t: Timestamp) -> Timestamp {
    let whole = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    Timestamp::from_second(whole).unwrap_or(t)
}

fn add_seconds(t: Timestamp, seconds: u64) -> Timestamp {
    let secs = i64::try_from(seconds).unwrap_or(i64::MAX);
    t.saturating_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX)
}

/// Accepts one OpenSSH public key line: `<type> <base64> [comment]`.
fn validate_public_key(key: &str) -> Result<String, Failure> {
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let bad =
        |why: &str| Failure::new(ErrorCode::InvalidPublicKey, format!("ssh_public_key {why}"));
    let key = key.trim();
    if key.len() > 16 * 1024 || key.contains(['\n', '\r', '\0']) {
        return Err(bad("must be a single OpenSSH public key line"));
    }
    let mut parts = key.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    if !TYPES.contains(&kind) {
        return Err(bad("has an unsupported key type"));
    }
    if body.len() < 16
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return Err(bad("has a malformed base64 body"));
    }
    Ok(key.to_owned())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests;

//! Top-ups: the intent is journaled before the backend moves the expiry, and an unclear
//! answer is settled by reading the lease's real expiry, so a top-up never both extends
//! and refunds.

use jiff::Timestamp;
use tracing::{info, warn};

use super::{
    Ctx, Failure, Paygress, add_seconds, backend_failure, ceil_to_second, not_found, untouched,
};
use crate::lease::{LeaseRecord, LeaseState};
use crate::money::Amount;
use crate::names::LeaseId;
use crate::ports::{BackendError, Extension, Purpose, Redeemed, Stage};
use crate::pricing;
use crate::protocol::{ErrorCode, Reply, TopUpRequest, TopUpResult};

/// A top-up whose payment is held and whose new expiry is decided.
pub(super) struct Intent {
    pub(super) lease: LeaseId,
    pub(super) payment: Redeemed,
    pub(super) target: Timestamp,
    pub(super) paid_msat: u64,
    pub(super) added_seconds: u64,
    pub(super) change: Amount,
    /// The lease was in its grace period: `target` counts from the top-up.
    pub(super) revived: bool,
}

impl Intent {
    pub(super) fn stage(&self) -> Stage {
        Stage::Extending {
            lease: self.lease.clone(),
            payment: self.payment.clone(),
            target: self.target,
            paid_msat: self.paid_msat,
            added_seconds: self.added_seconds,
            change: self.change,
            revived: self.revived,
        }
    }
}

/// The reply while an extension's outcome is unknown (the backend's answer was lost and
/// it cannot be read back yet).
fn extension_pending() -> Reply {
    Reply::error(
        ErrorCode::PaymentPending,
        "the lease's extension could not be confirmed yet; send this same request again: you will get the extension or a refund",
    )
}

impl Paygress {
    pub(super) async fn top_up(&self, ctx: Ctx<'_>, req: TopUpRequest) -> Reply {
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
            info.net(),
            record.remaining_seconds(self.clock.now()),
        ) {
            return untouched(e).into_reply();
        }
        let payment = match self
            .redeem(ctx, Purpose::TopUp, &lease, &req.cashu_token)
            .await
        {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        self.extend_paid(ctx, lease, payment).await
    }

    /// Extends `lease` with a payment already held: prices it under the lease's lock,
    /// journals the intent, asks the backend, and settles an unclear answer by reading
    /// the lease back.
    pub(super) async fn extend_paid(
        &self,
        ctx: Ctx<'_>,
        lease: LeaseId,
        payment: Redeemed,
    ) -> Reply {
        let guard = self.lease_locks.lock(&lease).await;
        // Re-read under the lock: the lease may have expired or been extended since.
        let record = match self.live_lease(&lease).await {
            Ok(r) => r,
            Err(f) => {
                drop(guard);
                return self.refund(ctx, &payment, f).await;
            }
        };
        let rate = self.rate_of_tier_id(&record.tier);
        let now = self.clock.now();
        let purchase = match pricing::quote_top_up(
            rate,
            self.config.limits,
            payment.amount,
            record.remaining_seconds(now),
        ) {
            Ok(p) => p,
            Err(e) => {
                drop(guard);
                return self.refund(ctx, &payment, e.into()).await;
            }
        };
        // A lease in its grace period was stopped: the time bought counts from now, so
        // the buyer never pays for the time it was down.
        let revived = self.lease_state(&record, now) == LeaseState::Grace;
        let base = if revived {
            ceil_to_second(now).max(record.expires_at)
        } else {
            record.expires_at
        };
        let intent = Intent {
            lease: lease.clone(),
            target: add_seconds(base, purchase.seconds),
            revived,
            paid_msat: record.paid_msat.saturating_add(purchase.charged.to_msat()),
            added_seconds: purchase.seconds,
            change: purchase.change,
            payment,
        };
        if let Err(e) = self.put(ctx, intent.stage()).await {
            warn!(error = %e, "could not journal a top-up's intent");
        }
        let outcome = self.apply_extension(&intent, &record).await;
        drop(guard);
        self.conclude(ctx, &intent, outcome).await
    }

    /// Resumes a journaled intent (retry or settlement): the lease's real expiry says
    /// whether the extension happened; if not and the lease still runs, it is applied
    /// now (the target expiry is absolute, so applying it twice is harmless).
    ///
    /// A lease found in its grace period (it expired while the outcome was unclear) is
    /// brought back with the time bought counted from now (a later target, journaled
    /// before it is applied), so the buyer never pays for time it was stopped.
    pub(super) async fn resume_extension(&self, ctx: Ctx<'_>, mut intent: Intent) -> Reply {
        let guard = self.lease_locks.lock(&intent.lease).await;
        let now = self.clock.now();
        let outcome = match self.backend.get(&intent.lease).await {
            Ok(Some(r)) if r.expires_at >= intent.target => Outcome::Extended,
            Ok(Some(r)) if self.lease_state(&r, now) == LeaseState::Active => {
                self.apply_extension(&intent, &r).await
            }
            Ok(Some(r)) if self.lease_state(&r, now) == LeaseState::Grace => {
                let from_now = add_seconds(ceil_to_second(now), intent.added_seconds);
                if from_now > intent.target {
                    intent.target = from_now;
                    intent.revived = true;
                }
                match self.put(ctx, intent.stage()).await {
                    Ok(()) => self.apply_extension(&intent, &r).await,
                    Err(e) => {
                        // The old target is what a later resume would look for: do not
                        // move the lease to one the journal does not know.
                        warn!(error = %e, "could not journal a top-up's new target");
                        Outcome::Unknown
                    }
                }
            }
            Ok(_) => Outcome::NotExtended(not_found(&intent.lease)),
            Err(e) => {
                warn!(lease = %intent.lease, error = %e, "cannot read the lease to settle a top-up");
                Outcome::Unknown
            }
        };
        drop(guard);
        self.conclude(ctx, &intent, outcome).await
    }

    /// Asks the backend for the new expiry; on an unclear error, reads the lease back,
    /// and retries once (same absolute target) if it did not move.
    async fn apply_extension(&self, intent: &Intent, record: &LeaseRecord) -> Outcome {
        let extension = Extension {
            expires_at: intent.target,
            paid_msat: intent.paid_msat.max(record.paid_msat),
        };
        let mut last = match self.backend.extend(&intent.lease, &extension).await {
            Ok(()) => {
                // The backend moved the expiry; the journal does not know yet.
                crate::failpoint::hit("during-extend");
                return Outcome::Extended;
            }
            Err(e) => e,
        };
        for attempt in 0..2 {
            if let BackendError::NotFound(_) | BackendError::Rejected(_) = last {
                // Definitive: the backend refused, nothing moved.
                break;
            }
            match self.backend.get(&intent.lease).await {
                Ok(Some(r)) if r.expires_at >= intent.target => return Outcome::Extended,
                Ok(Some(_)) if attempt == 0 => {}
                Ok(Some(_)) => break,
                Ok(None) => {
                    last = BackendError::NotFound(intent.lease.clone());
                    break;
                }
                Err(e) => {
                    warn!(lease = %intent.lease, error = %e, "extension unclear and the lease cannot be read");
                    return Outcome::Unknown;
                }
            }
            warn!(lease = %intent.lease, error = %last, "extend failed and the lease did not move; retrying once");
            match self.backend.extend(&intent.lease, &extension).await {
                Ok(()) => return Outcome::Extended,
                Err(e) => last = e,
            }
        }
        warn!(lease = %intent.lease, error = %last, "extend failed; refunding");
        Outcome::NotExtended(match last {
            BackendError::NotFound(_) => Failure::new(
                ErrorCode::PodNotFound,
                format!("lease {} no longer exists", intent.lease),
            ),
            e => backend_failure(&e, "extend the lease"),
        })
    }

    async fn conclude(&self, ctx: Ctx<'_>, intent: &Intent, outcome: Outcome) -> Reply {
        match outcome {
            Outcome::Extended => {
                info!(lease = %intent.lease, added = intent.added_seconds, expires_at = %intent.target, "lease extended");
                let reply = Reply::TopUp(TopUpResult {
                    pod_name: intent.lease.clone(),
                    expires_at: intent.target,
                    added_seconds: intent.added_seconds,
                    change_token: None,
                    message: intent.revived.then(|| {
                        format!(
                            "Lease {} was in its grace period and is running again; the {} seconds bought count from now: the time it was stopped is not charged.",
                            intent.lease, intent.added_seconds
                        )
                    }),
                });
                self.finish(ctx, reply, &intent.payment.mint, intent.change)
                    .await
            }
            Outcome::NotExtended(failure) => self.refund(ctx, &intent.payment, failure).await,
            Outcome::Unknown => extension_pending(),
        }
    }

    /// The lease, if a top-up can extend it: it runs, or it is in its grace period (a
    /// top-up brings it back), and no release of it is open.
    pub(super) async fn live_lease(&self, lease: &LeaseId) -> Result<LeaseRecord, Failure> {
        let now = self.clock.now();
        match self.backend.get(lease).await {
            Ok(Some(r))
                if matches!(
                    self.lease_state(&r, now),
                    LeaseState::Active | LeaseState::Grace
                ) =>
            {
                self.no_open_release(lease, None).await?;
                Ok(r)
            }
            Ok(Some(r)) if self.lease_state(&r, now) == LeaseState::Provisioning => {
                Err(Failure::new(
                    ErrorCode::Unavailable,
                    format!("lease {lease} is still starting; top it up once it runs"),
                ))
            }
            Ok(Some(_)) => Err(Failure::new(
                ErrorCode::LeaseExpired,
                format!("lease {lease} has expired"),
            )),
            Ok(None) => Err(not_found(lease)),
            Err(e) => Err(backend_failure(&e, "read the lease")),
        }
    }
}

/// What happened to an extension.
enum Outcome {
    /// The lease reaches the target expiry.
    Extended,
    /// It does not, and will not: refund.
    NotExtended(Failure),
    /// Cannot tell yet: the intent stays open.
    Unknown,
}

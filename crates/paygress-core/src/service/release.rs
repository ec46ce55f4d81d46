//! Releases: the owner ends a lease early and gets the unused time back as a token.
//!
//! The refund is the value of the whole seconds left, at the lease's tier rate, rounded
//! down to the unit, after the minimum charge (`RELEASE_MIN_CHARGE_MINUTES`: the first
//! minutes of every lease are paid whatever happens), and never more than was paid.
//! The mint's fee for issuing the token is the buyer's (money invariant 9).
//!
//! Order, for the money rule: the release is journaled ([`Stage::Releasing`]) before the
//! backend deletes the lease, and the refund is issued (through [`Stage::Issuing`], at
//! most once) only after the lease is gone. Recovery reads the lease back: still there,
//! the release is completed and only what is unused by then is refunded; gone before its
//! paid end, the journaled refund is issued; gone after its paid end, nothing can tell a
//! release from the lease running out, and its time is taken as used (no refund).

use jiff::Timestamp;
use tracing::{info, warn};

use super::replies::backend_failure;
use super::{Ctx, Failure, Paygress};
use crate::lease::{LeaseRecord, LeaseState, Requester};
use crate::money::{Amount, MintUrl, Unit};
use crate::names::LeaseId;
use crate::ports::{IssueId, Stage};
use crate::protocol::{ErrorCode, ReleaseRequest, ReleaseResult, Reply};

/// A release decided and journaled: what is refunded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Release {
    pub(super) lease: LeaseId,
    pub(super) released_at: Timestamp,
    pub(super) expires_at: Timestamp,
    pub(super) refunded_seconds: u64,
    pub(super) amount: Amount,
    pub(super) mint: MintUrl,
}

impl Release {
    pub(super) fn stage(&self) -> Stage {
        Stage::Releasing {
            lease: self.lease.clone(),
            released_at: self.released_at,
            expires_at: self.expires_at,
            refunded_seconds: self.refunded_seconds,
            amount: self.amount,
            mint: self.mint.clone(),
        }
    }

    /// The reply before the token is added.
    fn reply(&self, note: &str) -> Reply {
        let message = if self.amount.is_zero() {
            format!(
                "Lease {} is released; nothing is left to refund.{note}",
                self.lease
            )
        } else {
            format!(
                "Lease {} is released; {} unused seconds are refunded as {}.{note}",
                self.lease, self.refunded_seconds, self.amount
            )
        };
        Reply::Released(ReleaseResult {
            pod_name: self.lease.clone(),
            released_at: self.released_at,
            refunded_seconds: self.refunded_seconds,
            refund_amount: self.amount,
            message,
            refund_token: None,
        })
    }
}

/// The reply while a release's delete cannot be confirmed.
fn release_pending() -> Reply {
    Reply::error(
        ErrorCode::PaymentPending,
        "the lease's removal could not be confirmed yet; send this same request again: you will get the refund, or the lease keeps running",
    )
}

/// Whole seconds from `from` to `to` (zero if `to` is not later), rounded up.
fn seconds_between_ceil(from: Timestamp, to: Timestamp) -> u64 {
    let d = to.duration_since(from);
    if d.is_negative() {
        return 0;
    }
    let secs = u64::try_from(d.as_secs()).unwrap_or(u64::MAX);
    secs.saturating_add(u64::from(d.subsec_nanos() > 0))
}

impl Paygress {
    pub(super) async fn release(&self, ctx: Ctx<'_>, req: ReleaseRequest) -> Reply {
        let lease: LeaseId = match req.pod_name.parse() {
            Ok(id) => id,
            Err(e) => return Failure::from(e).into_reply(),
        };
        let guard = self.lease_locks.lock(&lease).await;
        let record = match self.releasable(ctx.requester, &lease).await {
            Ok(r) => r,
            Err(f) => return f.into_reply(),
        };
        let release = self.plan_release(&record, self.clock.now());
        if let Err(e) = self.put(ctx, release.stage()).await {
            warn!(error = %e, "could not journal a release; refusing it");
            return Reply::error(
                ErrorCode::Unavailable,
                "the service cannot record the release right now; your lease keeps running",
            );
        }
        crate::failpoint::hit("after-release-journal-before-delete");
        let outcome = self.remove_for_release(&lease).await;
        drop(guard);
        match outcome {
            Removal::Gone => self.refund_release(ctx, &release, "").await,
            Removal::StillThere(failure) => {
                let reply = Reply::error(
                    failure.code,
                    format!(
                        "{}; the lease keeps running and nothing was refunded",
                        failure.message
                    ),
                );
                self.record_done(ctx, &reply).await;
                reply
            }
            Removal::Unknown => release_pending(),
        }
    }

    /// Resumes a journaled release (a retry or settlement): reads the lease back.
    pub(super) async fn resume_release(&self, ctx: Ctx<'_>, journaled: Release) -> Reply {
        let guard = self.lease_locks.lock(&journaled.lease).await;
        let now = self.clock.now();
        match self.backend.get(&journaled.lease).await {
            Ok(Some(record)) => {
                // The delete never happened: complete the release now, refunding only
                // what is unused now (never more than was decided).
                let mut release = self.plan_release(&record, now);
                if release.amount.value > journaled.amount.value
                    || release.amount.unit != journaled.amount.unit
                {
                    release = journaled.clone();
                }
                release.released_at = journaled.released_at.max(now.min(record.expires_at));
                if let Err(e) = self.put(ctx, release.stage()).await {
                    warn!(error = %e, "could not journal a resumed release");
                }
                let outcome = self.remove_for_release(&journaled.lease).await;
                drop(guard);
                match outcome {
                    Removal::Gone => self.refund_release(ctx, &release, "").await,
                    Removal::StillThere(_) | Removal::Unknown => release_pending(),
                }
            }
            Ok(None) if now < journaled.expires_at => {
                // Only the release removes a lease before its paid end.
                drop(guard);
                self.refund_release(ctx, &journaled, "").await
            }
            Ok(None) => {
                drop(guard);
                warn!(lease = %journaled.lease, "a release was interrupted and the lease's paid time has passed; no refund");
                let release = Release {
                    amount: Amount::new(0, journaled.amount.unit),
                    refunded_seconds: 0,
                    ..journaled
                };
                let reply = release.reply(
                    " The release was interrupted and the lease's paid time ended before it could be confirmed, so its time counts as used.",
                );
                self.record_done(ctx, &reply).await;
                reply
            }
            Err(e) => {
                drop(guard);
                warn!(lease = %journaled.lease, error = %e, "cannot read the lease to settle a release");
                release_pending()
            }
        }
    }

    /// The lease, if `requester` owns it and it runs.
    async fn releasable(
        &self,
        requester: &Requester,
        lease: &LeaseId,
    ) -> Result<LeaseRecord, Failure> {
        let record = match self.backend.get(lease).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(Failure::new(
                    ErrorCode::PodNotFound,
                    format!("no lease named {lease} (it was released, or its time ran out)"),
                ));
            }
            Err(e) => return Err(backend_failure(&e, "read the lease")),
        };
        if record.owner != *requester {
            return Err(Failure::new(
                ErrorCode::NotOwner,
                "only the lease's owner may release it",
            ));
        }
        match record.state_at(self.clock.now()) {
            LeaseState::Provisioning => Err(Failure::new(
                ErrorCode::Unavailable,
                format!("lease {lease} is still starting; release it once it runs"),
            )),
            LeaseState::Expired => Err(Failure::new(
                ErrorCode::LeaseExpired,
                format!("lease {lease} has expired; nothing is left to refund"),
            )),
            _ => Ok(record),
        }
    }

    /// What releasing `record` at `now` refunds: the whole seconds left after the
    /// minimum charge, at the lease's rate, rounded down to the unit, at most what was
    /// paid.
    pub(super) fn plan_release(&self, record: &LeaseRecord, now: Timestamp) -> Release {
        let used = seconds_between_ceil(record.created_at, now);
        let minimum = self.config.release_minimum.as_secs();
        let unused = record.remaining_seconds(now);
        let refunded_seconds = unused.saturating_sub(minimum.saturating_sub(used));
        let rate = self.rate_of_tier_id(&record.tier);
        let value_msat = u128::from(refunded_seconds) * u128::from(rate.msat_per_hour()) / 3600;
        let value_msat = u64::try_from(value_msat)
            .unwrap_or(u64::MAX)
            .min(record.paid_msat);
        let unit = if self.payments.accepted_units().contains(&Unit::Sat) {
            Unit::Sat
        } else {
            Unit::Msat
        };
        let amount = Amount::new(value_msat / unit.msat_per_unit(), unit);
        let mint = record
            .mint
            .clone()
            .or_else(|| self.payments.accepted_mints().into_iter().next())
            .unwrap_or_else(|| MintUrl::new(""));
        Release {
            lease: record.id.clone(),
            released_at: now,
            expires_at: record.expires_at,
            refunded_seconds: if amount.is_zero() {
                0
            } else {
                refunded_seconds
            },
            amount,
            mint,
        }
    }

    /// Deletes the lease; on an error, reads it back to tell whether it went.
    async fn remove_for_release(&self, lease: &LeaseId) -> Removal {
        let error = match self.backend.delete(lease).await {
            Ok(()) => {
                crate::failpoint::hit("after-release-delete-before-issue");
                info!(lease = %lease, "lease released");
                return Removal::Gone;
            }
            Err(e) => e,
        };
        match self.backend.get(lease).await {
            Ok(None) => Removal::Gone,
            Ok(Some(_)) => {
                warn!(lease = %lease, error = %error, "could not remove a lease to release it");
                Removal::StillThere(backend_failure(&error, "remove the lease"))
            }
            Err(e) => {
                warn!(lease = %lease, error = %e, "release unclear and the lease cannot be read");
                Removal::Unknown
            }
        }
    }

    /// The lease is gone: issues the refund (once) into the reply, or closes the
    /// request when nothing is refunded.
    async fn refund_release(&self, ctx: Ctx<'_>, release: &Release, note: &str) -> Reply {
        let reply = release.reply(note);
        if release.amount.is_zero() {
            self.record_done(ctx, &reply).await;
            return reply;
        }
        self.issue_into(
            ctx,
            reply,
            &release.mint,
            release.amount,
            IssueId::generate(),
        )
        .await
    }
}

/// What happened to a lease asked to go.
enum Removal {
    /// It is gone.
    Gone,
    /// It is still there and the backend refused: the release failed.
    StillThere(Failure),
    /// Cannot tell yet: the release stays open.
    Unknown,
}

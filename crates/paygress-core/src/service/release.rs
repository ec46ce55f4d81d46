//! Releases: the owner ends a lease early and gets the unused time back as a token.
//!
//! The refund is the value of the whole seconds left, at the lease's tier rate, rounded
//! down to the unit, after the minimum charge (`RELEASE_MIN_CHARGE_MINUTES`: the first
//! minutes of every lease are paid whatever happens), and never more than was paid.
//! The mint's fee for issuing the token is the buyer's (money invariant 9).
//!
//! Order, for the money rule:
//! 1. the release is decided and journaled ([`Stage::Releasing`]);
//! 2. the lease is *pinned*: its expiry is moved [`PIN`] ahead at the backend, so that
//!    neither the backend's own expiry nor the reaper removes it from now on;
//! 3. the pin is journaled (`pinned: true`);
//! 4. the backend deletes the lease;
//! 5. the refund is issued through [`Stage::Issuing`], at most once.
//!
//! Recovery reads the lease back. Still there: the release is completed, refunding only
//! what is unused by then (counted against the paid end, not the pin). Gone with the pin
//! journaled: only step 4 can have removed it, so the journaled refund is owed, however
//! long the service was down. Gone without the pin journaled: step 4 never ran, so the
//! lease ran out on its own (no refund), unless that happened before its paid end (a
//! lease cut short is refunded, as before pins existed).

use std::time::Duration;

use jiff::Timestamp;
use tracing::{info, warn};

use super::replies::backend_failure;
use super::{Ctx, Failure, Paygress};
use crate::lease::{LeaseRecord, LeaseState, Requester};
use crate::money::{Amount, MintUrl, Unit};
use crate::names::LeaseId;
use crate::ports::{Extension, IssueId, RequestKey, Stage};
use crate::protocol::{ErrorCode, ReleaseRequest, ReleaseResult, Reply};

/// How far ahead a lease's expiry is moved while its release deletes it: a service down
/// for longer than this after pinning a lease may refund time the lease then ran.
pub const PIN: Duration = Duration::from_secs(366 * 24 * 3600);

/// A release decided and journaled: what is refunded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Release {
    pub(super) lease: LeaseId,
    pub(super) released_at: Timestamp,
    pub(super) expires_at: Timestamp,
    pub(super) refunded_seconds: u64,
    pub(super) amount: Amount,
    pub(super) mint: MintUrl,
    /// The lease's expiry was moved to the pin (step 3 of the module's order).
    pub(super) pinned: bool,
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
            pinned: self.pinned,
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

/// The pinned expiry of a lease paid until `paid_end`.
fn pin_until(paid_end: Timestamp) -> Timestamp {
    let pin = jiff::SignedDuration::try_from(PIN).unwrap_or(jiff::SignedDuration::MAX);
    paid_end.checked_add(pin).unwrap_or(Timestamp::MAX)
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
        if let Err(f) = self.no_open_release(&lease, Some(ctx.key)).await {
            return f.into_reply();
        }
        let record = match self.releasable(ctx.requester, &lease).await {
            Ok(r) => r,
            Err(f) => return f.into_reply(),
        };
        let mut release = self.plan_release(&record, self.clock.now());
        if let Err(e) = self.put(ctx, release.stage()).await {
            warn!(error = %e, "could not journal a release; refusing it");
            return Reply::error(
                ErrorCode::Unavailable,
                "the service cannot record the release right now; your lease keeps running",
            );
        }
        crate::failpoint::hit("after-release-journal-before-delete");
        let outcome = self.pin_and_remove(ctx, &record, &mut release).await;
        drop(guard);
        match outcome {
            Removal::Gone => self.refund_release(ctx, &release, "").await,
            // Pinned, the lease must go before its pin is worth nothing: settlement
            // retries the delete.
            Removal::Open => release_pending(),
        }
    }

    /// Resumes a journaled release (a retry or settlement): reads the lease back.
    pub(super) async fn resume_release(&self, ctx: Ctx<'_>, journaled: Release) -> Reply {
        let guard = self.lease_locks.lock(&journaled.lease).await;
        let now = self.clock.now();
        match self.backend.get(&journaled.lease).await {
            Ok(Some(mut record)) => {
                // The delete never happened: complete the release now, refunding only
                // what is unused now (never more than was decided). The paid end is
                // the journaled one: the lease's own may be the pin.
                record.expires_at = record.expires_at.min(journaled.expires_at);
                let mut release = self.plan_release(&record, now);
                if release.amount.value > journaled.amount.value
                    || release.amount.unit != journaled.amount.unit
                {
                    release = journaled.clone();
                }
                release.released_at = journaled.released_at.max(now.min(record.expires_at));
                release.pinned = journaled.pinned;
                if let Err(e) = self.put(ctx, release.stage()).await {
                    warn!(error = %e, "could not journal a resumed release");
                    drop(guard);
                    return release_pending();
                }
                let outcome = self.pin_and_remove(ctx, &record, &mut release).await;
                drop(guard);
                match outcome {
                    Removal::Gone => self.refund_release(ctx, &release, "").await,
                    Removal::Open => release_pending(),
                }
            }
            // Pinned, only the release's delete removes it; cut short before its paid
            // end, it was not the buyer's to use either.
            // Nothing to refund (a lease released in its grace period): nothing to tell.
            Ok(None)
                if journaled.pinned || now < journaled.expires_at || journaled.amount.is_zero() =>
            {
                drop(guard);
                self.refund_release(ctx, &journaled, "").await
            }
            Ok(None) => {
                drop(guard);
                warn!(lease = %journaled.lease, "a release was interrupted before its delete and the lease ran out meanwhile; no refund");
                let release = Release {
                    amount: Amount::new(0, journaled.amount.unit),
                    refunded_seconds: 0,
                    ..journaled
                };
                let reply = release.reply(
                    " The release was interrupted before the lease was removed, and the lease ran until its paid end, so its time counts as used.",
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

    /// Steps 2–4 of the module's order: pins `record` (unless `release` says it is),
    /// journals the pin, deletes the lease. A pin that fails or cannot be journaled
    /// leaves the release open ([`Removal::Open`]): settlement completes it.
    async fn pin_and_remove(
        &self,
        ctx: Ctx<'_>,
        record: &LeaseRecord,
        release: &mut Release,
    ) -> Removal {
        // A lease in its grace period is not pinned: the pin would bring it back, and
        // with no time left nothing is refunded whoever removes it.
        let in_grace = self.lease_state(record, self.clock.now()) == LeaseState::Grace;
        if !release.pinned && !in_grace {
            let pin = Extension {
                expires_at: pin_until(release.expires_at.max(self.clock.now())),
                paid_msat: record.paid_msat,
            };
            if let Err(e) = self.backend.extend(&release.lease, &pin).await {
                warn!(lease = %release.lease, error = %e, "could not pin a lease to release it; settlement retries");
                return Removal::Open;
            }
            release.pinned = true;
            if let Err(e) = self.put(ctx, release.stage()).await {
                warn!(lease = %release.lease, error = %e, "could not journal a lease's pin; settlement completes the release");
                return Removal::Open;
            }
            crate::failpoint::hit("after-release-pin-before-delete");
        }
        self.remove_for_release(&release.lease).await
    }

    /// Refuses while a release of `lease` (other than the request `except`) is open:
    /// a second release would refund the same time again, and a top-up would pay for
    /// time the open release is about to end. A release (`except` is its own request)
    /// also waits for any open top-up of the lease.
    pub(super) async fn no_open_release(
        &self,
        lease: &LeaseId,
        except: Option<&RequestKey>,
    ) -> Result<(), Failure> {
        let open = self.journal.unfinished().await.map_err(|e| {
            warn!(error = %e, "cannot read the journal for open releases");
            Failure::new(
                ErrorCode::Unavailable,
                "the service cannot read its records right now; try again shortly",
            )
        })?;
        let releasing = open.iter().any(|(key, entry)| {
            Some(key) != except
                && matches!(&entry.stage, Stage::Releasing { lease: l, .. } if l == lease)
        });
        // Asked by a release: a top-up whose outcome is open would be refunded by its
        // settlement once the lease is gone, while the release refunds its time too.
        let extending = except.is_some()
            && open.iter().any(|(_, entry)| {
                matches!(&entry.stage, Stage::Extending { lease: l, .. } if l == lease)
            });
        if extending {
            return Err(Failure::new(
                ErrorCode::Unavailable,
                format!(
                    "a top-up of lease {lease} is still being settled; send the release again shortly"
                ),
            ));
        }
        if releasing {
            return Err(Failure::new(
                ErrorCode::Unavailable,
                format!(
                    "lease {lease} is being released; send the release request again to get its refund"
                ),
            ));
        }
        Ok(())
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
        // A lease in its grace period may be released (its data is deleted at once);
        // its paid time is over, so nothing is refunded.
        match self.lease_state(&record, self.clock.now()) {
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
            pinned: false,
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
                warn!(lease = %lease, error = %error, "could not remove a lease to release it; settlement retries");
                Removal::Open
            }
            Err(e) => {
                warn!(lease = %lease, error = %e, "release unclear and the lease cannot be read");
                Removal::Open
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
    /// Still there, or cannot tell: the release stays open for settlement.
    Open,
}

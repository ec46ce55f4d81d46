//! What crashes and lost answers leave open: resumed by the buyer's retry of the same
//! request (which gets the lease or a refund) or by periodic settlement (which refunds
//! and delivers the refund through the notifier). Both hold the request's lock and read
//! the journal under it, so they never act on the same request at once.

use tracing::{debug, info, warn};

use super::release::Release;
use super::top_up::Intent;
use super::{Ctx, Failure, Paygress, payment::pending_reply};
use crate::lease::Requester;
use crate::names::LeaseId;
use crate::ports::{Entry, Purpose, Redeemed, RequestKey, Stage};
use crate::protocol::{ErrorCode, Reply, Request};

impl Paygress {
    /// Resumes an unfinished `stage` of the request in `ctx`. With the buyer's
    /// `request` in hand (a retry), a held payment still becomes the lease or the
    /// top-up; without it (settlement), it is refunded.
    pub(super) async fn resume(
        &self,
        ctx: Ctx<'_>,
        stage: Stage,
        request: Option<Request>,
    ) -> Reply {
        match stage {
            Stage::Redeeming {
                purpose,
                lease,
                token,
                attempt,
            } => {
                if request.is_none() && self.still_unspent(&token).await {
                    // Settlement after a restart, and the swap never reached the mint:
                    // the token is still the buyer's. A retry of the request runs anew.
                    let reply = Reply::error(
                        ErrorCode::Unavailable,
                        "the service restarted before redeeming your token; it was not spent, send the request again",
                    );
                    self.record_done(ctx, &reply).await;
                    return reply;
                }
                match self
                    .resolve_attempt(ctx, purpose, &lease, &token, &attempt)
                    .await
                {
                    // The payment's own line (`Paid`) is written without waiting for
                    // its `fsync`: a crash may have lost it after the pod was created.
                    Ok(payment) => {
                        self.resume_paid(ctx, purpose, lease, payment, request)
                            .await
                    }
                    Err(reply) => reply,
                }
            }
            Stage::Paid {
                purpose,
                lease,
                payment,
            } => {
                self.resume_paid(ctx, purpose, lease, payment, request)
                    .await
            }
            Stage::Extending {
                lease,
                payment,
                target,
                paid_msat,
                added_seconds,
                change,
                revived,
            } => {
                let intent = Intent {
                    lease,
                    payment,
                    target,
                    paid_msat,
                    added_seconds,
                    change,
                    revived,
                };
                self.resume_extension(ctx, intent).await
            }
            Stage::Releasing {
                lease,
                released_at,
                expires_at,
                refunded_seconds,
                amount,
                mint,
                pinned,
            } => {
                let release = Release {
                    lease,
                    released_at,
                    expires_at,
                    refunded_seconds,
                    amount,
                    mint,
                    pinned,
                };
                self.resume_release(ctx, release).await
            }
            Stage::Issuing {
                reply,
                mint,
                amount,
                issue,
            } => self.issue_into(ctx, reply, &mint, amount, issue).await,
            Stage::Owed {
                reply,
                mint,
                amount,
            } => self.pay_out(ctx, reply, &mint, amount).await,
            Stage::Done { reply } => reply,
        }
    }

    /// Resumes a request whose payment is held: a retry's request still becomes the
    /// lease or the top-up, settlement refunds it. A spawn's pod may exist (created
    /// before the crash, its password never sent): it is removed first, and a retry
    /// gets a new lease.
    async fn resume_paid(
        &self,
        ctx: Ctx<'_>,
        purpose: Purpose,
        lease: LeaseId,
        payment: Redeemed,
        request: Option<Request>,
    ) -> Reply {
        let lease = match purpose {
            Purpose::Spawn => {
                if let Err(e) = self.backend.delete(&lease).await {
                    debug!(error = %e, "cannot remove a half-created lease yet");
                    return pending_reply();
                }
                LeaseId::generate()
            }
            Purpose::TopUp => lease,
        };
        self.use_payment(ctx, purpose, lease, payment, request)
            .await
    }

    /// Whether the mint reports `token` unspent (no answer counts as "not known").
    async fn still_unspent(&self, token: &crate::secret::CashuToken) -> bool {
        matches!(self.payments.check(token).await, Ok(c) if c.spendable)
    }

    /// A payment is held for `purpose`: with the request, do what it asked; without,
    /// refund it.
    async fn use_payment(
        &self,
        ctx: Ctx<'_>,
        purpose: Purpose,
        lease: LeaseId,
        payment: Redeemed,
        request: Option<Request>,
    ) -> Reply {
        match (purpose, request) {
            (Purpose::Spawn, Some(Request::Spawn(req))) => {
                self.provision_request(ctx, &req, lease, payment).await
            }
            (Purpose::TopUp, Some(Request::TopUp(_))) => {
                self.extend_paid(ctx, lease, payment).await
            }
            _ => {
                let failure = Failure::new(
                    ErrorCode::ProvisioningFailed,
                    "the service could not finish this request (restart or lost answer)",
                );
                self.refund(ctx, &payment, failure).await
            }
        }
    }

    /// Settles what a crash or a mint outage left open: payments whose outcome was lost
    /// are resolved with the mint, payments held without a reply are refunded (after
    /// removing any half-created pod), interrupted top-ups are concluded from the
    /// lease's real expiry, owed change and refunds are issued; every token issued here
    /// is delivered through the notifier. Requests being handled right now are skipped.
    /// Finished entries older than the retention are pruned. Returns how many entries
    /// were settled; the rest stay for the next call. Run at start and periodically.
    pub async fn settle(&self) -> usize {
        // One settlement at a time: two would issue the same debt twice.
        let _one_at_a_time = self.settle_lock.lock().await;
        let keys = match self.journal.unfinished().await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "cannot read the journal to settle");
                return 0;
            }
        };
        let mut settled = 0;
        for (key, _) in keys {
            let Some(_request) = self.request_locks.try_lock(&key) else {
                debug!(key = %key.as_str(), "request in flight; settling it later");
                continue;
            };
            // Re-read under the lock: a live request may have moved it meanwhile.
            let entry = match self.journal.get(&key).await {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, "cannot read the journal to settle");
                    continue;
                }
            };
            if let Stage::Done { .. } = entry.stage {
                settled += 1;
                continue;
            }
            let ctx = Ctx {
                key: &key,
                requester: &entry.requester,
            };
            let reply = self.resume(ctx, entry.stage, None).await;
            let closed = matches!(
                self.journal.get(&key).await,
                Ok(Some(Entry {
                    stage: Stage::Done { .. },
                    ..
                }))
            );
            if closed {
                settled += 1;
                info!(key = %key.as_str(), "settled an open request");
                self.deliver(&key, &entry.requester, &reply).await;
            }
        }
        self.prune().await;
        settled
    }

    async fn deliver(&self, key: &RequestKey, requester: &Requester, reply: &Reply) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        if let Err(e) = notifier.notify(key, requester, reply).await {
            warn!(key = %key.as_str(), error = %e, "could not deliver a settled reply; a resend of the request gets it");
        }
    }

    async fn prune(&self) {
        let retention = jiff::SignedDuration::try_from(self.config.journal_retention)
            .unwrap_or(jiff::SignedDuration::MAX);
        let Ok(before) = self.clock.now().checked_sub(retention) else {
            return;
        };
        match self.journal.prune(before).await {
            Ok(0) => {}
            Ok(n) => debug!(pruned = n, "forgot finished requests past retention"),
            Err(e) => warn!(error = %e, "could not prune the journal"),
        }
    }
}

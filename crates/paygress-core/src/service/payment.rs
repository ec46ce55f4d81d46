//! Money in and out: the redeem (journaled before the swap, never final on an ambiguous
//! answer), refunds and change (journaled as debts when the mint cannot issue).

use tracing::{debug, info, warn};

use super::replies::fee_note;
use super::{Ctx, Failure, Paygress, owed_reply, payment_failure};
use crate::money::{Amount, MintUrl};
use crate::names::LeaseId;
use crate::ports::{IssueId, PaymentError, Purpose, RedeemAttempt, Redeemed, Stage, TokenInfo};
use crate::protocol::{ErrorCode, ErrorReply, Reply};
use crate::secret::CashuToken;

/// The reply while a payment's outcome is unknown: the journal keeps the attempt open.
pub(super) fn pending_reply() -> Reply {
    Reply::error(
        ErrorCode::PaymentPending,
        "the mint's answer to your payment was lost; it is being checked. Send this same request again: you will get the lease or a refund, never a second charge",
    )
}

/// The reply when a token was spent, but not by this service's wallet.
fn not_received_reply() -> Reply {
    payment_failure(&PaymentError::AlreadySpent).into_reply()
}

impl Paygress {
    /// Decodes a token and checks mint, unit, value and fee offline (no mint contacted).
    pub(super) fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, Failure> {
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
        if info.net().is_zero() {
            return Err(Failure::new(
                ErrorCode::InsufficientPayment,
                format!(
                    "the mint's fee of {} takes the whole token; your token was not redeemed",
                    info.fee
                ),
            ));
        }
        Ok(info)
    }

    /// Prepares the attempt, journals it, and redeems. Returns what the wallet received.
    /// `Err` is the reply: final when nothing was received (journaled as done), or
    /// [`pending_reply`] when the mint's answer was lost (the attempt stays open and
    /// a retry or settlement resolves it).
    pub(super) async fn redeem(
        &self,
        ctx: Ctx<'_>,
        purpose: Purpose,
        lease: &LeaseId,
        token: &CashuToken,
    ) -> Result<Redeemed, Reply> {
        let attempt = self
            .payments
            .prepare(token)
            .await
            .map_err(|e| payment_failure(&e).into_reply())?;
        let window = Stage::Redeeming {
            purpose,
            lease: lease.clone(),
            token: token.clone(),
            attempt: attempt.clone(),
        };
        if let Err(e) = self.put(ctx, window).await {
            warn!(error = %e, "journal unavailable; refusing payment");
            return Err(Reply::error(
                ErrorCode::Unavailable,
                "the service cannot record payments right now; your token was not redeemed",
            ));
        }
        crate::failpoint::hit("after-journal-before-swap");
        match self.payments.redeem(token, &attempt).await {
            Ok(payment) => {
                crate::failpoint::hit("after-swap-before-journal");
                Ok(self.received(ctx, purpose, lease, payment).await)
            }
            // The answer was lost, or the token shows spent (perhaps by this very swap,
            // retried below the HTTP layer): ask what the wallet received for it.
            Err(e @ (PaymentError::Ambiguous(_) | PaymentError::AlreadySpent)) => {
                debug!(error = %e, "redeem outcome unclear; resolving");
                self.resolve_attempt(ctx, purpose, lease, token, &attempt)
                    .await
            }
            Err(e) => {
                let reply = payment_failure(&e).into_reply();
                self.record_done(ctx, &reply).await;
                Err(reply)
            }
        }
    }

    /// Asks the verifier what an open attempt received: journals the payment, or the
    /// final "not received", or leaves the attempt open.
    pub(super) async fn resolve_attempt(
        &self,
        ctx: Ctx<'_>,
        purpose: Purpose,
        lease: &LeaseId,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, Reply> {
        match self.payments.resolve(token, attempt).await {
            Ok(Some(payment)) => Ok(self.received(ctx, purpose, lease, payment).await),
            Ok(None) => {
                info!("token spent elsewhere: nothing was received");
                let reply = not_received_reply();
                self.record_done(ctx, &reply).await;
                Err(reply)
            }
            Err(e) => {
                warn!(error = %e, "payment outcome still unknown; the attempt stays open");
                Err(pending_reply())
            }
        }
    }

    async fn received(
        &self,
        ctx: Ctx<'_>,
        purpose: Purpose,
        lease: &LeaseId,
        payment: Redeemed,
    ) -> Redeemed {
        let paid = Stage::Paid {
            purpose,
            lease: lease.clone(),
            payment: payment.clone(),
        };
        // Not waited for: the Redeeming entry lets recovery find what was received
        // (and remove a pod created meanwhile), so no request waits on the disk here.
        if let Err(e) = self.put_lazy(ctx, paid).await {
            // Keep going: the reply will still settle the money.
            warn!(error = %e, "could not journal a received payment");
        }
        debug!(amount = %payment.amount, mint = %payment.mint, "payment received");
        payment
    }

    /// Returns the whole payment to the payer with the failure's code and message.
    pub(super) async fn refund(&self, ctx: Ctx<'_>, payment: &Redeemed, failure: Failure) -> Reply {
        let reply = Reply::Error(ErrorReply {
            code: failure.code,
            message: format!(
                "{}; your payment of {} is refunded",
                failure.message, payment.amount
            ),
            refund_token: None,
        });
        self.pay_out(ctx, reply, &payment.mint, payment.amount)
            .await
    }

    /// Completes a successful reply with its change (if any) and journals it.
    pub(super) async fn finish(
        &self,
        ctx: Ctx<'_>,
        reply: Reply,
        mint: &MintUrl,
        change: Amount,
    ) -> Reply {
        if change.is_zero() {
            self.record_done(ctx, &reply).await;
            return reply;
        }
        self.pay_out(ctx, reply, mint, change).await
    }

    /// Issues `amount` at `mint` into `reply` (change or refund) and journals the
    /// outcome, under a fresh issue id.
    pub(super) async fn pay_out(
        &self,
        ctx: Ctx<'_>,
        reply: Reply,
        mint: &MintUrl,
        amount: Amount,
    ) -> Reply {
        self.issue_into(ctx, reply, mint, amount, IssueId::generate())
            .await
    }

    /// Journals the intent to issue `amount` as `issue`, then asks the wallet for that
    /// token (the same one if an earlier call created it). If the mint cannot issue
    /// now, the intent stays open (settlement completes it and delivers the token) and
    /// the reply says the amount is owed.
    pub(super) async fn issue_into(
        &self,
        ctx: Ctx<'_>,
        mut reply: Reply,
        mint: &MintUrl,
        amount: Amount,
        issue: IssueId,
    ) -> Reply {
        let intent = Stage::Issuing {
            reply: reply.clone(),
            mint: mint.clone(),
            amount,
            issue: issue.clone(),
        };
        if let Err(e) = self.put(ctx, intent).await {
            warn!(error = %e, %amount, "could not journal a token about to be issued");
        }
        crate::failpoint::hit("during-refund");
        match self.payments.issue_once(&issue, mint, amount).await {
            Ok(token) => {
                crate::failpoint::hit("after-issue-before-journal");
                if let Ok(info) = self.payments.inspect(&token) {
                    reply = fee_note(reply, amount, info.amount);
                }
                match &mut reply {
                    Reply::AccessDetails(a) => a.change_token = Some(token),
                    Reply::TopUp(t) => t.change_token = Some(token),
                    Reply::Error(e) => e.refund_token = Some(token),
                    Reply::Released(r) => r.refund_token = Some(token),
                    Reply::Status(_) => {}
                }
                self.record_done(ctx, &reply).await;
                reply
            }
            Err(e) => {
                warn!(error = %e, %amount, "could not issue a token to the payer; it stays owed");
                owed_reply(reply, amount)
            }
        }
    }
}

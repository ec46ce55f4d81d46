//! Read-only answers: the offer, prices, token quotes, lease status, and reaping.

use futures::StreamExt;
use jiff::Timestamp;
use tracing::info;

use super::{Failure, Paygress, backend_failure, minutes_to_seconds, not_found, payment_failure};
use crate::lease::{LeaseRecord, LeaseState, Requester};
use crate::money::{Amount, MintUrl};
use crate::names::{LeaseId, NameError};
use crate::ports::BackendError;
use crate::pricing::{self, PricingError};
use crate::protocol::{ErrorCode, ErrorReply, LeaseStatus, Offer, Reply, StatusRequest, TierOffer};
use crate::secret::CashuToken;

/// Expired leases the reaper removes at once.
pub const REAP_CONCURRENCY: usize = 32;

/// Why a price or quote was refused: the code a request would have been refused with
/// (unknown tier, duration out of range, no such lease, expired, at maximum, bad token,
/// mint unavailable, …) and a sentence for the buyer. Nothing was redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code:?})")]
#[non_exhaustive]
pub struct QuoteError {
    /// Machine-readable code, the same a request would get.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl From<Failure> for QuoteError {
    fn from(f: Failure) -> Self {
        Self {
            code: f.code,
            message: f.message,
        }
    }
}

impl From<QuoteError> for ErrorReply {
    fn from(e: QuoteError) -> Self {
        ErrorReply {
            code: e.code,
            message: e.message,
            refund_token: None,
        }
    }
}

/// What a token would buy, checked without redeeming it (`GET /auth`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
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

impl Paygress {
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
            locking_key: self.payments.locking_key(),
        }
    }

    /// The price of `duration_minutes` at the base rate (or `tier`'s), in `unit`.
    pub fn price(
        &self,
        duration_minutes: u64,
        tier: Option<&str>,
        unit: crate::money::Unit,
    ) -> Result<Amount, QuoteError> {
        let tier = self.tier(tier).map_err(QuoteError::from)?;
        let seconds = minutes_to_seconds(duration_minutes).map_err(QuoteError::from)?;
        pricing::check_requested(self.config.limits, seconds)
            .map_err(|e| QuoteError::from(Failure::from(e)))?;
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
    ) -> Result<(u64, Amount), QuoteError> {
        let lease: LeaseId = pod_name
            .parse()
            .map_err(|e: NameError| QuoteError::from(Failure::from(e)))?;
        let record = self.live_lease(&lease).await.map_err(QuoteError::from)?;
        let headroom = self
            .config
            .limits
            .max_seconds
            .saturating_sub(record.remaining_seconds(self.clock.now()));
        let seconds = minutes_to_seconds(minutes)
            .map_err(QuoteError::from)?
            .min(headroom);
        if seconds == 0 {
            let e = PricingError::AtMaximum {
                max_seconds: self.config.limits.max_seconds,
            };
            return Err(QuoteError::from(Failure::from(e)));
        }
        let rate = self.rate_of_tier_id(&record.tier);
        Ok((seconds, Amount::new(rate.price_in(seconds, unit), unit)))
    }

    /// Checks a token without redeeming it and says what it buys.
    pub async fn quote_token(
        &self,
        token: &CashuToken,
        duration_minutes: Option<u64>,
    ) -> Result<TokenQuote, QuoteError> {
        let check = self
            .payments
            .check(token)
            .await
            .map_err(|e| QuoteError::from(payment_failure(&e)))?;
        let rate = self.config.rate;
        let seconds = rate
            .seconds_for_msat(check.amount.to_msat())
            .min(self.config.limits.max_seconds);
        let covers_requested = match duration_minutes {
            Some(m) => {
                let secs = minutes_to_seconds(m).map_err(QuoteError::from)?;
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

    pub(super) async fn status(&self, sender: &Requester, req: &StatusRequest) -> Reply {
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
            state: self.lease_state(&record, now),
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

    /// Removes every lease whose time and grace period have passed, then the objects of
    /// leases that no longer exist (the backend's sweep); returns how many of both were
    /// removed. Backends expire leases themselves; this is the second line of defence.
    /// [`run_maintenance`](Self::run_maintenance) runs the two apart, so that a long
    /// sweep never delays an expiry.
    pub async fn reap_expired(&self) -> Result<usize, BackendError> {
        let reaped = self.reap().await.map(|(removed, _)| removed);
        let swept = self.sweep().await;
        Ok(reaped? + swept?)
    }

    /// Objects a lease left behind without its owner (e.g. a pod whose Job was deleted
    /// with orphaning) run unpaid: the backend removes them. Returns how many.
    pub(super) async fn sweep(&self) -> Result<usize, BackendError> {
        let swept = self.backend.sweep().await?;
        if swept > 0 {
            info!(swept, "removed objects of leases that no longer exist");
        }
        Ok(swept)
    }

    /// The reaping half of [`reap_expired`](Self::reap_expired) (no sweep), the due
    /// leases [`REAP_CONCURRENCY`] at a
    /// time (each is a read and a delete at the backend: one after the other, 10,000 of
    /// them take 20,000 round trips). Also returns the earliest expiry still ahead, for
    /// the reaper to wake up at. Every due lease is tried; the first error is returned.
    pub(super) async fn reap(&self) -> Result<(usize, Option<Timestamp>), BackendError> {
        let now = self.clock.now();
        let grace = self.config.grace;
        let records = self.backend.list().await?;
        // A lease still provisioning has not started its paid time; one whose pod ended
        // early is removed now; one in its grace period is kept until the period ends
        // (its backend stopped it at expiry).
        let next = records
            .iter()
            .filter(|r| self.lease_state(r, now) != LeaseState::Expired)
            .map(|r| r.grace_ends_at(grace))
            .filter(|at| *at > now)
            .min();
        let due: Vec<LeaseId> = records
            .into_iter()
            .filter(|r| self.lease_state(r, now) == LeaseState::Expired)
            .map(|r| r.id)
            .collect();
        let results: Vec<Result<bool, BackendError>> = futures::stream::iter(due)
            .map(|id| async move {
                let guard = self.lease_locks.lock(&id).await;
                // A top-up may have extended it while we waited for the lock.
                let result = match self.backend.get(&id).await {
                    Ok(Some(r)) if self.lease_state(&r, now) == LeaseState::Expired => {
                        self.backend.delete(&id).await.map(|()| true)
                    }
                    Ok(_) => Ok(false),
                    Err(e) => Err(e),
                };
                drop(guard);
                if let Ok(true) = result {
                    info!(lease = %id, "lease expired and removed");
                }
                result
            })
            .buffer_unordered(REAP_CONCURRENCY)
            .collect()
            .await;
        let mut removed = 0;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((removed, next)),
        }
    }
}

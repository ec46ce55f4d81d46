//! Keeping a lease alive without staying at the keyboard: a top-up shortly before each
//! expiry, paid from prepaid pieces ([`prepay`](crate::prepay)), until the pieces (the
//! budget) or the lease run out.

use std::time::Duration;

use tokio::time::Instant;

use paygress_core::{
    CashuToken, ErrorCode, LeaseState, LeaseStatus, Offer, Reply, Request, StatusRequest,
    TopUpRequest, TopUpResult,
};

use crate::prepay::{Piece, Prepaid};
use crate::terms::{min_seconds, price_sat};
use crate::{BuyerError, BuyerHome, Route, TokenKind, Waits};

/// How much each top-up buys and when it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Seconds each top-up buys (at least the service's shortest lease).
    pub seconds: u64,
    /// What each top-up costs, in sat (the service's price for `seconds`, rounded up).
    pub price_sat: u64,
    /// A top-up is sent once the lease has this little time left.
    pub before: Duration,
}

/// When a top-up is sent without `before`: two minutes before the expiry, or half of
/// what a top-up buys if that is less.
pub const DEFAULT_BEFORE: Duration = Duration::from_secs(120);

/// The plan for a lease of `tier` at `offer`'s prices: each top-up buys `every` (at
/// least the service's shortest lease, at most its longest; that minimum without
/// `every`) and is sent `before` the expiry (default: [`DEFAULT_BEFORE`], or half of
/// what a top-up buys if less).
pub fn plan(
    offer: &Offer,
    tier: &str,
    every: Option<Duration>,
    before: Option<Duration>,
) -> Result<Plan, BuyerError> {
    let seconds = every
        .map_or(0, |d| d.as_secs())
        .max(min_seconds(offer))
        .min(offer.max_duration_minutes.saturating_mul(60).max(1));
    let price_sat = price_sat(offer, tier, seconds).ok_or_else(|| {
        BuyerError::InvalidArgument(format!("the offer prices tier {tier} at nothing"))
    })?;
    let before = before.unwrap_or(DEFAULT_BEFORE.min(Duration::from_secs(seconds / 2)));
    Ok(Plan {
        seconds,
        price_sat,
        before,
    })
}

/// What `paygress topup --auto` asks for.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The most to spend, in sat: top-ups and the mint's fees for splitting the token.
    pub budget_sat: u64,
    /// What each top-up buys (see [`plan`]).
    pub every: Option<Duration>,
    /// How long before the expiry each is sent (see [`plan`]).
    pub before: Option<Duration>,
}

/// A lease ready to be kept alive: the plan and the prepaid top-ups.
#[derive(Debug)]
pub struct Prepared {
    /// How much each top-up buys and when it is sent.
    pub plan: Plan,
    /// The top-ups, saved under `tokens/`, and the change.
    pub prepaid: Prepaid,
    /// Whether the budget (rather than the token) limited the number of top-ups.
    pub budget_bound: bool,
}

/// Gets ready to keep lease `pod` alive: checks that it runs (nothing is paid for a
/// lease that is gone), reads the service's prices for its tier, plans the top-ups and
/// splits `token` into them ([`prepay`](crate::prepay)). Fails with `token` untouched
/// when the lease does not run or one top-up costs more than the budget.
pub async fn prepare(
    home: &BuyerHome,
    route: &Route,
    waits: Waits,
    pod: &str,
    token: &CashuToken,
    settings: Settings,
) -> Result<Prepared, BuyerError> {
    let status = StatusRequest {
        pod_name: pod.to_owned(),
    };
    let status = match crate::send(route, Request::Status(status), waits, |_| {})
        .await?
        .reply
    {
        Reply::Status(s) if crate::watch::runs(s.state) && s.remaining_seconds > 0 => s,
        Reply::Status(_) => {
            return Err(BuyerError::InvalidArgument(format!(
                "lease {pod} has ended: nothing was paid"
            )));
        }
        Reply::Error(e) => {
            return Err(BuyerError::Refused {
                code: e.code,
                message: format!("{}; nothing was paid", e.message),
            });
        }
        _ => return Err(BuyerError::UnexpectedReply { request: "status" }),
    };
    let offer = crate::fetch_offer(route, waits.reply).await?;
    let plan = plan(&offer, &status.tier, settings.every, settings.before)?;
    if plan.price_sat > settings.budget_sat {
        return Err(BuyerError::InvalidArgument(format!(
            "one top-up of {} s costs {} sat, more than the budget of {} sat: nothing was paid",
            plan.seconds, plan.price_sat, settings.budget_sat
        )));
    }
    let prepaid = crate::prepay(home, token, plan.price_sat, settings.budget_sat).await?;
    let budget_bound = prepaid.cost().saturating_add(plan.price_sat) > settings.budget_sat;
    Ok(Prepared {
        plan,
        prepaid,
        budget_bound,
    })
}

/// What the loop is doing, for a display.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The lease's state was read; the next top-up is due in `due_in`.
    Checked {
        /// The lease's state.
        status: &'a LeaseStatus,
        /// Until the next top-up is sent.
        due_in: Duration,
    },
    /// A top-up was paid.
    Paid {
        /// The service's answer: seconds added and the new expiry.
        result: &'a TopUpResult,
        /// The token's face value, in sat.
        amount_sat: u64,
        /// Paid so far in this run, in sat.
        spent_sat: u64,
        /// The change the reply returned, saved here.
        change: Option<&'a std::path::Path>,
    },
    /// The status could not be read; trying again.
    Unreachable(&'a BuyerError),
}

/// Why the loop stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stop {
    /// Every prepaid piece was paid: the budget (or the token) is spent.
    PiecesSpent,
    /// The lease is gone or has expired: nothing more is paid.
    LeaseGone,
    /// The service refused a request; a refund, if any, was saved there.
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
        /// Where the refund was saved.
        refund: Option<std::path::PathBuf>,
    },
    /// The service stopped answering status requests and the lease's time is over by
    /// its last answer (or it never answered): nothing more was paid.
    Unreachable {
        /// The last failure.
        reason: String,
    },
    /// A top-up got no clear answer: its piece may have been spent (its file is kept;
    /// `paygress status` tells whether the lease moved).
    Unclear {
        /// What happened.
        reason: String,
        /// The piece's file.
        piece: std::path::PathBuf,
    },
}

/// How the loop went.
#[derive(Debug)]
pub struct Outcome {
    /// Why it stopped.
    pub stop: Stop,
    /// Top-ups paid.
    pub top_ups: u32,
    /// Their face values, in sat.
    pub spent_sat: u64,
    /// The pieces not used (still saved under `tokens/`).
    pub left: Vec<Piece>,
}

/// Longest sleep between two reads of the lease's state (a manual top-up or a release
/// in between is noticed).
const RECHECK: Duration = Duration::from_secs(60);

/// Tops up lease `pod` over `route` whenever it has `plan.before` or less left, paying
/// one of `pieces` each time, until they are spent or the lease is gone. The lease's
/// state is read right before each payment: a lease that is gone is never paid for.
/// Returned tokens (change, refunds) are saved in `home`.
pub async fn run(
    home: &BuyerHome,
    route: &Route,
    waits: Waits,
    pod: &str,
    plan: Plan,
    pieces: Vec<Piece>,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Outcome, BuyerError> {
    let mut left = pieces;
    left.reverse();
    let outcome = |stop: Stop, top_ups: u32, spent_sat: u64, mut left: Vec<Piece>| {
        left.reverse();
        Outcome {
            stop,
            top_ups,
            spent_sat,
            left,
        }
    };
    let (mut top_ups, mut spent) = (0u32, 0u64);
    let mut known_end: Option<Instant> = None;
    loop {
        if left.is_empty() {
            return Ok(outcome(Stop::PiecesSpent, top_ups, spent, left));
        }
        let status = StatusRequest {
            pod_name: pod.to_owned(),
        };
        let status = match crate::send(route, Request::Status(status), waits, |_| {}).await {
            Ok(sent) => match sent.reply {
                Reply::Status(s) => s,
                Reply::Error(e) if gone(e.code) => {
                    return Ok(outcome(Stop::LeaseGone, top_ups, spent, left));
                }
                Reply::Error(e) => {
                    let stop = Stop::Refused {
                        code: e.code,
                        message: e.message,
                        refund: None,
                    };
                    return Ok(outcome(stop, top_ups, spent, left));
                }
                _ => return Err(BuyerError::UnexpectedReply { request: "status" }),
            },
            // While the lease still has time by the last answer, keep asking.
            Err(e) if known_end.is_some_and(|end| Instant::now() < end) => {
                on_event(Event::Unreachable(&e));
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(e) => {
                let stop = Stop::Unreachable {
                    reason: e.to_string(),
                };
                return Ok(outcome(stop, top_ups, spent, left));
            }
        };
        known_end = Some(Instant::now() + Duration::from_secs(status.remaining_seconds));
        if !crate::watch::runs(status.state) || status.remaining_seconds == 0 {
            return Ok(outcome(Stop::LeaseGone, top_ups, spent, left));
        }
        if !matches!(status.state, LeaseState::Active | LeaseState::Extended) {
            // Still starting: its paid time has not begun.
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let remaining = Duration::from_secs(status.remaining_seconds);
        let due_in = remaining.saturating_sub(plan.before);
        on_event(Event::Checked {
            status: &status,
            due_in,
        });
        if !due_in.is_zero() {
            tokio::time::sleep(due_in.min(RECHECK)).await;
            continue;
        }
        let Some(piece) = left.pop() else { continue };
        let request = Request::TopUp(TopUpRequest {
            pod_name: pod.to_owned(),
            cashu_token: piece.token.clone(),
        });
        let reply = match crate::send(route, request, waits, |_| {}).await {
            Ok(sent) => sent.reply,
            Err(e) => {
                let stop = Stop::Unclear {
                    reason: e.to_string(),
                    piece: piece.file.clone(),
                };
                left.push(piece);
                return Ok(outcome(stop, top_ups, spent, left));
            }
        };
        let returned = match reply.returned_token() {
            Some(t) => Some(home.save_token(TokenKind::of(&reply), t)?),
            None => None,
        };
        match reply {
            Reply::TopUp(result) => {
                forget(&piece);
                top_ups += 1;
                spent = spent.saturating_add(piece.value);
                on_event(Event::Paid {
                    result: &result,
                    amount_sat: piece.value,
                    spent_sat: spent,
                    change: returned.as_deref(),
                });
            }
            Reply::Error(e) if e.code == ErrorCode::PaymentPending => {
                let stop = Stop::Unclear {
                    reason: e.message,
                    piece: piece.file.clone(),
                };
                left.push(piece);
                return Ok(outcome(stop, top_ups, spent, left));
            }
            Reply::Error(e) => {
                // A refund means the piece was taken and given back; without one the
                // service refused it untouched (the lease ran out meanwhile, ...).
                if returned.is_some() {
                    forget(&piece);
                } else {
                    left.push(piece);
                }
                let stop = if gone(e.code) {
                    Stop::LeaseGone
                } else {
                    Stop::Refused {
                        code: e.code,
                        message: e.message,
                        refund: returned,
                    }
                };
                return Ok(outcome(stop, top_ups, spent, left));
            }
            _ => return Err(BuyerError::UnexpectedReply { request: "top-up" }),
        }
    }
}

/// Whether an error code says the lease no longer runs.
fn gone(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::PodNotFound | ErrorCode::LeaseExpired)
}

/// A piece the service took: its file goes (the token is spent).
fn forget(piece: &Piece) {
    let _ = std::fs::remove_file(&piece.file);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use paygress_core::TierOffer;

    use super::*;

    fn offer(min_minutes: u64) -> Offer {
        Offer {
            name: "t".into(),
            version: "0".into(),
            rate_sats_per_hour: 60,
            rate_msat_per_hour: 60_000,
            tiers: vec![TierOffer {
                id: "big".into(),
                cpu_millicores: 2000,
                memory_mib: 2048,
                rate_msat_per_hour: 3_600_000,
            }],
            min_duration_minutes: min_minutes,
            max_duration_minutes: 60,
            mints: vec![],
            units: vec![],
            ssh_host: "127.0.0.1".into(),
            backend: "local".into(),
            images: vec![],
            locking_key: None,
        }
    }

    #[test]
    fn a_top_up_buys_at_least_the_shortest_lease_at_the_tiers_rate() {
        let before = Some(Duration::from_secs(30));
        // Six seconds asked, one minute the least sold.
        let p = plan(&offer(1), "big", Some(Duration::from_secs(6)), before).unwrap();
        assert_eq!((p.seconds, p.price_sat), (60, 60));
        assert_eq!(Some(p.before), before);
        // Without --every-minutes: the minimum; an unknown tier pays the base rate.
        let p = plan(&offer(1), "other", None, before).unwrap();
        assert_eq!((p.seconds, p.price_sat), (60, 1));
        // Longer than the minimum: what was asked, rounded up to a whole sat.
        let p = plan(&offer(1), "other", Some(Duration::from_secs(90)), before).unwrap();
        assert_eq!((p.seconds, p.price_sat), (90, 2));
        // Never more than the longest lease.
        let p = plan(&offer(1), "big", Some(Duration::from_secs(7200)), before).unwrap();
        assert_eq!(p.seconds, 3600);
        // No minimum: any length.
        let p = plan(&offer(0), "big", Some(Duration::from_secs(6)), before).unwrap();
        assert_eq!((p.seconds, p.price_sat), (6, 6));
        // Sent two minutes before the expiry, or half-way through a short top-up.
        let p = plan(&offer(1), "big", Some(Duration::from_secs(3600)), None).unwrap();
        assert_eq!(p.before, DEFAULT_BEFORE);
        let p = plan(&offer(1), "big", None, None).unwrap();
        assert_eq!(p.before, Duration::from_secs(30));
    }
}

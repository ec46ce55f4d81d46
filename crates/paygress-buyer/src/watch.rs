//! A live countdown of a lease's time: the service's status answer read every so often,
//! the time left counted down locally in between.

use std::time::Duration;

use paygress_core::{ErrorCode, LeaseState, LeaseStatus, Reply, Request, StatusRequest};
use tokio::time::Instant;

use crate::{BuyerError, Route, Waits};

/// What the countdown shows.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The service's answer was read.
    Refreshed(&'a LeaseStatus),
    /// A second passed (counted locally since the last answer).
    Tick {
        /// Time left by the local count.
        remaining: Duration,
    },
    /// The service did not answer; the local count goes on.
    Unreachable(&'a BuyerError),
}

/// How the lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum End {
    /// The service says its time is over.
    Expired,
    /// The service no longer knows it (removed at expiry, or released).
    Gone,
}

/// How long after the local count ran out the service may stay silent before the
/// watch gives up.
const SILENT_AFTER_END: Duration = Duration::from_secs(60);

/// Counts lease `pod` down until it ends: asks the service for its status every
/// `refresh` (and as soon as the local count reaches zero, in case it was topped up),
/// reports a [`Event::Tick`] every second in between. Fails when the first answer is an
/// error (not the owner, no such lease) or the service stays silent after the count ran
/// out.
pub async fn watch(
    route: &Route,
    waits: Waits,
    pod: &str,
    refresh: Duration,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<End, BuyerError> {
    let refresh = refresh.max(Duration::from_secs(1));
    let mut seen = false;
    let mut deadline = Instant::now();
    loop {
        let asked = Instant::now();
        let request = Request::Status(StatusRequest {
            pod_name: pod.to_owned(),
        });
        match crate::send(route, request, waits, |_| {}).await {
            Ok(sent) => match sent.reply {
                Reply::Status(s) => {
                    seen = true;
                    // Counted from when the question left: never later than the service.
                    deadline = asked + Duration::from_secs(s.remaining_seconds);
                    on_event(Event::Refreshed(&s));
                    if !runs(s.state) {
                        return Ok(End::Expired);
                    }
                }
                Reply::Error(e)
                    if seen
                        && matches!(e.code, ErrorCode::PodNotFound | ErrorCode::LeaseExpired) =>
                {
                    return Ok(End::Gone);
                }
                Reply::Error(e) => {
                    return Err(BuyerError::Refused {
                        code: e.code,
                        message: e.message,
                    });
                }
                _ => return Err(BuyerError::UnexpectedReply { request: "status" }),
            },
            Err(e) if seen && Instant::now() < deadline + SILENT_AFTER_END => {
                on_event(Event::Unreachable(&e));
            }
            Err(e) => return Err(e),
        }
        // Count down locally until the next refresh or the end, whichever comes first;
        // once the count is over, ask again every second or two until the service agrees.
        let now = Instant::now();
        let next = if deadline > now {
            (now + refresh).min(deadline)
        } else {
            now + refresh.min(Duration::from_secs(1))
        };
        loop {
            let now = Instant::now();
            if now >= next {
                break;
            }
            let remaining = deadline.saturating_duration_since(now);
            on_event(Event::Tick { remaining });
            // Wake on the next whole second of the count (or at `next`).
            let frac = Duration::from_nanos(u64::from(remaining.subsec_nanos()));
            let step = if frac.is_zero() {
                Duration::from_secs(1)
            } else {
                frac
            };
            tokio::time::sleep_until((now + step).min(next)).await;
        }
    }
}

/// Whether a lease in `state` runs or is still starting (anything else has ended: its
/// time is over, whether or not the service keeps its data for a while).
pub fn runs(state: LeaseState) -> bool {
    matches!(
        state,
        LeaseState::Active
            | LeaseState::Extended
            | LeaseState::Provisioning
            | LeaseState::Requested
            | LeaseState::Paid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_lease_runs_and_an_expired_one_has_ended() {
        assert!(runs(LeaseState::Active) && runs(LeaseState::Extended));
        assert!(runs(LeaseState::Provisioning));
        assert!(!runs(LeaseState::Expired) && !runs(LeaseState::Refunded));
    }
}

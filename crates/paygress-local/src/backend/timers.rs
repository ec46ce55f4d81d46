//! The lease file and the timers of a lease: expiry warnings and expiry.

use super::*;

/// Writes the lease's `~/.paygress/lease.json`; a failure (the lease's user replaced the
/// directory with a link, a full disk) is logged, never fatal.
pub(super) fn write_lease_file(shared: &LeaseShared, expires_at: Timestamp) {
    let owner = shared.owner.or(shared.sandbox.owner());
    if let Err(e) = crate::notice::write_lease_file(
        &shared.home,
        owner,
        &shared.id,
        &shared.username,
        expires_at,
        &shared.top_up,
    ) {
        tracing::warn!(lease = %shared.id, error = %e, "could not write the lease file");
    }
}

/// Writes a warning to the lease's open terminals `before` each expiry (following
/// extensions: a warning whose time has passed when the expiry is set is skipped, one
/// that an extension moved is written again at its new time).
pub(super) async fn warning_timer(
    lease: Weak<LeaseShared>,
    mut before: Vec<Duration>,
    mut rx: watch::Receiver<Timestamp>,
) {
    before.sort_unstable_by(|a, b| b.cmp(a));
    // The last warning written: (expiry it was for, how long before).
    let mut sent: Option<(Timestamp, Duration)> = None;
    loop {
        let at = *rx.borrow_and_update();
        let now = Timestamp::now();
        let next = before.iter().copied().find_map(|b| {
            let when = at
                .checked_sub(jiff::SignedDuration::try_from(b).ok()?)
                .ok()?;
            (when > now && sent != Some((at, b))).then_some((when, b))
        });
        let Some((when, b)) = next else {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        // Re-checked at least every minute, so a wall-clock jump cannot delay it long.
        let wait = now.duration_until(when).unsigned_abs();
        let capped = wait > Duration::from_secs(60);
        tokio::select! {
            () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        if capped {
            continue;
        }
        let Some(lease) = lease.upgrade() else {
            return;
        };
        let text = crate::notice::warning(&lease.id, Timestamp::now(), at, &lease.top_up);
        let n = lease.write_to_terminals(&text);
        tracing::debug!(lease = %lease.id, terminals = n, before_secs = b.as_secs(), "expiry warning written");
        sent = Some((at, b));
    }
}

/// Sleeps until the lease's expiry (following extensions), then expires it.
pub(super) async fn expiry_timer(
    inner: Weak<Inner>,
    id: LeaseId,
    mut rx: watch::Receiver<Timestamp>,
) {
    loop {
        let at = *rx.borrow_and_update();
        let now = Timestamp::now();
        if now >= at {
            break;
        }
        // Re-checked at least every minute, so a wall-clock jump cannot delay expiry.
        let wait = now
            .duration_until(at)
            .unsigned_abs()
            .min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        // A separate task: teardown aborts this timer task.
        tokio::spawn(async move { inner.expire(&id).await });
    }
}

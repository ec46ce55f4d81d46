//! Expiry notices: once per lease and expiry, `EXPIRY_NOTICE_MINUTES` ahead, the owner is
//! told through the notifier. A top-up moves the expiry, so the next one gets its own
//! notice. Each notice sent is journaled under its own key (`notice:<lease>@<expiry>`),
//! so a restart does not send it again (a crash between sending and journaling may send
//! it twice: a notice is harmless, a missed one is not).

use tracing::{debug, info, warn};

use super::Paygress;
use crate::lease::LeaseState;
use crate::names::LeaseId;
use crate::ports::{Entry, RequestKey, Stage};
use crate::protocol::{ExpiryNotice, LeaseStatus, Reply};

/// The journal key recording that the notice of `lease` expiring at `expiry` was sent.
fn notice_key(lease: &LeaseId, expiry: jiff::Timestamp) -> RequestKey {
    RequestKey::new("notice", &format!("{lease}@{}", expiry.as_second()))
}

impl Paygress {
    /// Sends the owner of every running lease within `expiry_notice` of its expiry a
    /// notice, unless one was sent for that expiry already. Returns how many were sent.
    /// Runs with the maintenance; without a notifier or with notices off, does nothing.
    pub async fn notify_expiring(&self) -> usize {
        let (Some(window), Some(notifier)) = (self.config.expiry_notice, &self.notifier) else {
            return 0;
        };
        let now = self.clock.now();
        let records = match self.backend.list().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot list leases for expiry notices");
                return 0;
            }
        };
        let mut sent = 0;
        for record in records {
            if record.state_at(now) != LeaseState::Active {
                continue;
            }
            let left = record.remaining_seconds(now);
            if left == 0 || left > window.as_secs() {
                continue;
            }
            let key = notice_key(&record.id, record.expires_at);
            match self.journal.get(&key).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "cannot read the journal for expiry notices");
                    return sent;
                }
            }
            let notice = ExpiryNotice {
                pod_name: record.id.clone(),
                expires_at: record.expires_at,
                remaining_seconds: left,
            };
            if let Err(e) = notifier.notify_expiry(&record.owner, &notice).await {
                debug!(lease = %record.id, error = %e, "expiry notice not delivered; retrying later");
                continue;
            }
            info!(lease = %record.id, expires_at = %record.expires_at, "expiry notice sent");
            sent += 1;
            let marker = Stage::Done {
                reply: Reply::Status(LeaseStatus {
                    pod_name: record.id.clone(),
                    state: LeaseState::Active,
                    expires_at: record.expires_at,
                    remaining_seconds: left,
                    tier: record.tier.clone(),
                    node_port: record.node_port,
                }),
            };
            let entry = Entry::new(record.owner.clone(), now, marker);
            if let Err(e) = self.journal.put(&key, &entry).await {
                warn!(error = %e, "could not journal an expiry notice; it may be sent again");
            }
        }
        sent
    }
}

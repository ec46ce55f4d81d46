//! The lease: what a paid request turns into, and the states it moves through.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::money::MintUrl;
use crate::names::{LeaseId, Username};
use crate::pricing::Tier;
use crate::protocol::HostKey;
use crate::secret::Password;

/// Where a lease stands.
///
/// ```text
/// requested -> paid -> provisioning -> active -> (extended -> active)* -> expired
///                 \            \                  \                     ^
///                  `------------`--> refunded      `--> grace ----------'
///                                                         |  (top-up: extended)
/// ```
///
/// `grace` exists only with a grace period (`GRACE_MINUTES`): between the paid end and
/// the removal the pod is stopped (no logins, no processes) and its data kept, and a
/// top-up brings it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeaseState {
    /// A request arrived; no money has moved.
    Requested,
    /// The token was redeemed; the service holds the payment.
    Paid,
    /// The backend is creating the pod.
    Provisioning,
    /// The pod exists and its time runs.
    Active,
    /// A top-up was paid and the expiry moved; the lease is active again.
    Extended,
    /// The paid time ran out and the grace period (if any) is over: the pod is (being)
    /// removed.
    Expired,
    /// The paid time ran out; the pod is stopped (no logins, no processes) but its data
    /// is kept until the grace period ends. A top-up brings it back, counted from the
    /// top-up (the stopped time is not charged).
    Grace,
    /// The payment went back to the payer (pricing or provisioning failed).
    Refunded,
}

/// What happens to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    /// The token was redeemed.
    PaymentRedeemed,
    /// Provisioning started.
    ProvisioningStarted,
    /// The backend reported the pod created.
    Provisioned,
    /// A top-up moved the expiry.
    TopUp,
    /// The expiry passed and the pod was removed (without a grace period, or at its
    /// end).
    Expire,
    /// The expiry passed with a grace period: the pod is stopped, its data kept.
    Suspend,
    /// The payment was returned.
    Refund,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("lease cannot go from {from:?} on {event:?}")]
pub struct InvalidTransition {
    /// The state the lease was in.
    pub from: LeaseState,
    /// The event that cannot apply.
    pub event: LeaseEvent,
}

impl LeaseState {
    /// The state after `event`, or an error if the event is not allowed here.
    pub fn on(self, event: LeaseEvent) -> Result<LeaseState, InvalidTransition> {
        use LeaseEvent as E;
        use LeaseState as S;
        let next = match (self, event) {
            (S::Requested, E::PaymentRedeemed) => S::Paid,
            (S::Paid, E::ProvisioningStarted) => S::Provisioning,
            (S::Provisioning, E::Provisioned) => S::Active,
            (S::Active | S::Extended | S::Grace, E::TopUp) => S::Extended,
            (S::Active | S::Extended | S::Grace, E::Expire) => S::Expired,
            (S::Active | S::Extended, E::Suspend) => S::Grace,
            (S::Paid | S::Provisioning, E::Refund) => S::Refunded,
            (from, event) => return Err(InvalidTransition { from, event }),
        };
        Ok(next)
    }

    /// Whether the lease's pod may be in use.
    pub fn is_live(self) -> bool {
        matches!(self, LeaseState::Active | LeaseState::Extended)
    }

    /// Whether no further event can apply.
    pub fn is_terminal(self) -> bool {
        matches!(self, LeaseState::Expired | LeaseState::Refunded)
    }
}

/// Who asked for something, as a transport identifies them (`nostr:<hex pubkey>`,
/// `http:<peer>`). Owner checks compare these.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Requester(String);

impl Requester {
    /// An identity scoped by transport name.
    pub fn new(transport: &str, id: &str) -> Self {
        Self(format!("{transport}:{id}"))
    }

    /// The identity of journal entries written before requesters were recorded: it
    /// matches no sender, so such entries are never replayed to anyone.
    pub fn unknown() -> Self {
        Self(String::new())
    }

    /// Wraps an already-scoped identity string (as stored by a backend).
    pub fn from_raw(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything a backend needs to create a lease's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSpec {
    /// The lease name.
    pub id: LeaseId,
    /// Who paid (kept so status requests can be answered to the owner only).
    pub owner: Requester,
    /// Login name inside the pod.
    pub username: Username,
    /// Login password.
    pub password: Password,
    /// An OpenSSH public key line the buyer may log in with.
    pub ssh_public_key: Option<String>,
    /// Whether the password logs in (always when there is no key; with a key only when
    /// the buyer asked for both).
    pub password_login: bool,
    /// Container image (ignored by backends without containers).
    pub image: String,
    /// Resources.
    pub tier: Tier,
    /// When the lease was paid.
    pub created_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
    /// What was paid, in msat (informational).
    pub paid_msat: u64,
    /// The mint the payment came from (informational).
    pub mint: MintUrl,
}

/// Where a created lease can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    /// The SSH port inside the pod or sandbox.
    pub ssh_port: u16,
    /// The externally reachable port (NodePort on Kubernetes, the listener locally).
    pub node_port: Option<u16>,
    /// Host to connect to when the backend knows better than `SSH_HOST`.
    pub ssh_host: Option<String>,
    /// Backend-specific connection hints (e.g. a `kubectl port-forward` line).
    pub instructions: Vec<String>,
    /// The real end of the paid time when the backend started the clock later than
    /// `spec.created_at` (e.g. once the pod became ready to log in): `spec.expires_at`
    /// moved by the start delay. `None`: `spec.expires_at`. Core never replies with an
    /// expiry earlier than `spec.expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The SSH host keys buyers will see, when the backend knows them now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<HostKey>,
}

/// Where a lease's pod stands, as its backend sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeasePhase {
    /// The pod runs (or its time is simply counted by `expires_at`).
    #[default]
    Running,
    /// Paid, the pod is starting and not yet reachable: the paid time has not started
    /// and `expires_at` is tentative.
    Provisioning,
    /// The pod ended before `expires_at` (it failed, or the cluster ended it).
    Ended,
}

/// What a backend knows about an existing lease (public data only: no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The lease name.
    pub id: LeaseId,
    /// Who paid.
    pub owner: Requester,
    /// Login name.
    pub username: Username,
    /// Tier id.
    pub tier: String,
    /// Image.
    pub image: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Timestamp,
    /// Total paid so far, in msat.
    pub paid_msat: u64,
    /// SSH port inside the pod.
    pub ssh_port: u16,
    /// Externally reachable port.
    pub node_port: Option<u16>,
    /// Where the pod stands (backends that only count time: `Running`).
    #[serde(default)]
    pub phase: LeasePhase,
    /// The mint the lease was paid at, where a release refunds it (`None`: recorded
    /// before backends kept it; the first accepted mint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mint: Option<MintUrl>,
}

impl LeaseRecord {
    /// The record of a lease just created from `spec`, reachable on `ssh_port` inside
    /// the pod and `node_port` from outside; its phase is the default (`Running`).
    pub fn new(spec: &LeaseSpec, ssh_port: u16, node_port: Option<u16>) -> Self {
        Self {
            id: spec.id.clone(),
            owner: spec.owner.clone(),
            username: spec.username.clone(),
            tier: spec.tier.id.clone(),
            image: spec.image.clone(),
            created_at: spec.created_at,
            expires_at: spec.expires_at,
            paid_msat: spec.paid_msat,
            ssh_port,
            node_port,
            phase: LeasePhase::default(),
            mint: Some(spec.mint.clone()),
        }
    }

    /// `Provisioning` while the pod starts, `Expired` once the pod ended or no time is
    /// left at `now`, else `Active` (the state without a grace period).
    pub fn state_at(&self, now: Timestamp) -> LeaseState {
        self.state(now, Duration::ZERO)
    }

    /// The state at `now` with a grace period of `grace` after the paid end:
    /// `Provisioning` while the pod starts, `Active` until `expires_at`, then `Grace`
    /// until [`grace_ends_at`](Self::grace_ends_at), then `Expired` (at once when the
    /// pod ended on its own: nothing is left to bring back).
    pub fn state(&self, now: Timestamp, grace: Duration) -> LeaseState {
        match self.phase {
            LeasePhase::Provisioning => return LeaseState::Provisioning,
            LeasePhase::Ended => return LeaseState::Expired,
            LeasePhase::Running => {}
        }
        if now < self.expires_at {
            LeaseState::Active
        } else if now < self.grace_ends_at(grace) {
            LeaseState::Grace
        } else {
            LeaseState::Expired
        }
    }

    /// When the lease is removed with a grace period of `grace`: `expires_at + grace`.
    pub fn grace_ends_at(&self, grace: Duration) -> Timestamp {
        jiff::SignedDuration::try_from(grace)
            .ok()
            .and_then(|g| self.expires_at.checked_add(g).ok())
            .unwrap_or(Timestamp::MAX)
    }

    /// Whole seconds left at `now` (zero once expired or ended; all the paid time while
    /// the pod is still provisioning).
    pub fn remaining_seconds(&self, now: Timestamp) -> u64 {
        let now = match self.phase {
            LeasePhase::Running => now,
            LeasePhase::Provisioning => self.created_at,
            LeasePhase::Ended => return 0,
        };
        // Whole seconds of the exact duration, rounded down.
        let secs = self.expires_at.duration_since(now).as_secs();
        u64::try_from(secs).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LeaseEvent as E;
    use LeaseState as S;

    #[test]
    fn happy_path() {
        let s = S::Requested
            .on(E::PaymentRedeemed)
            .and_then(|s| s.on(E::ProvisioningStarted))
            .and_then(|s| s.on(E::Provisioned))
            .and_then(|s| s.on(E::TopUp))
            .and_then(|s| s.on(E::TopUp))
            .and_then(|s| s.on(E::Expire))
            .unwrap();
        assert_eq!(s, S::Expired);
        assert!(s.is_terminal());
    }

    #[test]
    fn refunds_only_while_money_is_held() {
        assert_eq!(S::Paid.on(E::Refund), Ok(S::Refunded));
        assert_eq!(S::Provisioning.on(E::Refund), Ok(S::Refunded));
        assert!(S::Requested.on(E::Refund).is_err());
        assert!(S::Active.on(E::Refund).is_err());
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for s in [S::Expired, S::Refunded] {
            for e in [
                E::PaymentRedeemed,
                E::ProvisioningStarted,
                E::Provisioned,
                E::TopUp,
                E::Expire,
                E::Suspend,
                E::Refund,
            ] {
                assert!(s.on(e).is_err());
            }
        }
    }

    #[test]
    fn grace_sits_between_expiry_and_removal_and_a_top_up_revives_it() {
        assert_eq!(S::Active.on(E::Suspend), Ok(S::Grace));
        assert_eq!(S::Extended.on(E::Suspend), Ok(S::Grace));
        assert_eq!(S::Grace.on(E::TopUp), Ok(S::Extended));
        assert_eq!(S::Grace.on(E::Expire), Ok(S::Expired));
        assert!(S::Grace.on(E::Refund).is_err());
        assert!(S::Grace.on(E::Suspend).is_err());
        assert!(!S::Grace.is_live());
        assert!(!S::Grace.is_terminal());
    }

    fn record(expires_at: Timestamp) -> LeaseRecord {
        LeaseRecord {
            id: "ssh-pod-abcd1234".parse().unwrap(),
            owner: Requester::new("test", "a"),
            username: "alice".parse().unwrap(),
            tier: "standard".to_owned(),
            image: "img".to_owned(),
            created_at: Timestamp::UNIX_EPOCH,
            expires_at,
            paid_msat: 1,
            ssh_port: 22,
            node_port: None,
            phase: LeasePhase::Running,
            mint: None,
        }
    }

    #[test]
    fn a_record_is_in_grace_from_its_expiry_until_expiry_plus_grace() {
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        let r = record(at(100));
        let grace = Duration::from_secs(60);
        assert_eq!(r.state(at(99), grace), S::Active);
        assert_eq!(r.state(at(100), grace), S::Grace);
        assert_eq!(r.state(at(159), grace), S::Grace);
        assert_eq!(r.state(at(160), grace), S::Expired);
        assert_eq!(r.grace_ends_at(grace), at(160));
        // No grace: today's behaviour.
        assert_eq!(r.state(at(100), Duration::ZERO), S::Expired);
        assert_eq!(r.state_at(at(100)), S::Expired);
        // A pod that ended on its own has nothing to bring back.
        let ended = LeaseRecord {
            phase: LeasePhase::Ended,
            ..r
        };
        assert_eq!(ended.state(at(100), grace), S::Expired);
        assert_eq!(ended.remaining_seconds(at(100)), 0);
    }

    #[test]
    fn no_top_up_before_active() {
        assert!(S::Paid.on(E::TopUp).is_err());
        assert!(S::Provisioning.on(E::TopUp).is_err());
    }
}

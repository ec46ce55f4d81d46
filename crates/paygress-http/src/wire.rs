//! HTTP-only bodies: requests (the token may travel in a header instead), the public
//! lease view, `/auth`, `/healthz`.
//!
//! Replies that every transport shares (access details, top-up results, errors, the
//! offer) are core's own types, serialized by core and documented through its `schema`
//! feature: one JSON shape for HTTP and Nostr, written once.

use jiff::Timestamp;
use paygress_core::{CashuToken, LeaseId, LeaseRecord, LeaseState, LeaseStatus, TokenQuote};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /spawn-pod` body. The token may instead travel in the `X-Cashu` header (NUT-24).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnPodBody {
    /// The payment (`cashuA…`/`cashuB…`). Absent: the answer is `402` with a payment
    /// request in `X-Cashu`, unless the header carries the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000)]
    pub cashu_token: Option<CashuToken>,
    /// Exact duration to buy; when absent the whole token is spent on time. Between the
    /// offer's `min_duration_minutes` and `max_duration_minutes` (`422` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub duration_minutes: Option<u64>,
    /// Login name (`user` when absent): 1 to 32 of `a-z 0-9 _ -`, starting with a letter
    /// or `_`; system names (`root`, `daemon`, …) answer `422`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[a-z_][a-z0-9_-]{0,31}$", max_length = 32)]
    pub ssh_username: Option<String>,
    /// Container image: the default or one on the operator's allow-list (`GET /offer`
    /// lists them; others answer `422`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_image: Option<String>,
    /// Resource tier id (see `GET /offer`); the first tier when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// An OpenSSH public key line to log in with (`ssh-ed25519`, `ssh-rsa`,
    /// `ecdsa-sha2-nistp256/384/521` or their `sk-` forms, then base64). With a key,
    /// password login is off unless `password_login` is `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 16384)]
    pub ssh_public_key: Option<String>,
    /// Whether the password also logs in: absent means only without a key; `false`
    /// needs `ssh_public_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_login: Option<bool>,
}

/// `POST /top-up-pod` body. The token may instead travel in the `X-Cashu` header.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpPodBody {
    /// The lease to extend.
    #[schema(pattern = r"^ssh-pod-[a-z0-9]{8}$")]
    pub pod_name: String,
    /// The payment. Absent: the answer is `402` with a payment request in `X-Cashu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000)]
    pub cashu_token: Option<CashuToken>,
}

/// A body's field does not hold what core's type requires (a client reading a reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` of the answer is invalid: {reason}")]
pub struct InvalidBody {
    /// The field.
    pub field: &'static str,
    /// Why it is invalid.
    pub reason: String,
}

fn lease_id(name: String) -> Result<LeaseId, InvalidBody> {
    name.parse()
        .map_err(|e: paygress_core::NameError| InvalidBody {
            field: "pod_name",
            reason: e.to_string(),
        })
}

/// Public information about one lease (`GET /pods`, `GET /pods/{name}`): no owner,
/// no login name, no password, no key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PodInfo {
    /// Lease name.
    pub pod_name: String,
    /// `provisioning` (paid, the pod is starting: its time has not started), `active`,
    /// `grace` (paid time over, pod stopped, data kept: a top-up brings it back; only
    /// with `GRACE_MINUTES`) or `expired`.
    #[schema(example = "active")]
    pub state: String,
    /// End of the paid time.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// Seconds left.
    pub remaining_seconds: u64,
    /// Tier id.
    pub tier: String,
    /// Externally reachable port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

impl PodInfo {
    /// The public view of `record` at time `now`, with the service's grace period
    /// after the paid end (`grace`: stopped, data kept, a top-up brings it back).
    pub fn from_record(record: &LeaseRecord, now: Timestamp, grace: std::time::Duration) -> Self {
        let state = match record.state(now, grace) {
            LeaseState::Active | LeaseState::Extended => "active",
            LeaseState::Provisioning => "provisioning",
            LeaseState::Grace => "grace",
            _ => "expired",
        };
        Self {
            pod_name: record.id.to_string(),
            state: state.to_owned(),
            expires_at: record.expires_at,
            remaining_seconds: record.remaining_seconds(now),
            tier: record.tier.clone(),
            node_port: record.node_port,
        }
    }
}

impl TryFrom<PodInfo> for LeaseStatus {
    type Error = InvalidBody;
    fn try_from(p: PodInfo) -> Result<Self, InvalidBody> {
        let PodInfo {
            pod_name,
            state,
            expires_at,
            remaining_seconds,
            tier,
            node_port,
        } = p;
        let state = match state.as_str() {
            "active" => LeaseState::Active,
            "provisioning" => LeaseState::Provisioning,
            "grace" => LeaseState::Grace,
            "expired" => LeaseState::Expired,
            other => {
                return Err(InvalidBody {
                    field: "state",
                    reason: format!("unknown state {other:?}"),
                });
            }
        };
        let mut status = LeaseStatus::new(
            lease_id(pod_name)?,
            state,
            expires_at,
            remaining_seconds,
            tier,
        );
        status.node_port = node_port;
        Ok(status)
    }
}

/// `GET /auth` query. The token may instead travel in the `X-Cashu` header, which keeps
/// it out of URLs (proxies log URLs).
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthQuery {
    /// The token to check (never redeemed, never logged).
    #[param(value_type = Option<String>, pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000)]
    pub token: Option<CashuToken>,
    /// Minutes the buyer wants; the answer says whether the token covers them.
    pub duration_minutes: Option<u64>,
}

/// `POST /auth` body. The token may instead travel in the `X-Cashu` header.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthBody {
    /// The token to check (never redeemed, never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000)]
    pub token: Option<CashuToken>,
    /// Minutes the buyer wants; the answer says whether the token covers them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u64>,
}

/// `GET /auth` answer: what a token is worth and buys, checked without redeeming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthResponse {
    /// The token's mint.
    pub mint: String,
    /// Face value.
    pub amount: u64,
    /// Unit of `amount` (`sat` or `msat`).
    pub unit: String,
    /// Whether the mint reports every proof unspent.
    pub spendable: bool,
    /// Whole minutes it buys at the base rate (capped at the longest lease).
    pub minutes: u64,
    /// Whether it covers `duration_minutes`, when that was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers_requested: Option<bool>,
}

impl From<TokenQuote> for AuthResponse {
    fn from(q: TokenQuote) -> Self {
        let TokenQuote {
            mint,
            amount,
            spendable,
            minutes,
            covers_requested,
            ..
        } = q;
        Self {
            mint: mint.to_string(),
            amount: amount.value,
            unit: amount.unit.to_string(),
            spendable,
            minutes,
            covers_requested,
        }
    }
}

/// Whether one part of the service is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ComponentHealth {
    /// Name (`http`, `nostr`, `kubernetes`, …).
    pub name: String,
    /// Whether it works.
    pub up: bool,
}

/// `GET /healthz` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    /// `ok` when every component is up, else `degraded` (answered with `503`).
    pub status: String,
    /// Paygress version.
    pub version: String,
    /// The pod backend.
    pub backend: ComponentHealth,
    /// The request transports.
    pub transports: Vec<ComponentHealth>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lease_whose_pod_is_starting_shows_as_provisioning_with_all_its_time() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut record = LeaseRecord {
            id: "ssh-pod-abcd1234".parse().unwrap(),
            owner: paygress_core::Requester::new("test", "buyer"),
            username: "alice".parse().unwrap(),
            tier: "standard".to_owned(),
            image: "img".to_owned(),
            created_at: t0,
            expires_at: t0 + jiff::SignedDuration::from_secs(600),
            paid_msat: 1,
            ssh_port: 2222,
            node_port: None,
            phase: paygress_core::LeasePhase::Provisioning,
            mint: None,
        };
        let later = t0 + jiff::SignedDuration::from_secs(90);
        let info = PodInfo::from_record(&record, later, Duration::ZERO);
        assert_eq!(info.state, "provisioning");
        assert_eq!(info.remaining_seconds, 600);
        record.phase = paygress_core::LeasePhase::Ended;
        let info = PodInfo::from_record(&record, later, Duration::ZERO);
        assert_eq!(info.state, "expired");
        assert_eq!(info.remaining_seconds, 0);
    }

    #[test]
    fn a_lease_past_its_paid_end_shows_as_grace_during_the_grace_period_and_reads_back() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let record = LeaseRecord {
            id: "ssh-pod-abcd1234".parse().unwrap(),
            owner: paygress_core::Requester::new("test", "buyer"),
            username: "alice".parse().unwrap(),
            tier: "standard".to_owned(),
            image: "img".to_owned(),
            created_at: t0,
            expires_at: t0 + jiff::SignedDuration::from_secs(600),
            paid_msat: 1,
            ssh_port: 2222,
            node_port: None,
            phase: paygress_core::LeasePhase::Running,
            mint: None,
        };
        let grace = Duration::from_secs(300);
        let in_grace = t0 + jiff::SignedDuration::from_secs(700);
        let info = PodInfo::from_record(&record, in_grace, grace);
        assert_eq!(info.state, "grace");
        assert_eq!(info.remaining_seconds, 0);
        let status = LeaseStatus::try_from(info).expect("a client reads the grace state");
        assert_eq!(status.state, LeaseState::Grace);
        let after = t0 + jiff::SignedDuration::from_secs(901);
        assert_eq!(PodInfo::from_record(&record, after, grace).state, "expired");
        // Without a grace period nothing changes.
        assert_eq!(
            PodInfo::from_record(&record, in_grace, Duration::ZERO).state,
            "expired"
        );
    }

    #[test]
    fn spawn_body_rejects_unknown_fields_and_allows_no_token() {
        let b: SpawnPodBody = serde_json::from_str(r#"{"duration_minutes":5}"#).unwrap();
        assert!(b.cashu_token.is_none());
        assert!(serde_json::from_str::<SpawnPodBody>(r#"{"duration_minute":5}"#).is_err());
    }
}

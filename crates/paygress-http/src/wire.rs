//! HTTP bodies: the seed's field names, converted to and from core's types at the edge.
//!
//! Responses mirror core's reply payloads field for field (conversions destructure
//! exhaustively, so a new core field fails to compile here until the API shows it).

use jiff::Timestamp;
use paygress_core::{
    AccessDetails, CashuToken, ErrorCode, ErrorReply, HostKey, LeaseId, LeaseRecord, LeaseState,
    LeaseStatus, Offer, Password, TierOffer, TokenQuote, TopUpResult,
};
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

/// `201` from `POST /spawn-pod`: how to log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpawnPodResponse {
    /// Lease name, for top-ups.
    pub pod_name: String,
    /// Login name.
    pub ssh_username: String,
    /// Login password (only ever sent here, to the payer).
    #[schema(value_type = String)]
    pub ssh_password: Password,
    /// Host to connect to.
    pub ssh_host: String,
    /// SSH port inside the pod.
    pub ssh_port: u16,
    /// Externally reachable port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// End of the paid time (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// Seconds bought.
    pub duration_seconds: u64,
    /// Tier id.
    pub tier: String,
    /// Human-readable steps.
    pub instructions: Vec<String>,
    /// The unspent part of the payment, as a token for the payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub change_token: Option<CashuToken>,
    /// The lease's SSH host keys, for a verified first login (absent when unknown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<HostKeyBody>,
    /// `false` when only the SSH key logs in (absent: the password works).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub password_login: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// An SSH host key of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostKeyBody {
    /// The OpenSSH public key line (`ssh-ed25519 AAAA…`), for a `known_hosts` entry.
    pub public_key: String,
    /// `SHA256:…`, as OpenSSH prints it.
    pub fingerprint: String,
}

impl From<HostKey> for HostKeyBody {
    fn from(k: HostKey) -> Self {
        Self {
            public_key: k.public_key,
            fingerprint: k.fingerprint,
        }
    }
}

impl From<HostKeyBody> for HostKey {
    fn from(k: HostKeyBody) -> Self {
        Self {
            public_key: k.public_key,
            fingerprint: k.fingerprint,
        }
    }
}

impl From<AccessDetails> for SpawnPodResponse {
    fn from(a: AccessDetails) -> Self {
        let AccessDetails {
            pod_name,
            ssh_username,
            ssh_password,
            ssh_host,
            ssh_port,
            node_port,
            expires_at,
            duration_seconds,
            tier,
            instructions,
            change_token,
            host_keys,
            password_login,
        } = a;
        Self {
            pod_name: pod_name.to_string(),
            ssh_username,
            ssh_password,
            ssh_host,
            ssh_port,
            node_port,
            expires_at,
            duration_seconds,
            tier,
            instructions,
            change_token,
            host_keys: host_keys.into_iter().map(Into::into).collect(),
            password_login,
        }
    }
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

impl TryFrom<SpawnPodResponse> for AccessDetails {
    type Error = InvalidBody;
    fn try_from(r: SpawnPodResponse) -> Result<Self, InvalidBody> {
        let SpawnPodResponse {
            pod_name,
            ssh_username,
            ssh_password,
            ssh_host,
            ssh_port,
            node_port,
            expires_at,
            duration_seconds,
            tier,
            instructions,
            change_token,
            host_keys,
            password_login,
        } = r;
        Ok(Self {
            pod_name: lease_id(pod_name)?,
            ssh_username,
            ssh_password,
            ssh_host,
            ssh_port,
            node_port,
            expires_at,
            duration_seconds,
            tier,
            instructions,
            change_token,
            host_keys: host_keys.into_iter().map(Into::into).collect(),
            password_login,
        })
    }
}

fn lease_id(name: String) -> Result<LeaseId, InvalidBody> {
    name.parse()
        .map_err(|e: paygress_core::NameError| InvalidBody {
            field: "pod_name",
            reason: e.to_string(),
        })
}

/// `200` from `POST /top-up-pod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopUpPodResponse {
    /// The lease.
    pub pod_name: String,
    /// New end of the paid time.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// Seconds added.
    pub added_seconds: u64,
    /// Change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub change_token: Option<CashuToken>,
}

impl From<TopUpResult> for TopUpPodResponse {
    fn from(t: TopUpResult) -> Self {
        let TopUpResult {
            pod_name,
            expires_at,
            added_seconds,
            change_token,
        } = t;
        Self {
            pod_name: pod_name.to_string(),
            expires_at,
            added_seconds,
            change_token,
        }
    }
}

impl TryFrom<TopUpPodResponse> for TopUpResult {
    type Error = InvalidBody;
    fn try_from(r: TopUpPodResponse) -> Result<Self, InvalidBody> {
        let TopUpPodResponse {
            pod_name,
            expires_at,
            added_seconds,
            change_token,
        } = r;
        Ok(Self {
            pod_name: lease_id(pod_name)?,
            expires_at,
            added_seconds,
            change_token,
        })
    }
}

/// Public information about one lease (`GET /pods`, `GET /pods/{name}`): no owner,
/// no login name, no password, no key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PodInfo {
    /// Lease name.
    pub pod_name: String,
    /// `provisioning` (paid, the pod is starting: its time has not started), `active`
    /// or `expired`.
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
    /// The public view of `record` at time `now`.
    pub fn from_record(record: &LeaseRecord, now: Timestamp) -> Self {
        let state = match record.state_at(now) {
            LeaseState::Active => "active",
            LeaseState::Provisioning => "provisioning",
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
            "expired" => LeaseState::Expired,
            other => {
                return Err(InvalidBody {
                    field: "state",
                    reason: format!("unknown state {other:?}"),
                });
            }
        };
        Ok(Self {
            pod_name: lease_id(pod_name)?,
            state,
            expires_at,
            remaining_seconds,
            tier,
            node_port,
        })
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

/// A tier as advertised in the offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TierOfferBody {
    /// Id to request.
    pub id: String,
    /// CPU millicores.
    pub cpu_millicores: u32,
    /// Memory MiB.
    pub memory_mib: u32,
    /// Price in msat per hour.
    pub rate_msat_per_hour: u64,
}

impl From<TierOffer> for TierOfferBody {
    fn from(t: TierOffer) -> Self {
        let TierOffer {
            id,
            cpu_millicores,
            memory_mib,
            rate_msat_per_hour,
        } = t;
        Self {
            id,
            cpu_millicores,
            memory_mib,
            rate_msat_per_hour,
        }
    }
}

/// `GET /offer`: what the service sells, the same offer the Nostr transport publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OfferBody {
    /// Operator-chosen service name.
    pub name: String,
    /// Paygress version.
    pub version: String,
    /// Base rate in sat per hour.
    pub rate_sats_per_hour: u64,
    /// Base rate in msat per hour.
    pub rate_msat_per_hour: u64,
    /// Tiers with their rates.
    pub tiers: Vec<TierOfferBody>,
    /// Shortest lease, minutes.
    pub min_duration_minutes: u64,
    /// Longest lease, minutes.
    pub max_duration_minutes: u64,
    /// Accepted mints.
    pub mints: Vec<String>,
    /// Accepted units (`sat`, `msat`).
    pub units: Vec<String>,
    /// Host buyers connect to.
    pub ssh_host: String,
    /// Which backend runs leases.
    pub backend: String,
    /// Images a buyer may ask for (the default first).
    pub images: Vec<String>,
    /// The public key (compressed secp256k1, hex) a payment may be locked to (NUT-11
    /// P2PK); absent: locked tokens are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locking_key: Option<String>,
}

impl From<Offer> for OfferBody {
    fn from(o: Offer) -> Self {
        let Offer {
            name,
            version,
            rate_sats_per_hour,
            rate_msat_per_hour,
            tiers,
            min_duration_minutes,
            max_duration_minutes,
            mints,
            units,
            ssh_host,
            backend,
            images,
            locking_key,
        } = o;
        Self {
            name,
            version,
            rate_sats_per_hour,
            rate_msat_per_hour,
            tiers: tiers.into_iter().map(Into::into).collect(),
            min_duration_minutes,
            max_duration_minutes,
            mints: mints.into_iter().map(|m| m.to_string()).collect(),
            units: units.into_iter().map(|u| u.to_string()).collect(),
            ssh_host,
            backend,
            images,
            locking_key,
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

/// Stable error codes, as they appear in error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCodeBody {
    /// See core's `ErrorCode::InvalidRequest`.
    InvalidRequest,
    /// `ssh_username` is not a safe login name.
    InvalidUsername,
    /// `pod_name` is not a lease name.
    InvalidPodName,
    /// `pod_image` is not allowed.
    ImageNotAllowed,
    /// `tier` is not offered.
    UnknownTier,
    /// `duration_minutes` outside the limits.
    DurationOutOfRange,
    /// `ssh_public_key` is not an OpenSSH public key line.
    InvalidPublicKey,
    /// The token cannot be decoded or is empty.
    InvalidToken,
    /// The token's mint is not accepted.
    MintNotAccepted,
    /// The token's unit is not accepted.
    UnsupportedUnit,
    /// The token was already spent.
    TokenAlreadySpent,
    /// The payment does not cover the price (also the code of a `402` answer).
    InsufficientPayment,
    /// The mint could not be reached; the token was not redeemed.
    MintUnavailable,
    /// No such lease.
    PodNotFound,
    /// The lease's time is over.
    LeaseExpired,
    /// The lease already has the maximum time left.
    LeaseAtMaximum,
    /// The requester does not own the lease.
    NotOwner,
    /// The backend failed; the payment was refunded.
    ProvisioningFailed,
    /// A refund or change is owed but could not be issued yet.
    RefundPending,
    /// The mint's answer to the payment was lost; send the same request again (same
    /// `Idempotency-Key`) to get the lease or a refund.
    PaymentPending,
    /// The request id (`Idempotency-Key`) was already used by another sender.
    RequestIdInUse,
    /// Too many requests.
    RateLimited,
    /// The service is shutting down, overloaded, or the request timed out.
    Unavailable,
    /// Anything else.
    Internal,
}

impl From<ErrorCode> for ErrorCodeBody {
    fn from(c: ErrorCode) -> Self {
        match c {
            ErrorCode::InvalidRequest => Self::InvalidRequest,
            ErrorCode::InvalidUsername => Self::InvalidUsername,
            ErrorCode::InvalidPodName => Self::InvalidPodName,
            ErrorCode::ImageNotAllowed => Self::ImageNotAllowed,
            ErrorCode::UnknownTier => Self::UnknownTier,
            ErrorCode::DurationOutOfRange => Self::DurationOutOfRange,
            ErrorCode::InvalidPublicKey => Self::InvalidPublicKey,
            ErrorCode::InvalidToken => Self::InvalidToken,
            ErrorCode::MintNotAccepted => Self::MintNotAccepted,
            ErrorCode::UnsupportedUnit => Self::UnsupportedUnit,
            ErrorCode::TokenAlreadySpent => Self::TokenAlreadySpent,
            ErrorCode::InsufficientPayment => Self::InsufficientPayment,
            ErrorCode::MintUnavailable => Self::MintUnavailable,
            ErrorCode::PodNotFound => Self::PodNotFound,
            ErrorCode::LeaseExpired => Self::LeaseExpired,
            ErrorCode::LeaseAtMaximum => Self::LeaseAtMaximum,
            ErrorCode::NotOwner => Self::NotOwner,
            ErrorCode::ProvisioningFailed => Self::ProvisioningFailed,
            ErrorCode::RefundPending => Self::RefundPending,
            ErrorCode::PaymentPending => Self::PaymentPending,
            ErrorCode::RequestIdInUse => Self::RequestIdInUse,
            ErrorCode::RateLimited => Self::RateLimited,
            ErrorCode::Unavailable => Self::Unavailable,
            ErrorCode::Internal => Self::Internal,
        }
    }
}

/// Every failing request's body (core's `ErrorReply`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub code: ErrorCodeBody,
    /// Human-readable explanation.
    pub message: String,
    /// The payment, returned, when it had been redeemed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_token: Option<String>,
}

impl From<ErrorCodeBody> for ErrorCode {
    fn from(c: ErrorCodeBody) -> Self {
        use ErrorCodeBody as B;
        match c {
            B::InvalidRequest => Self::InvalidRequest,
            B::InvalidUsername => Self::InvalidUsername,
            B::InvalidPodName => Self::InvalidPodName,
            B::ImageNotAllowed => Self::ImageNotAllowed,
            B::UnknownTier => Self::UnknownTier,
            B::DurationOutOfRange => Self::DurationOutOfRange,
            B::InvalidPublicKey => Self::InvalidPublicKey,
            B::InvalidToken => Self::InvalidToken,
            B::MintNotAccepted => Self::MintNotAccepted,
            B::UnsupportedUnit => Self::UnsupportedUnit,
            B::TokenAlreadySpent => Self::TokenAlreadySpent,
            B::InsufficientPayment => Self::InsufficientPayment,
            B::MintUnavailable => Self::MintUnavailable,
            B::PodNotFound => Self::PodNotFound,
            B::LeaseExpired => Self::LeaseExpired,
            B::LeaseAtMaximum => Self::LeaseAtMaximum,
            B::NotOwner => Self::NotOwner,
            B::ProvisioningFailed => Self::ProvisioningFailed,
            B::RefundPending => Self::RefundPending,
            B::PaymentPending => Self::PaymentPending,
            B::RequestIdInUse => Self::RequestIdInUse,
            B::RateLimited => Self::RateLimited,
            B::Unavailable => Self::Unavailable,
            B::Internal => Self::Internal,
        }
    }
}

impl From<ErrorBody> for ErrorReply {
    fn from(b: ErrorBody) -> Self {
        let ErrorBody {
            code,
            message,
            refund_token,
        } = b;
        Self {
            code: code.into(),
            message,
            refund_token: refund_token.map(CashuToken::new),
        }
    }
}

#[cfg(test)]
mod tests {
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
        };
        let later = t0 + jiff::SignedDuration::from_secs(90);
        let info = PodInfo::from_record(&record, later);
        assert_eq!(info.state, "provisioning");
        assert_eq!(info.remaining_seconds, 600);
        record.phase = paygress_core::LeasePhase::Ended;
        let info = PodInfo::from_record(&record, later);
        assert_eq!(info.state, "expired");
        assert_eq!(info.remaining_seconds, 0);
    }

    #[test]
    fn error_code_body_serializes_like_core() {
        use ErrorCode as C;
        for c in [
            C::InvalidRequest,
            C::InvalidUsername,
            C::InvalidPodName,
            C::ImageNotAllowed,
            C::UnknownTier,
            C::DurationOutOfRange,
            C::InvalidPublicKey,
            C::InvalidToken,
            C::MintNotAccepted,
            C::UnsupportedUnit,
            C::TokenAlreadySpent,
            C::InsufficientPayment,
            C::MintUnavailable,
            C::PodNotFound,
            C::LeaseExpired,
            C::LeaseAtMaximum,
            C::NotOwner,
            C::ProvisioningFailed,
            C::RefundPending,
            C::PaymentPending,
            C::RequestIdInUse,
            C::RateLimited,
            C::Unavailable,
            C::Internal,
        ] {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::to_value(ErrorCodeBody::from(c)).unwrap()
            );
            assert_eq!(ErrorCode::from(ErrorCodeBody::from(c)), c);
        }
    }

    #[test]
    fn spawn_body_rejects_unknown_fields_and_allows_no_token() {
        let b: SpawnPodBody = serde_json::from_str(r#"{"duration_minutes":5}"#).unwrap();
        assert!(b.cashu_token.is_none());
        assert!(serde_json::from_str::<SpawnPodBody>(r#"{"duration_minute":5}"#).is_err());
    }
}

//! Requests buyers send and replies they get, with the seed's JSON field names.
//!
//! These shapes are the contract shared by every transport (the Nostr event content and
//! the HTTP bodies are the same JSON). Transport envelopes (event kinds, tags, status
//! codes, headers) live in the transport crates.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::lease::LeaseState;
use crate::money::Amount;
use crate::names::LeaseId;
use crate::secret::{CashuToken, Password};

mod offer;

pub use offer::{Offer, TierOffer};

/// Kind 1000 / `POST /spawn-pod`: pay for a new lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SpawnRequest {
    /// The payment.
    pub cashu_token: CashuToken,
    /// Login name; `user` when absent. Validated by the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_username: Option<String>,
    /// Container image; must be the default or on the operator's allow-list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_image: Option<String>,
    /// Exact duration to buy; when absent the whole token is spent on time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u64>,
    /// Resource tier id; the first configured tier when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// An OpenSSH public key line to log in with. When given, password login is off
    /// unless `password_login` is `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    /// Whether the password also logs in. Absent: only without `ssh_public_key`;
    /// `true` with a key: both; `false` needs a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_login: Option<bool>,
}

impl SpawnRequest {
    /// A request paying with `cashu_token`, every option left to the service's default;
    /// the `with_…` methods set them.
    pub fn new(cashu_token: CashuToken) -> Self {
        Self {
            cashu_token,
            ssh_username: None,
            pod_image: None,
            duration_minutes: None,
            tier: None,
            ssh_public_key: None,
            password_login: None,
        }
    }

    /// Sets the login name.
    #[must_use]
    pub fn with_ssh_username(mut self, username: impl Into<String>) -> Self {
        self.ssh_username = Some(username.into());
        self
    }

    /// Sets the container image.
    #[must_use]
    pub fn with_pod_image(mut self, image: impl Into<String>) -> Self {
        self.pod_image = Some(image.into());
        self
    }

    /// Sets the exact duration to buy.
    #[must_use]
    pub fn with_duration_minutes(mut self, minutes: u64) -> Self {
        self.duration_minutes = Some(minutes);
        self
    }

    /// Sets the resource tier.
    #[must_use]
    pub fn with_tier(mut self, tier: impl Into<String>) -> Self {
        self.tier = Some(tier.into());
        self
    }

    /// Sets the OpenSSH public key line to log in with.
    #[must_use]
    pub fn with_ssh_public_key(mut self, key: impl Into<String>) -> Self {
        self.ssh_public_key = Some(key.into());
        self
    }

    /// Sets whether the password also logs in.
    #[must_use]
    pub fn with_password_login(mut self, on: bool) -> Self {
        self.password_login = Some(on);
        self
    }
}

/// Kind 1002 / `POST /top-up-pod`: pay to extend a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    /// The lease to extend (unvalidated text; the service checks it).
    pub pod_name: String,
    /// The payment.
    pub cashu_token: CashuToken,
}

/// Ask for a lease's state; answered to the lease owner only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// The lease.
    pub pod_name: String,
}

/// End a lease early and get the unused time back as a token; answered to the lease
/// owner only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The lease (unvalidated text; the service checks it).
    pub pod_name: String,
}

/// Anything a buyer can ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// New lease.
    Spawn(SpawnRequest),
    /// Extend a lease.
    TopUp(TopUpRequest),
    /// Lease state.
    Status(StatusRequest),
    /// End a lease early, refunding the unused time.
    Release(ReleaseRequest),
}

impl Request {
    /// Short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Spawn(_) => "spawn",
            Request::TopUp(_) => "top_up",
            Request::Status(_) => "status",
            Request::Release(_) => "release",
        }
    }
}

/// How to log in to a new lease.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = SpawnPodResponse))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccessDetails {
    /// Lease name, for top-ups.
    #[cfg_attr(feature = "schema", schema(value_type = String, pattern = r"^ssh-pod-[a-z0-9]{8}$"))]
    pub pod_name: LeaseId,
    /// Login name.
    pub ssh_username: String,
    /// Login password (only ever sent to the payer).
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub ssh_password: Password,
    /// Host to connect to.
    pub ssh_host: String,
    /// SSH port inside the pod.
    pub ssh_port: u16,
    /// Externally reachable port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// End of the paid time (RFC 3339).
    #[cfg_attr(feature = "schema", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    /// Seconds bought.
    pub duration_seconds: u64,
    /// Tier id.
    pub tier: String,
    /// Human-readable steps (the ssh command, port-forward alternative).
    pub instructions: Vec<String>,
    /// The part of the payment not spent, as a token for the payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub change_token: Option<CashuToken>,
    /// The lease's SSH host keys, so the first login is verified (empty when the
    /// backend cannot know them before the pod generates its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<HostKey>,
    /// Whether the password logs in (`false`: the SSH key only).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub password_login: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// An SSH host key of a lease: what a `known_hosts` line needs, and its fingerprint as
/// OpenSSH prints it.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = HostKeyBody))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostKey {
    /// The OpenSSH public key line (`ssh-ed25519 AAAA…`).
    pub public_key: String,
    /// `SHA256:…` (unpadded base64 of the SHA-256 of the key blob).
    pub fingerprint: String,
}

/// A successful top-up.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = TopUpPodResponse))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopUpResult {
    /// The lease.
    #[cfg_attr(feature = "schema", schema(value_type = String, pattern = r"^ssh-pod-[a-z0-9]{8}$"))]
    pub pod_name: LeaseId,
    /// New end of the paid time.
    #[cfg_attr(feature = "schema", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    /// Seconds added.
    pub added_seconds: u64,
    /// Change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub change_token: Option<CashuToken>,
    /// A note for the buyer, e.g. that a lease brought back from its grace period
    /// counts the time bought from the top-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A lease's state, for its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LeaseStatus {
    /// The lease.
    pub pod_name: LeaseId,
    /// `active`, `grace` (stopped, data kept: a top-up brings it back) or `expired`
    /// (`provisioning` while it starts).
    pub state: LeaseState,
    /// End of the paid time.
    pub expires_at: Timestamp,
    /// Seconds left.
    pub remaining_seconds: u64,
    /// Tier id.
    pub tier: String,
    /// Externally reachable port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

impl LeaseStatus {
    /// The status of lease `pod_name` in `state`, paid until `expires_at` with
    /// `remaining_seconds` left, on `tier`; no port.
    pub fn new(
        pod_name: LeaseId,
        state: LeaseState,
        expires_at: Timestamp,
        remaining_seconds: u64,
        tier: impl Into<String>,
    ) -> Self {
        Self {
            pod_name,
            state,
            expires_at,
            remaining_seconds,
            tier: tier.into(),
            node_port: None,
        }
    }
}

/// A released lease: it is gone, and the unused time (less the minimum charge) comes
/// back as a token.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = ReleasePodResponse))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReleaseResult {
    /// The lease, now removed.
    #[cfg_attr(feature = "schema", schema(value_type = String, pattern = r"^ssh-pod-[a-z0-9]{8}$"))]
    pub pod_name: LeaseId,
    /// When it was released (the end of the time charged).
    #[cfg_attr(feature = "schema", schema(value_type = String, format = DateTime))]
    pub released_at: Timestamp,
    /// Whole seconds that were left and are refunded (after the minimum charge).
    pub refunded_seconds: u64,
    /// What the refunded seconds are worth, before the mint's fee for issuing the token.
    pub refund_amount: Amount,
    /// Human-readable account of the refund (minimum charge, mint fee).
    pub message: String,
    /// The refund, as a token for the owner; absent when nothing is left to refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub refund_token: Option<CashuToken>,
}

/// Sent to a lease's owner once per expiry, ahead of it (`EXPIRY_NOTICE_MINUTES`): the
/// transport adds how to top the lease up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExpiryNotice {
    /// The lease.
    pub pod_name: LeaseId,
    /// End of the paid time.
    pub expires_at: Timestamp,
    /// Whole seconds left when the notice was sent.
    pub remaining_seconds: u64,
}

/// Stable machine-readable error codes (they cross the wire; never rename one).
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = ErrorCodeBody))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request could not be parsed or has unknown fields.
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
    /// The payment does not cover the price.
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
    /// The backend failed to create or extend the pod; the payment was refunded.
    ProvisioningFailed,
    /// A refund or change is owed but could not be issued yet; it will be retried.
    RefundPending,
    /// The mint's answer to the payment was lost; the payment is being checked. Send the
    /// same request again: it ends in the lease or a refund, never a second charge.
    PaymentPending,
    /// The request id was already used by another sender; nothing of its reply is given.
    RequestIdInUse,
    /// Too many requests.
    RateLimited,
    /// The service is shutting down or overloaded.
    Unavailable,
    /// Anything else.
    Internal,
}

impl ErrorCode {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::MintUnavailable
                | ErrorCode::RateLimited
                | ErrorCode::Unavailable
                | ErrorCode::ProvisioningFailed
                | ErrorCode::RefundPending
                | ErrorCode::PaymentPending
        )
    }
}

/// A failed request. When the payment had been redeemed, `refund_token` returns it.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = ErrorBody))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// The payment, returned, when it had been redeemed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub refund_token: Option<CashuToken>,
}

/// Any reply. Serialized with a `type` field next to the payload's own fields, so the
/// seed's readers (which look for `pod_name`, `ssh_password`, …) keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Spawn succeeded.
    AccessDetails(AccessDetails),
    /// Top-up succeeded.
    TopUp(TopUpResult),
    /// Status.
    Status(LeaseStatus),
    /// Release succeeded.
    Released(ReleaseResult),
    /// Something failed.
    Error(ErrorReply),
}

impl Reply {
    /// An error reply with no refund.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Reply::Error(ErrorReply {
            code,
            message: message.into(),
            refund_token: None,
        })
    }

    /// The error code, if this is an error.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Reply::Error(e) => Some(e.code),
            _ => None,
        }
    }

    /// The token this reply hands back to the payer (change or refund), if any.
    pub fn returned_token(&self) -> Option<&CashuToken> {
        match self {
            Reply::AccessDetails(a) => a.change_token.as_ref(),
            Reply::TopUp(t) => t.change_token.as_ref(),
            Reply::Error(e) => e.refund_token.as_ref(),
            Reply::Released(r) => r.refund_token.as_ref(),
            Reply::Status(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;

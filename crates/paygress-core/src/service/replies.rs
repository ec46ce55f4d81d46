//! Failures and the replies built from them, and small time and text helpers.

use jiff::{SignedDuration, Timestamp};

use crate::money::Amount;
use crate::names::{LeaseId, NameError};
use crate::ports::{BackendError, PaymentError};
use crate::pricing::PricingError;
use crate::protocol::{AccessDetails, ErrorCode, Reply};

/// A request that failed before or after payment; turned into an [`ErrorReply`].
pub(super) struct Failure {
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(super) fn into_reply(self) -> Reply {
        Reply::error(self.code, self.message)
    }
}

impl From<NameError> for Failure {
    fn from(e: NameError) -> Self {
        let code = match e {
            NameError::LeaseId(_) => ErrorCode::InvalidPodName,
            NameError::Username(_) | NameError::ReservedUsername(_) => ErrorCode::InvalidUsername,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<PricingError> for Failure {
    fn from(e: PricingError) -> Self {
        let code = match e {
            PricingError::DurationOutOfRange { .. } => ErrorCode::DurationOutOfRange,
            PricingError::Insufficient { .. } => ErrorCode::InsufficientPayment,
            PricingError::AtMaximum { .. } => ErrorCode::LeaseAtMaximum,
        };
        Failure::new(code, e.to_string())
    }
}

/// Maps a payment error to a reply. None of these consumed the payer's token
/// ([`PaymentError::Ambiguous`] never reaches here: it stays an open state).
pub(super) fn payment_failure(e: &PaymentError) -> Failure {
    const NOT_REDEEMED: &str = " Your token was not redeemed.";
    let (code, hint) = match e {
        PaymentError::InvalidToken(_)
        | PaymentError::Locked(_)
        | PaymentError::DuplicateProofs
        | PaymentError::TooManyProofs { .. }
        | PaymentError::UnknownKeyset(_) => (ErrorCode::InvalidToken, NOT_REDEEMED),
        PaymentError::MintNotAccepted(_) => (ErrorCode::MintNotAccepted, NOT_REDEEMED),
        PaymentError::UnsupportedUnit(_) => (ErrorCode::UnsupportedUnit, NOT_REDEEMED),
        PaymentError::AlreadySpent => (ErrorCode::TokenAlreadySpent, ""),
        PaymentError::MintUnavailable(_) => (
            ErrorCode::MintUnavailable,
            " Your token was not redeemed; try again later.",
        ),
        PaymentError::Ambiguous(_) => (
            ErrorCode::PaymentPending,
            " Send this same request again to receive the lease or a refund.",
        ),
        PaymentError::Issue(_) | PaymentError::Other(_) => (ErrorCode::Internal, NOT_REDEEMED),
    };
    Failure::new(code, format!("{e}.{hint}"))
}

/// Whether `reply` refused a request before its token was received, for a reason that
/// may pass (mint or service unavailable): a retry of the same request runs again
/// instead of replaying the refusal.
pub(super) fn refused_without_payment(reply: &Reply) -> bool {
    reply.returned_token().is_none()
        && matches!(
            reply.error_code(),
            Some(ErrorCode::MintUnavailable | ErrorCode::Unavailable)
        )
}

/// The reply sent while `amount` is still owed to the payer: says so, in place of the
/// token it lacks.
pub(super) fn owed_reply(mut reply: Reply, amount: Amount) -> Reply {
    match &mut reply {
        Reply::AccessDetails(AccessDetails { instructions, .. }) => instructions.push(format!(
            "Change of {amount} could not be issued yet; it will be sent to you when the mint is back (or send this same request again later)"
        )),
        Reply::TopUp(_) | Reply::Status(_) => {}
        Reply::Released(r) => r.message.push_str(&format!(
            " The refund of {amount} could not be issued yet (mint unreachable): it will be sent to you when the mint is back (or send this same request again later)."
        )),
        Reply::Error(e) => {
            e.message = format!(
                "{}; the refund of {amount} could not be issued yet (mint unreachable): it will be sent to you when the mint is back (or send this same request again later)",
                e.message
            );
            e.code = ErrorCode::RefundPending;
        }
    }
    reply
}

/// Says in `reply` that its change or refund token is worth `value` of the `owed`: the
/// mint's fee for issuing it (`owed - value`) is deducted.
pub(super) fn fee_note(mut reply: Reply, owed: Amount, value: Amount) -> Reply {
    if owed.unit != value.unit || value.value >= owed.value {
        return reply;
    }
    let fee = Amount::new(owed.value - value.value, owed.unit);
    let note = format!(
        "The token is worth {value}: the mint's fee of {fee} for issuing the {owed} due is deducted"
    );
    match &mut reply {
        Reply::AccessDetails(AccessDetails { instructions, .. }) => instructions.push(note),
        Reply::Error(e) => e.message = format!("{}; {}", e.message, note.to_lowercase()),
        Reply::Released(r) => r.message = format!("{} {note}.", r.message),
        Reply::TopUp(_) | Reply::Status(_) => {}
    }
    reply
}

/// A pricing refusal before the token was touched.
pub(super) fn untouched(e: PricingError) -> Failure {
    let mut failure = Failure::from(e);
    failure.message.push_str("; your token was not redeemed");
    failure
}

pub(super) fn not_found(lease: &LeaseId) -> Failure {
    Failure::new(ErrorCode::PodNotFound, format!("no lease named {lease}"))
}

pub(super) fn backend_failure(e: &BackendError, what: &str) -> Failure {
    let code = match e {
        BackendError::NotFound(_) => ErrorCode::PodNotFound,
        _ => ErrorCode::ProvisioningFailed,
    };
    Failure::new(code, format!("could not {what}: {e}"))
}

pub(super) fn minutes_to_seconds(minutes: u64) -> Result<u64, Failure> {
    minutes.checked_mul(60).ok_or_else(|| {
        Failure::new(
            ErrorCode::DurationOutOfRange,
            format!("duration of {minutes} minutes is too long"),
        )
    })
}

pub(super) fn ceil_to_second(t: Timestamp) -> Timestamp {
    let whole = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    Timestamp::from_second(whole).unwrap_or(t)
}

pub(super) fn add_seconds(t: Timestamp, seconds: u64) -> Timestamp {
    let secs = i64::try_from(seconds).unwrap_or(i64::MAX);
    t.saturating_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX)
}

pub(super) fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

//! Request bodies of the page's endpoints, and what the lease page shows.

use jiff::Timestamp;
use paygress_core::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::web::nut18;
use crate::web::store::{Data, Pending};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderBody {
    #[serde(default)]
    pub(super) tier: Option<String>,
    pub(super) duration_minutes: u64,
    #[serde(default)]
    pub(super) ssh_username: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OrderCreated {
    /// The lease's secret: its page is `/lease#<secret>`.
    pub(super) secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretBody {
    pub(super) secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayBody {
    pub(super) secret: String,
    pub(super) token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopUpBody {
    pub(super) secret: String,
    pub(super) duration_minutes: u64,
}

/// A payment request as the page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct PendingView {
    pub(super) request: String,
    pub(super) qr_svg: Option<String>,
    pub(super) amount: u64,
    pub(super) unit: String,
    pub(super) minutes: u64,
}

impl From<&Pending> for PendingView {
    fn from(p: &Pending) -> Self {
        Self {
            request: p.request.clone(),
            qr_svg: nut18::qr_svg(&p.request),
            amount: p.amount.value,
            unit: p.amount.unit.to_string(),
            minutes: p.minutes,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct AccessView {
    pub(super) pod_name: String,
    pub(super) username: String,
    pub(super) password: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) ssh_command: String,
    pub(super) instructions: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TokenView {
    pub(super) kind: &'static str,
    pub(super) token: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorView {
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

/// Everything the lease page shows.
#[derive(Debug, Serialize)]
pub(crate) struct LeaseView {
    /// `awaiting_payment`, `active` or `expired`.
    pub(super) state: &'static str,
    pub(super) tier: String,
    pub(super) minutes: u64,
    pub(super) username: Option<String>,
    pub(super) order: Option<PendingView>,
    pub(super) top_up: Option<PendingView>,
    pub(super) access: Option<AccessView>,
    pub(super) now: Timestamp,
    pub(super) expires_at: Option<Timestamp>,
    pub(super) tokens: Vec<TokenView>,
    pub(super) error: Option<ErrorView>,
    /// Whether the service can end a lease early and refund the unused time (core has
    /// no such operation yet).
    pub(super) release_supported: bool,
}

pub(super) fn view(data: &Data, now: Timestamp) -> LeaseView {
    let state = match (&data.access, data.expires_at) {
        (None, _) => "awaiting_payment",
        (Some(_), Some(exp)) if now < exp => "active",
        _ => "expired",
    };
    LeaseView {
        state,
        tier: data.tier.clone(),
        minutes: data.minutes,
        username: data.username.clone(),
        order: data.order.as_ref().map(Into::into),
        top_up: data.top_up.as_ref().map(Into::into),
        access: data.access.as_ref().map(|a| {
            let port = a.node_port.unwrap_or(a.ssh_port);
            AccessView {
                pod_name: a.pod_name.to_string(),
                username: a.ssh_username.clone(),
                password: a.ssh_password.expose().to_owned(),
                host: a.ssh_host.clone(),
                port,
                ssh_command: format!("ssh -p {port} {}@{}", a.ssh_username, a.ssh_host),
                instructions: a.instructions.clone(),
            }
        }),
        now,
        expires_at: data.expires_at,
        tokens: data
            .tokens
            .iter()
            .map(|t| TokenView {
                kind: t.kind,
                token: t.token.expose().to_owned(),
            })
            .collect(),
        error: data.error.as_ref().map(|(code, message)| ErrorView {
            code: *code,
            message: message.clone(),
        }),
        release_supported: false,
    }
}

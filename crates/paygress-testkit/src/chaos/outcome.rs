//! What one paid request (and its release) got back, read from the service's answers.

use std::collections::HashSet;
use std::str::FromStr;

use paygress_cashu::cdk::nuts::Token;
use paygress_core::CashuToken;
use serde_json::Value;

use super::SATS_PER_HOUR;

/// One paid request and what came back.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) value: u64,
    pub(super) pods: HashSet<String>,
    pub(super) ssh_ports: HashSet<u16>,
    pub(super) expires: Vec<jiff::Timestamp>,
    pub(super) charged: u64,
    pub(super) change: Option<CashuToken>,
    pub(super) refund: Option<CashuToken>,
    pub(super) code: Option<String>,
    pub(super) owed: bool,
    pub(super) untouched: bool,
    pub(super) release: Option<Release>,
}

/// A release of a request's lease by its owner.
#[derive(Debug)]
pub(super) struct Release {
    /// The lease.
    pub(super) pod: String,
    /// When the release was first sent (the driver's clock: the same machine's).
    pub(super) sent_at: jiff::Timestamp,
    /// The lease's paid end at that moment.
    pub(super) expires_at: jiff::Timestamp,
    /// Whether the service answered `released`.
    pub(super) released: bool,
    /// The refund token.
    pub(super) refund: Option<CashuToken>,
    /// What the answer says the refund is worth.
    pub(super) amount: u64,
    /// A refund still owed (the mint could not issue it): ask again.
    pub(super) owed: bool,
    /// The final error code, if refused.
    pub(super) code: Option<String>,
}

impl Release {
    /// The most the release may return: the whole seconds left when it was sent, at one
    /// sat a second.
    pub(super) fn bound(&self) -> u64 {
        let left = self.expires_at.duration_since(self.sent_at);
        u64::try_from(left.as_secs()).unwrap_or(0) + u64::from(left.subsec_nanos() > 0)
    }

    pub(super) fn record(&mut self, v: &Value) {
        if v["type"] != "released" && v.get("refunded_seconds").is_none() {
            return;
        }
        self.released = true;
        self.code = None;
        self.refund = v["refund_token"].as_str().map(CashuToken::new);
        // Core's `Amount`, the same JSON over HTTP and Nostr: `{"value", "unit"}`.
        let amount = &v["refund_amount"];
        let value = amount["value"].as_u64().unwrap_or(0);
        self.amount = match amount["unit"].as_str() {
            Some("msat") => value / 1000,
            _ => value,
        };
        let note = v["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not be issued yet"));
        self.owed = self.refund.is_none() && note;
    }
}

/// The `Idempotency-Key` of request `i`'s release.
pub(super) fn release_key(seed: u64, i: usize) -> String {
    format!("chaos-release-{seed:08}-{i:08}")
}

/// The `Idempotency-Key` of request `i` (its lease's owner key).
pub(super) fn request_key(seed: u64, i: usize) -> String {
    format!("chaos-key-{seed:08}-{i:08}")
}

pub(super) fn token_value(t: &CashuToken) -> u64 {
    Token::from_str(t.expose())
        .ok()
        .and_then(|t| t.value().ok())
        .map_or(0, |v| v.to_u64())
}

/// Codes after which a client sends the same request again.
pub(super) fn resend_code(code: &str) -> bool {
    matches!(
        code,
        "payment_pending" | "refund_pending" | "unavailable" | "internal" | "rate_limited"
    )
}

pub(super) fn record_lease(out: &mut Outcome, v: &Value) {
    let Some(pod) = v["pod_name"].as_str() else {
        return;
    };
    out.pods.insert(pod.to_owned());
    if let Some(p) = v["ssh_port"].as_u64().and_then(|p| u16::try_from(p).ok()) {
        out.ssh_ports.insert(p);
    }
    if let Some(t) = v["expires_at"].as_str().and_then(|t| t.parse().ok()) {
        out.expires.push(t);
    }
    let seconds = v["duration_seconds"].as_u64().unwrap_or(0);
    out.charged = seconds * SATS_PER_HOUR / 3600;
    out.code = None;
    out.change = v["change_token"].as_str().map(CashuToken::new);
    let owed_note = v["instructions"].as_array().is_some_and(|a| {
        a.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.contains("could not be issued yet"))
        })
    });
    out.owed = out.change.is_none() && owed_note;
}

//! Running one payment for a lease page.

use std::sync::Arc;

use axum::http::StatusCode;
use paygress_core::{
    CashuToken, ErrorCode, Reply, Request, RequestKey, Requester, SpawnRequest, TopUpRequest,
};
use tracing::warn;

use crate::error::ApiError;
use crate::web::WebState;
use crate::web::store::{Entry, PayKind, SavedToken};

/// Runs one payment for `entry` in its own task (a dropped connection cannot cancel it).
pub(super) async fn pay(
    state: &Arc<WebState>,
    entry: Arc<Entry>,
    kind: PayKind,
    token: CashuToken,
) -> Result<(), ApiError> {
    let state = state.clone();
    tokio::spawn(async move { pay_now(&state, &entry, kind, token).await })
        .await
        .unwrap_or_else(|e| {
            warn!(error = %e, "web payment task failed");
            Err(ApiError::new(
                ErrorCode::Internal,
                "the payment task failed",
            ))
        })
}

async fn pay_now(
    state: &WebState,
    entry: &Entry,
    kind: PayKind,
    token: CashuToken,
) -> Result<(), ApiError> {
    let _one_at_a_time = entry.paying.lock().await;
    let (key, request) = {
        let mut d = entry.data();
        let request = match (kind, &d.access) {
            (PayKind::Spawn, None) => {
                let mut spawn = SpawnRequest::new(token)
                    .with_duration_minutes(d.minutes)
                    .with_tier(d.tier.clone());
                spawn.ssh_username = d.username.clone();
                Request::Spawn(spawn)
            }
            (PayKind::Spawn, Some(_)) => {
                return Err(ApiError::with_status(
                    StatusCode::CONFLICT,
                    ErrorCode::InvalidRequest,
                    "this lease is already paid; nothing was redeemed",
                ));
            }
            (PayKind::TopUp, Some(a)) => Request::TopUp(TopUpRequest {
                pod_name: a.pod_name.to_string(),
                cashu_token: token,
            }),
            (PayKind::TopUp, None) => {
                return Err(ApiError::with_status(
                    StatusCode::CONFLICT,
                    ErrorCode::InvalidRequest,
                    "pay for the lease first; nothing was redeemed",
                ));
            }
        };
        d.attempts += 1;
        let what = match kind {
            PayKind::Spawn => "spawn",
            PayKind::TopUp => "top-up",
        };
        let key = RequestKey::new("web", &format!("{what}-{}-{}", entry.digest, d.attempts));
        (key, request)
    };
    let requester = Requester::new("web", &format!("lease-{}", entry.digest));
    let reply = state.paygress.handle(&key, &requester, request).await;
    let mut d = entry.data();
    match reply {
        Reply::AccessDetails(mut a) => {
            if let Some(change) = a.change_token.take() {
                d.tokens.push(SavedToken {
                    kind: "change",
                    token: change,
                });
            }
            if let Some(order) = d.order.take() {
                state.store.remove_pay_id(&order.pay_id);
            }
            d.expires_at = Some(a.expires_at);
            d.error = None;
            d.access = Some(a);
            Ok(())
        }
        Reply::TopUp(t) => {
            if let Some(change) = t.change_token {
                d.tokens.push(SavedToken {
                    kind: "change",
                    token: change,
                });
            }
            if let Some(pending) = d.top_up.take() {
                state.store.remove_pay_id(&pending.pay_id);
            }
            d.expires_at = Some(t.expires_at);
            d.error = None;
            Ok(())
        }
        Reply::Error(e) => {
            if let Some(refund) = e.refund_token.clone() {
                d.tokens.push(SavedToken {
                    kind: "refund",
                    token: refund,
                });
            }
            d.error = Some((e.code, e.message.clone()));
            // The page shows the refund; the wallet's POST gets it too.
            Err(ApiError::from_reply(e))
        }
        Reply::Status(_) | Reply::Released(_) => {
            Err(ApiError::new(ErrorCode::Internal, "unexpected reply"))
        }
    }
}

//! The page's endpoints: orders, the lease view, paying and topping up.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use paygress_core::{CashuToken, ErrorCode, Username};
use tracing::debug;

use super::pay::pay;
use super::views::{OrderBody, OrderCreated, PayBody, SecretBody, TopUpBody, view};
use super::{Shared, private_json};
use crate::error::ApiError;
use crate::routes::JsonBody;
use crate::web::WebState;
use crate::web::nut18;
use crate::web::store::{Data, Entry, PayKind, Pending, new_pay_id, new_secret};

/// `POST /web/api/orders`: prices the chosen tier and duration and opens a lease page
/// with its payment request.
pub(crate) async fn create_order(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(body): JsonBody<OrderBody>,
) -> Result<Response, ApiError> {
    let username = match body.ssh_username.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(u) => Some(
            u.parse::<Username>()
                .map_err(|e| ApiError::new(ErrorCode::InvalidUsername, e.to_string()))?
                .to_string(),
        ),
    };
    let amount = state
        .paygress
        .price(body.duration_minutes, body.tier.as_deref(), state.unit())?;
    let tier = body
        .tier
        .clone()
        .unwrap_or_else(|| state.paygress.offer().tiers[0].id.clone());
    let pay_id = new_pay_id();
    let request = nut18::payment_request(
        &state.payments,
        amount,
        &format!(
            "a {}-minute Paygress lease ({tier} tier)",
            body.duration_minutes
        ),
        &pay_id,
        &state.pay_target(&headers, &pay_id),
    )?;
    let now = state.paygress.now();
    let secret = new_secret();
    state.store.insert(
        &secret,
        Data {
            tier,
            minutes: body.duration_minutes,
            username,
            order: Some(Pending {
                pay_id,
                request,
                amount,
                minutes: body.duration_minutes,
            }),
            top_up: None,
            access: None,
            expires_at: None,
            tokens: vec![],
            error: None,
            attempts: 0,
            created_at: now,
        },
        now,
    );
    debug!("web order created");
    Ok(private_json(StatusCode::CREATED, &OrderCreated { secret }))
}

/// `POST /web/api/lease`: the lease page's contents.
pub(crate) async fn lease_view(
    State(state): Shared,
    JsonBody(body): JsonBody<SecretBody>,
) -> Result<Response, ApiError> {
    let entry = state.entry(&body.secret)?;
    refresh_expiry(&state, &entry).await;
    let v = view(&entry.data(), state.paygress.now());
    Ok(private_json(StatusCode::OK, &v))
}

/// Takes the lease's expiry from the backend (a top-up from elsewhere moves it).
async fn refresh_expiry(state: &WebState, entry: &Entry) {
    let id = match &entry.data().access {
        Some(a) => a.pod_name.clone(),
        None => return,
    };
    if let Ok(Some(record)) = state.paygress.backend().get(&id).await {
        entry.data().expires_at = Some(record.expires_at);
    }
}

/// `POST /web/api/pay`: pays with a pasted token: the lease if it is not paid yet, else
/// a top-up.
pub(crate) async fn pay_with_token(
    State(state): Shared,
    JsonBody(body): JsonBody<PayBody>,
) -> Result<Response, ApiError> {
    let entry = state.entry(&body.secret)?;
    let token = CashuToken::new(body.token.trim());
    if !token.expose().starts_with("cashuA") && !token.expose().starts_with("cashuB") {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "paste a Cashu token: it starts with cashuA or cashuB",
        ));
    }
    let kind = if entry.data().access.is_some() {
        PayKind::TopUp
    } else {
        PayKind::Spawn
    };
    let result = pay(&state, entry.clone(), kind, token).await;
    let v = view(&entry.data(), state.paygress.now());
    match result {
        Ok(()) => Ok(private_json(StatusCode::OK, &v)),
        Err(e) => Err(e),
    }
}

/// `POST /web/api/top-up`: a payment request for `duration_minutes` more.
pub(crate) async fn top_up(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TopUpBody>,
) -> Result<Response, ApiError> {
    let entry = state.entry(&body.secret)?;
    let pod_name = match &entry.data().access {
        Some(a) => a.pod_name.to_string(),
        None => {
            return Err(ApiError::with_status(
                StatusCode::CONFLICT,
                ErrorCode::InvalidRequest,
                "pay for the lease first",
            ));
        }
    };
    let (seconds, amount) = state
        .paygress
        .top_up_price(&pod_name, body.duration_minutes, state.unit())
        .await?;
    let pay_id = new_pay_id();
    let minutes = seconds.div_ceil(60);
    let request = nut18::payment_request(
        &state.payments,
        amount,
        &format!("{minutes} more minutes of Paygress lease {pod_name}"),
        &pay_id,
        &state.pay_target(&headers, &pay_id),
    )?;
    let old = entry.data().top_up.replace(Pending {
        pay_id: pay_id.clone(),
        request,
        amount,
        minutes,
    });
    if let Some(old) = old {
        state.store.remove_pay_id(&old.pay_id);
    }
    state.store.add_pay_id(&entry, &pay_id, PayKind::TopUp);
    let v = view(&entry.data(), state.paygress.now());
    Ok(private_json(StatusCode::OK, &v))
}

/// `POST /web/pay/{id}`: the HTTP transport of the page's NUT-18 payment requests.
pub(crate) async fn pay_nut18(
    State(state): Shared,
    Path(pay_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (payload_id, token) = nut18::payload_token(&body)?;
    if payload_id.as_deref().is_some_and(|id| id != pay_id) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the payload's id is not this payment request's",
        ));
    }
    let Some((entry, kind)) = state.store.by_pay_id(&pay_id) else {
        return Err(ApiError::with_status(
            StatusCode::NOT_FOUND,
            ErrorCode::InvalidRequest,
            "no open payment request has this id; nothing was redeemed",
        ));
    };
    pay(&state, entry, kind, token).await?;
    Ok(private_json(
        StatusCode::OK,
        &serde_json::json!({"paid": true}),
    ))
}
